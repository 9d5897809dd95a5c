import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { isCurrentImage } from '../image/image.js';
import { buildDefaultImage, imageRecipe } from '../image/build.js';
import { imagePath, listImages, readImage, removeImage, type ImageInfo } from '../image/catalogue.js';
import { buildDebianImage } from '../image/debian-rootfs.js';
import { importExt4 } from '../image/import-ext4.js';
import { importOci } from '../image/import-oci.js';
import type { RootfsManifest } from '../image/rootfs-manifest.js';
import { Store } from '../store/store.js';
import { UserError } from '../util/errors.js';
import { defaultDataDir, defaultImageDir } from '../util/paths.js';

const progress = (step: string): void => void process.stderr.write(`image: ${step}\n`);
/** Steps of an import or a Debian build, for a person watching; a script's stderr gets only the error, one line. */
const ttyProgress = (step: string): void => {
  if (process.stderr.isTTY) progress(step);
};
const out = (line: string): void => void process.stdout.write(`${line}\n`);

/**
 * VMs created with each image, from the store. A data dir with no state.db
 * has none, and is left without one: listing images changes nothing.
 */
function vmsUsing(dataDir: string, names: readonly string[]): Map<string, string[]> {
  const result = new Map(names.map((n) => [n, [] as string[]]));
  if (!existsSync(join(dataDir, 'state.db'))) return result;
  const store = Store.open(dataDir);
  try {
    for (const n of names) result.set(n, store.vmsUsingImage(n));
  } finally {
    store.close();
  }
  return result;
}

/** 1536 MiB → "1.5 GiB"; sizes on the host disk. */
export function humanBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 || v >= 100 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

/** "2026-11-29T21:18:09.917Z" → "2026-11-29 21:18" (UTC, as stored). */
const shortDate = (iso: string): string => iso.replace('T', ' ').slice(0, 16);

/** The `image ls` table: NAME KIND SIZE VMS CREATED, columns padded to their widest cell. */
export function imageTable(images: readonly ImageInfo[], vms: ReadonlyMap<string, readonly string[]>): string {
  const rows = [['NAME', 'KIND', 'SIZE', 'VMS', 'CREATED'], ...images.map((i) => [i.name, i.kind, humanBytes(i.sizeBytes), String(vms.get(i.name)?.length ?? 0), shortDate(i.createdAt)])];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ')).join('\n');
}

function describeSource(m: RootfsManifest): string {
  const s = m.source;
  switch (s.type) {
    case 'debian':
      return `Debian ${s.suite} from ${s.mirror}: ${s.packages.join(' ') || '(apt variant only)'}`;
    case 'ext4':
      return `ext4 file ${s.file}`;
    case 'oci':
      return `${s.format} ${s.path}${s.ref ? ` (${s.ref})` : ''}`;
  }
}

/** `image inspect`'s readable summary, one `key  value` line each. */
export function imageSummary(info: ImageInfo, usedBy: readonly string[]): string {
  const lines: [string, string][] = [
    ['name', info.name],
    ['kind', info.kind],
    ['dir', info.dir],
    ['created', info.createdAt],
  ];
  if (info.kind === 'sshvisor') {
    const m = info.manifest;
    lines.push(['size', `${humanBytes(info.sizeBytes)} on disk`], ['kernel', `${m.kernel.release} (${m.kernel.package} ${m.kernel.version})`]);
    lines.push(['agent', m.guest.agent ? `sshvisor-agent, protocol ${m.guest.agent.minVersion}-${m.guest.agent.maxVersion}` : 'none (console only)']);
  } else {
    const m = info.manifest;
    lines.push(['size', `${humanBytes(info.sizeBytes)} on disk, file system ${humanBytes(m.fsBytes)}`], ['kernel', 'the default image\'s'], ['source', describeSource(m)]);
    lines.push(['ssh daemon', `${info.sshDaemon} (sessions go through sshvisor-agent either way)`]);
    lines.push(['session env', m.session.env.length ? m.session.env.join(' ') : '(none)'], ['working dir', m.session.workingDir ?? '(HOME)']);
  }
  for (const [file, f] of Object.entries(info.manifest.files)) lines.push([`sha256 ${file}`, f.sha256]);
  lines.push(['used by', usedBy.length ? usedBy.join(', ') : 'no VM']);
  const width = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}

const dataDirOption = ['--data-dir <dir>', 'data directory (images are DATA_DIR/images/NAME)', defaultDataDir()] as const;

interface BuildOptions {
  out?: string;
  dataDir: string;
  ifMissing?: boolean;
  debian?: boolean;
  name?: string;
  suite?: string;
  packages?: string;
  defaultPackages: boolean;
  mirror?: string;
}

async function buildCommand(opts: BuildOptions): Promise<void> {
  const started = Date.now();
  const secs = (): string => ((Date.now() - started) / 1000).toFixed(1);
  if (!opts.debian) {
    const debianOnly = (['name', 'suite', 'packages', 'mirror'] as const).find((k) => opts[k] !== undefined) ?? (opts.defaultPackages ? undefined : 'no-default-packages');
    if (debianOnly) throw new UserError(`--${debianOnly} is for \`image build --debian\``);
    const dir = opts.out ?? defaultImageDir(opts.dataDir);
    if (opts.ifMissing && isCurrentImage(dir, imageRecipe())) {
      out(`guest image already built in ${dir} (\`sshvisor image build\` rebuilds it)`);
      return;
    }
    const manifest = await buildDefaultImage(dir, progress);
    out(`built ${dir} in ${secs()}s: kernel ${manifest.kernel.release}, ${manifest.modules.length} modules`);
    return;
  }
  if (opts.out) throw new UserError('--out is for the default image; a Debian image goes to DATA_DIR/images/NAME (--name)');
  const name = opts.name ?? 'debian';
  if (opts.ifMissing && existsSync(imagePath(opts.dataDir, name))) {
    out(`image ${name} already exists (\`sshvisor image rm ${name}\` first to rebuild it)`);
    return;
  }
  const packages = opts.packages?.split(',').map((p) => p.trim()).filter(Boolean);
  const manifest = await buildDebianImage(opts.dataDir, { name, suite: opts.suite, packages, defaultPackages: opts.defaultPackages, mirror: opts.mirror }, ttyProgress);
  const info = readImage(opts.dataDir, name);
  out(`built image ${name} in ${secs()}s: Debian ${opts.suite ?? 'bookworm'}, ${manifest.source.type === 'debian' ? manifest.source.packages.length : 0} packages asked for, ${humanBytes(info.sizeBytes)} on disk (file system ${humanBytes(manifest.fsBytes)})`);
}

export function registerImageCommands(program: Command): void {
  const image = program.command('image').description('build, import, list and remove guest images');
  image
    .command('build')
    .description("build the default guest image from Debian's packages (cloud kernel, busybox, sshvisor-agent), or with --debian a Debian root filesystem image")
    .option('--out <dir>', 'where to write the default image', undefined)
    .option(...dataDirOption)
    .option('--if-missing', 'do nothing if a current image is already there')
    .option('--debian', 'build a Debian system with mmdebstrap instead (DATA_DIR/images/NAME/rootfs.ext4)')
    .option('--name <name>', 'with --debian: the image name (default debian)')
    .option('--suite <suite>', 'with --debian: the Debian suite (default bookworm)')
    .option('--packages <a,b,...>', 'with --debian: packages added to the default set')
    .option('--no-default-packages', 'with --debian: only --packages (and apt), not the default set')
    .option('--mirror <url>', "with --debian: the Debian mirror (default: this host's apt sources)")
    .action(buildCommand);

  image
    .command('ls')
    .description('list the images: name, kind, size on disk, VMs using it, created')
    .option(...dataDirOption)
    .action((opts: { dataDir: string }) => {
      const images = listImages(opts.dataDir, (name, reason) => process.stderr.write(`sshvisor: image ${name} left out: ${reason}\n`));
      out(imageTable(images, vmsUsing(opts.dataDir, images.map((i) => i.name))));
    });

  image
    .command('import')
    .description('import an ext4 root filesystem (FILE) or, with --oci, an OCI image layout, OCI archive or `docker save` archive')
    .argument('[file]', 'an ext4 file system image')
    .requiredOption('--name <name>', 'the image name')
    .option('--oci <path>', 'an OCI image layout directory, OCI archive or docker save archive')
    .option('--ref <tag>', 'with --oci: which image of several (a tag in it)')
    .option(...dataDirOption)
    .action(async (file: string | undefined, opts: { name: string; oci?: string; ref?: string; dataDir: string }) => {
      if ((file === undefined) === (opts.oci === undefined)) throw new UserError('give either an ext4 FILE or --oci PATH');
      if (opts.ref !== undefined && opts.oci === undefined) throw new UserError('--ref is for --oci');
      imagePath(opts.dataDir, opts.name); // a bad name is refused before anything is read
      const started = Date.now();
      const manifest = file !== undefined
        ? await importExt4(opts.dataDir, file, opts.name, ttyProgress)
        : await importOci(opts.dataDir, opts.oci as string, opts.name, { ref: opts.ref, progress: ttyProgress });
      const info = readImage(opts.dataDir, opts.name);
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      out(`imported image ${opts.name} in ${secs}s: ${info.kind}, ${humanBytes(info.sizeBytes)} on disk (file system ${humanBytes(manifest.fsBytes)}), ssh daemon ${manifest.sshDaemon}`);
    });

  image
    .command('inspect')
    .description("show an image's manifest and who uses it")
    .argument('<name>')
    .option('--json', 'everything as JSON (the manifest as stored)')
    .option(...dataDirOption)
    .action((name: string, opts: { json?: boolean; dataDir: string }) => {
      const info = readImage(opts.dataDir, name);
      const usedBy = vmsUsing(opts.dataDir, [name]).get(name) ?? [];
      out(opts.json ? JSON.stringify({ ...info, usedBy }, null, 2) : imageSummary(info, usedBy));
    });

  image
    .command('rm')
    .description('remove an image (refused while VMs use it)')
    .argument('<name>')
    .option(...dataDirOption)
    .action((name: string, opts: { dataDir: string }) => {
      imagePath(opts.dataDir, name);
      removeImage(opts.dataDir, name, vmsUsing(opts.dataDir, [name]).get(name) ?? []);
      out(`removed image ${name}`);
    });
}
