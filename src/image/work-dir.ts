import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { freeBytes, fsyncDir, fsyncFile, isNoSpace, writeFileAtomic } from '../util/atomic-write.js';
import { MANIFEST_FILE } from './manifest.js';
import { ROOTFS_FILE } from './rootfs-manifest.js';

/**
 * Where a new image is made: a temporary directory inside DATA_DIR/images
 * (same filesystem, so the finished image is renamed into place, never
 * copied), named `.import-NAME-PID-XXXXXX` or `.build-NAME-PID-XXXXXX`. An
 * image name never starts with a dot, so none of these is ever listed, and
 * one whose process is gone (a kill -9, a power cut) is swept by the next
 * import or build.
 */

/** Every temporary directory in DATA_DIR/images starts with this; no image name does. */
export const WORK_DIR_PREFIX = '.';
const STALE_RE = /^\.(?:import|build|rm)-.+-(\d+)-[A-Za-z0-9]{6}$/;
const MiB = 1024 * 1024;
/** Less than this free when a step fails: the disk filled up (tools word ENOSPC in many ways, some not at all). */
const NEARLY_FULL = 8 * MiB;

export type WorkPurpose = 'import' | 'build';

export class ImageWorkDir {
  private constructor(
    /** The temporary directory; scratch space (layouts, trees) goes here. */
    readonly dir: string,
    /** What becomes DATA_DIR/images/NAME: rootfs.ext4 and manifest.json, nothing else. */
    readonly out: string,
    /** The image's final directory. */
    readonly target: string,
  ) {}

  /** Make the temporary directory for image `name` (its name already checked free by the caller). */
  static create(imagesDir: string, name: string, purpose: WorkPurpose): ImageWorkDir {
    mkdirSync(imagesDir, { recursive: true, mode: 0o755 });
    const dir = mkdtempSync(join(imagesDir, `${WORK_DIR_PREFIX}${purpose}-${name}-${process.pid}-`));
    const out = join(dir, 'image');
    mkdirSync(out, { mode: 0o755 });
    return new ImageWorkDir(dir, out, join(imagesDir, name));
  }

  /** Where the image's rootfs.ext4 is made. */
  get rootfs(): string {
    return join(this.out, ROOTFS_FILE);
  }

  /**
   * Write the manifest, make everything durable, and rename the image into
   * place. Throws a UserError if the name was taken meanwhile (the rename
   * would otherwise replace an empty directory of that name).
   */
  install(manifest: unknown): string {
    fsyncFile(this.rootfs);
    writeFileAtomic(join(this.out, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n', 0o644);
    fsyncDir(this.out);
    if (existsSync(this.target)) throw new UserError(`image name ${this.target.split('/').pop()} was taken while this image was made`);
    renameSync(this.out, this.target);
    fsyncDir(join(this.target, '..'));
    return this.target;
  }

  dispose(): void {
    removeWorkDir(this.dir);
  }
}

/**
 * Run `fn` with a fresh work dir for image `name`, and remove the work dir
 * afterwards whatever happens. A failure with the disk (nearly) full becomes
 * one UserError line saying so; `what` names the job in it ("import image x").
 */
export async function withImageWorkDir<T>(imagesDir: string, name: string, purpose: WorkPurpose, what: string, fn: (work: ImageWorkDir) => Promise<T>): Promise<T> {
  sweepStaleWorkDirs(imagesDir);
  const work = ImageWorkDir.create(imagesDir, name, purpose);
  try {
    return await fn(work);
  } catch (err) {
    const free = freeBytes(work.dir);
    const full = isNoSpace(err) || (free !== undefined && free < NEARLY_FULL);
    work.dispose();
    if (!full) throw err;
    const after = freeBytes(imagesDir);
    const room = after === undefined ? '' : ` (${Math.floor(after / MiB)} MiB free)`;
    throw new UserError(`no space left in ${imagesDir} to ${what}${room}; nothing was kept`, { cause: err });
  } finally {
    if (existsSync(work.dir)) work.dispose();
  }
}


/**
 * Remove work dirs whose process is gone, unless another process still works
 * in one: the mmdebstrap a killed sshvisor started outlives it (until it
 * writes to the dead parent's pipe and dies of SIGPIPE, its /proc, /sys and
 * /dev/pts still mounted in the tree, which removeWorkDir then unmounts).
 */
export function sweepStaleWorkDirs(imagesDir: string): void {
  if (!existsSync(imagesDir)) return;
  for (const entry of readdirSync(imagesDir)) {
    const pid = STALE_RE.exec(entry)?.[1];
    if (pid === undefined || processAlive(Number(pid))) continue;
    const dir = join(imagesDir, entry);
    if (processUsing(dir)) continue;
    try {
      removeWorkDir(dir);
    } catch {
      // A mount that would not go: left for the operator; never taken for an image.
    }
  }
}

/** Whether any process has its cwd or root in `dir`, or names it in its command line (mmdebstrap, a chrooted apt). */
function processUsing(dir: string): boolean {
  const inside = (p: string): boolean => p === dir || p.startsWith(`${dir}/`);
  for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      if (inside(readlinkSync(`/proc/${pid}/cwd`)) || inside(readlinkSync(`/proc/${pid}/root`))) return true;
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').some((arg) => arg.includes(dir))) return true;
    } catch {
      // gone meanwhile, or not ours to look at
    }
  }
  return false;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * rm -rf `dir`, but never through a mount point: mmdebstrap mounts /proc,
 * /sys and /dev inside its tree, and a build killed half-way may leave them
 * mounted; removing recursively through a bind mount of /dev would delete
 * the host's device nodes. Such mounts are unmounted first; if one stays,
 * this throws and removes nothing.
 */
export function removeWorkDir(dir: string): void {
  const inside = mountsUnder(dir);
  for (const mount of inside) spawnSync('umount', ['--lazy', mount], { stdio: 'ignore' });
  const left = mountsUnder(dir);
  if (left.length) throw new UserError(`cannot remove ${dir}: ${left[0]} is still mounted inside it`);
  rmSync(dir, { recursive: true, force: true });
}

/** Mount points at or under `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return text
    .split('\n')
    .map((line) => unescape(line.split(' ')[4] ?? ''))
    .filter((mp) => mp === dir || mp.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}
