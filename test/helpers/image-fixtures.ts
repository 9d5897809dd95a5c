import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Root filesystems tests make themselves, from this host's busybox-static:
 * a tree, an ext4 image of it (`mkfs.ext4 -d`), and a two-layer OCI archive
 * made with umoci, whose upper layer deletes a file (a whiteout) and whose
 * config carries Env and WorkingDir.
 */

const sh = (file: string, args: string[], cwd?: string): string => execFileSync(file, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

export interface BusyboxTreeOptions {
  /** Leave /bin/sh out (an image no session can start in). */
  noShell?: boolean;
  /** Extra files: path inside the image → content. */
  files?: Record<string, string | Buffer>;
}

/** A usrmerge-style busybox tree: /usr/bin/busybox, /bin → usr/bin, /usr/bin/sh → busybox. */
export function makeBusyboxTree(dir: string, opts: BusyboxTreeOptions = {}): void {
  for (const d of ['usr/bin', 'etc', 'root', 'tmp', 'proc', 'sys', 'dev']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync('/bin/busybox', join(dir, 'usr/bin/busybox'));
  symlinkSync('usr/bin', join(dir, 'bin'));
  if (!opts.noShell) symlinkSync('busybox', join(dir, 'usr/bin/sh'));
  writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  for (const [path, content] of Object.entries(opts.files ?? {})) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
}

/** `file`: an ext4 image (`sizeMiB`, sparse) of a busybox tree made in `workDir`. */
export function makeBusyboxExt4(workDir: string, file: string, opts: BusyboxTreeOptions & { sizeMiB?: number } = {}): string {
  const tree = join(workDir, `tree-${Math.random().toString(36).slice(2)}`);
  makeBusyboxTree(tree, opts);
  try {
    sh('truncate', ['-s', `${opts.sizeMiB ?? 64}M`, file]);
    sh('mkfs.ext4', ['-q', '-F', '-d', tree, file]);
  } finally {
    rmSync(tree, { recursive: true, force: true });
  }
  return file;
}

export interface OciArchiveOptions {
  /** Env entries of the image config (umoci config --config.env). */
  env?: string[];
  workingDir?: string;
  /** Extra files for the lower layer. */
  lowerFiles?: Record<string, string | Buffer>;
  /** No /bin/sh in the image. */
  noShell?: boolean;
}

/**
 * A two-layer OCI image made with umoci in `workDir`/layout (tag `v1`):
 * the lower layer is a busybox tree with /etc/doomed; the upper layer
 * deletes /etc/doomed (a whiteout, `.wh.doomed`) and adds /etc/upper
 * ("upper\n"). Returns the layout directory; `ociArchive` tars it. Needs root
 * (umoci unpack keeps owners).
 */
export function makeOciLayout(workDir: string, opts: OciArchiveOptions = {}): string {
  mkdirSync(workDir, { recursive: true });
  const layout = join(workDir, 'layout');
  const image = `${layout}:v1`;
  sh('umoci', ['init', '--layout', layout]);
  sh('umoci', ['new', '--image', image]);
  // A repack diffs against the bundle's unpack: a second layer needs a second unpack.
  const lower = join(workDir, 'bundle-lower');
  sh('umoci', ['unpack', '--image', image, lower]);
  makeBusyboxTree(join(lower, 'rootfs'), { noShell: opts.noShell, files: { 'etc/doomed': 'doomed\n', ...opts.lowerFiles } });
  sh('umoci', ['repack', '--image', image, lower]);
  const upper = join(workDir, 'bundle-upper');
  sh('umoci', ['unpack', '--image', image, upper]);
  rmSync(join(upper, 'rootfs/etc/doomed'));
  writeFileSync(join(upper, 'rootfs/etc/upper'), 'upper\n');
  sh('umoci', ['repack', '--image', image, upper]);
  const config = [...(opts.env ?? []).flatMap((e) => ['--config.env', e]), ...(opts.workingDir ? ['--config.workingdir', opts.workingDir] : [])];
  if (config.length) sh('umoci', ['config', '--image', image, ...config]);
  sh('umoci', ['gc', '--layout', layout]);
  for (const b of [lower, upper]) rmSync(b, { recursive: true, force: true });
  return layout;
}

/** Tar an OCI layout directory into an OCI archive (`oci-archive:` to skopeo). */
export function ociArchive(layout: string, file: string): string {
  sh('tar', ['-cf', file, '-C', layout, '.']);
  return file;
}

/** A `docker save`-format archive of the layout's image, tagged `tag` (skopeo writes it). */
export function dockerArchive(layout: string, file: string, tag: string): string {
  sh('skopeo', ['--insecure-policy', 'copy', '--quiet', `oci:${layout}:v1`, `docker-archive:${file}:${tag}`]);
  return file;
}

/** What debugfs says about a path inside an ext4 image: its `stat`, or '' when it is not there. */
export function debugfsStat(image: string, path: string): string {
  return execFileSync('debugfs', ['-R', `stat "${path}"`, image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

/** A file's content inside an ext4 image (debugfs cat). */
export function debugfsCat(image: string, path: string): string {
  return execFileSync('debugfs', ['-R', `cat "${path}"`, image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}
