import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../util/exec.js';
import { requireFile, requireTool } from '../util/tools.js';
import { UserError } from '../util/errors.js';
import { downloadCloudKernel, extractDeb, installedVersions, makeWorkDir } from './debian-packages.js';
import { GUEST_MODULES, resolveModules } from './kernel-modules.js';
import { guestFiles } from './guest-files.js';
import { GUEST_CONTRACT_VERSION } from './guest-contract.js';
import { RootfsStaging } from './initramfs.js';
import { MANIFEST_FILE, sha256File, type ImageManifest } from './manifest.js';

/** Guest helper that reseeds the kernel RNG of a VM cloned from a template. */
const RESEED_SOURCE = fileURLToPath(new URL('../../../src/image/guest/sshvisor-reseed.c', import.meta.url));

/** Host packages whose binaries go into the guest; their versions go into the manifest. */
const GUEST_PACKAGES = ['busybox-static', 'dropbear-bin', 'openssh-sftp-server', 'openssh-client', 'rsync', 'libc6-dev'] as const;

export interface BuildProgress {
  (step: string): void;
}

/**
 * Build the default guest image into `outDir`: Debian's cloud kernel, and an
 * initramfs with busybox, dropbear, sftp-server, scp, rsync and the virtio
 * modules. The new image replaces the old one only once it is complete.
 */
export async function buildDefaultImage(outDir: string, progress: BuildProgress = () => {}): Promise<ImageManifest> {
  const busybox = requireTool('busybox');
  const dropbear = requireTool('dropbear');
  const dropbearkey = requireFile('/usr/bin/dropbearkey', 'dropbear-bin');
  const sftpServer = requireFile('/usr/lib/openssh/sftp-server', 'openssh-sftp-server');
  const scp = requireFile('/usr/bin/scp', 'openssh-client');
  const rsync = requireFile('/usr/bin/rsync', 'rsync');
  requireTool('cpio');
  requireTool('modinfo');

  const work = makeWorkDir();
  try {
    progress('downloading linux-image-cloud-amd64');
    const kernel = await downloadCloudKernel(work.dir);
    const kroot = join(work.dir, 'kernel');
    await extractDeb(kernel.deb, kroot);
    const release = readdirSync(join(kroot, 'lib', 'modules'))[0];
    const vmlinuz = release && join(kroot, 'boot', `vmlinuz-${release}`);
    if (!release || !vmlinuz || !existsSync(vmlinuz)) throw new UserError(`${kernel.pkg} contains no kernel image`);

    progress(`resolving kernel modules for ${release}`);
    const modules = await resolveModules(join(kroot, 'lib', 'modules', release, 'kernel'), GUEST_MODULES);

    progress('assembling the initramfs');
    const stage = new RootfsStaging(join(work.dir, 'rootfs'));
    await stage.installBusybox(busybox);
    stage.symlink('/bin/busybox', '/init');
    await stage.copyProgram(dropbear, '/usr/sbin/dropbear');
    await stage.copyProgram(dropbearkey, '/usr/bin/dropbearkey');
    await stage.copyProgram(sftpServer, '/usr/lib/openssh/sftp-server');
    // dropbear looks for the SFTP server here.
    stage.symlink('/usr/lib/openssh/sftp-server', '/usr/lib/sftp-server');
    await stage.copyProgram(scp, '/usr/bin/scp');
    await stage.copyProgram(rsync, '/usr/bin/rsync');
    progress('compiling sshvisor-reseed');
    const reseed = join(work.dir, 'sshvisor-reseed');
    await run(requireTool('gcc'), ['-static', '-Os', '-Wall', '-Wextra', '-Werror', '-o', reseed, RESEED_SOURCE]);
    stage.copyFile(reseed, '/usr/sbin/sshvisor-reseed', 0o755);
    for (const m of modules) stage.copyFile(m.path, `/lib/modules/${m.name}.ko`, 0o644);
    for (const [path, file] of Object.entries(guestFiles(modules.map((m) => m.name)))) stage.writeFile(path, file);

    const next = `${outDir}.building`;
    rmSync(next, { recursive: true, force: true });
    mkdirSync(next, { recursive: true });
    await stage.writeCpioGz(join(next, 'initrd.img'));
    copyFileSync(vmlinuz, join(next, 'vmlinuz'));

    const manifest: ImageManifest = {
      format: 1,
      contract: GUEST_CONTRACT_VERSION,
      builtAt: new Date().toISOString(),
      kernel: { package: kernel.pkg, version: kernel.version, release },
      packages: await installedVersions(GUEST_PACKAGES),
      modules: modules.map((m) => m.name),
      guest: { ssh: true },
      files: {
        vmlinuz: await sha256File(join(next, 'vmlinuz')),
        'initrd.img': await sha256File(join(next, 'initrd.img')),
      },
    };
    writeFileSync(join(next, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');

    progress(`installing into ${outDir}`);
    const old = `${outDir}.old`;
    rmSync(old, { recursive: true, force: true });
    if (existsSync(outDir)) renameSync(outDir, old);
    renameSync(next, outDir);
    rmSync(old, { recursive: true, force: true });
    return manifest;
  } finally {
    work.dispose();
  }
}
