import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { requireFile, requireTool } from '../util/tools.js';
import { UserError } from '../util/errors.js';
import { downloadCloudKernel, extractDeb, installedVersions, makeWorkDir } from './debian-packages.js';
import { GUEST_MODULES, resolveModules } from './kernel-modules.js';
import { guestFiles } from './guest-files.js';
import { AGENT_PROTOCOL, GUEST_CONTRACT_VERSION } from './guest-contract.js';
import { AGENT_DIR, buildAgent } from './agent-build.js';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { RootfsStaging } from './initramfs.js';
import { MANIFEST_FILE, sha256File, type ImageManifest } from './manifest.js';

/** Host packages whose binaries go into the guest; their versions go into the manifest. */
const GUEST_PACKAGES = ['busybox-static', 'openssh-sftp-server', 'openssh-client', 'rsync', 'e2fsprogs', 'golang-go'] as const;

/**
 * A sha256 of everything the default image is made from here: the guest
 * contract, the init files, the module and package lists, and every file of
 * the agent's source (agent/). Recorded in the manifest; an image of another
 * recipe is out of date for `image build --if-missing`.
 */
export function imageRecipe(): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify([GUEST_CONTRACT_VERSION, GUEST_MODULES, GUEST_PACKAGES, guestFiles([])]));
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true })
      .sort((a, b) => (a.name < b.name ? -1 : 1))
      .flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
  for (const file of walk(AGENT_DIR)) hash.update(relative(AGENT_DIR, file)).update('\0').update(readFileSync(file)).update('\0');
  return hash.digest('hex');
}

/** In the initramfs: wrappers that run its scp, rsync and sftp-server from inside a root filesystem image. */
const GUEST_TOOLS_DIR = '/usr/lib/sshvisor/bin';
/** Where a root filesystem image's sessions see the initramfs (guest-files.ts; the agent's guestToolsDir). */
const INITRAMFS_IN_ROOT = '/run/sshvisor/guest';

/**
 * A shell script that runs one of the initramfs's programs from inside a
 * root filesystem image, whose own libraries may be another C library's
 * (Alpine's musl) or missing: through the initramfs's dynamic loader, with
 * its library directories only.
 */
function toolWrapper(program: string, libs: string[]): { content: string; mode: number } {
  const loader = libs.find((l) => /\/ld-linux[^/]*\.so/.test(l));
  if (!loader) throw new UserError(`${program} has no dynamic loader in its ldd output`);
  const dirs = [...new Set(libs.filter((l) => l !== loader).map((l) => INITRAMFS_IN_ROOT + dirname(l)))];
  const q = (s: string): string => `'${s}'`;
  return {
    content: `#!/bin/sh\nexec ${q(INITRAMFS_IN_ROOT + loader)} --argv0 "$0" --library-path ${q(dirs.join(':'))} ${q(INITRAMFS_IN_ROOT + program)} "$@"\n`,
    mode: 0o755,
  };
}

export interface BuildProgress {
  (step: string): void;
}

/**
 * Build the default guest image into `outDir`: Debian's cloud kernel, and an
 * initramfs with busybox, sshvisor-agent (built from agent/ here), sftp-server,
 * scp, ssh, ssh-add, rsync, nohup and the virtio modules. The new image replaces the old one only
 * once it is complete.
 */
export async function buildDefaultImage(outDir: string, progress: BuildProgress = () => {}): Promise<ImageManifest> {
  const busybox = requireTool('busybox');
  const sftpServer = requireFile('/usr/lib/openssh/sftp-server', 'openssh-sftp-server');
  const scp = requireFile('/usr/bin/scp', 'openssh-client');
  // ssh and ssh-add: what a user with a forwarded agent (ssh -A) reaches for, e.g. git over SSH.
  const sshClient = requireFile('/usr/bin/ssh', 'openssh-client');
  const sshAdd = requireFile('/usr/bin/ssh-add', 'openssh-client');
  // Debian's busybox-static has no nohup applet; people reach for `nohup ./server &`.
  const nohup = requireFile('/usr/bin/nohup', 'coreutils');
  const rsync = requireFile('/usr/bin/rsync', 'rsync');
  // Grows a root filesystem image to its VM's disk size at boot (guest-files.ts).
  const resize2fs = requireFile('/usr/sbin/resize2fs', 'e2fsprogs');
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
    const tools = {
      'sftp-server': { path: '/usr/lib/openssh/sftp-server', libs: await stage.copyProgram(sftpServer, '/usr/lib/openssh/sftp-server') },
      scp: { path: '/usr/bin/scp', libs: await stage.copyProgram(scp, '/usr/bin/scp') },
      rsync: { path: '/usr/bin/rsync', libs: await stage.copyProgram(rsync, '/usr/bin/rsync') },
    };
    await stage.copyProgram(sshClient, '/usr/bin/ssh');
    await stage.copyProgram(sshAdd, '/usr/bin/ssh-add');
    await stage.copyProgram(nohup, '/usr/bin/nohup');
    await stage.copyProgram(resize2fs, '/usr/sbin/resize2fs');
    for (const [name, tool] of Object.entries(tools)) stage.writeFile(`${GUEST_TOOLS_DIR}/${name}`, toolWrapper(tool.path, tool.libs));
    progress('building sshvisor-agent');
    const agent = join(work.dir, 'sshvisor-agent');
    await buildAgent(agent, 'amd64');
    stage.copyFile(agent, '/usr/sbin/sshvisor-agent', 0o755);
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
      recipe: imageRecipe(),
      builtAt: new Date().toISOString(),
      kernel: { package: kernel.pkg, version: kernel.version, release },
      packages: await installedVersions(GUEST_PACKAGES),
      modules: modules.map((m) => m.name),
      guest: { agent: { ...AGENT_PROTOCOL } },
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
