import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { requireTool } from '../util/tools.js';
import { runStatus } from '../util/exec.js';
import { UserError } from '../util/errors.js';
import type { SshDaemon } from './catalogue.js';

/**
 * Checks on an ext4 root filesystem image, made on the file itself with
 * e2fsprogs (`e2fsck -fn`, `debugfs -R`): nothing is mounted, so a hostile
 * image meets only a read-only userspace parser, never the host's kernel.
 */

/** The superblock starts at byte 1024; its s_magic (little-endian 0xEF53) is 56 bytes in. */
const MAGIC_OFFSET = 1080;
const EXT_MAGIC = 0xef53;
/** As the kernel's MAXSYMLINKS: more links than this in one lookup is a loop. */
const MAX_LINKS = 40;

/** What debugfs says about one inode. */
export interface ImageInode {
  /** The path with every symlink resolved, absolute inside the image. */
  path: string;
  type: 'regular' | 'directory' | 'symlink' | 'other';
  /** Permission bits (e.g. 0o755). */
  mode: number;
}

/**
 * Throw a UserError unless `file` exists, is a regular file, and carries the
 * ext2/3/4 superblock magic. `label` names the file in the message.
 */
export function assertExt4Magic(file: string, label = file): void {
  let size: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new UserError(`${label} is not a regular file`);
    size = st.size;
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`${label}: no such file`);
  }
  const buf = Buffer.alloc(2);
  if (size >= MAGIC_OFFSET + 2) {
    const fd = openSync(file, 'r');
    try {
      readSync(fd, buf, 0, 2, MAGIC_OFFSET);
    } finally {
      closeSync(fd);
    }
  }
  if (buf.readUInt16LE(0) !== EXT_MAGIC) throw new UserError(`${label} is not an ext4 file system (no ext4 superblock at byte 1024)`);
}

/**
 * `e2fsck -fn`: a full check that changes nothing. Throws a UserError with
 * e2fsck's first complaint if the file system has errors (exit status 4 or
 * more; 1 and 2 only mean "would fix" with -n, which a clean image never says).
 */
export async function assertFsckClean(file: string, label = file): Promise<void> {
  const r = await runStatus(requireTool('e2fsck'), ['-fn', file]);
  if (r.code === 0) return;
  const noise = /^(e2fsck \d|Pass \d|ext2fs_open2|.*WARNING: Filesystem still has errors|\S+: \d+\/\d+ files|IGNORED\.|Fix\? no|Clear\? no)/;
  const complaint = `${r.stdout}\n${r.stderr}`
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l && !noise.test(l));
  throw new UserError(`${label} is a corrupt ext4 file system (e2fsck: ${complaint ?? `exit ${r.code}`}); repair a copy with \`e2fsck -f\``);
}

/**
 * Look `path` up inside the image the way the kernel would with the image as
 * root: every symlink, in the middle or at the end, absolute or relative, is
 * resolved here (debugfs is only ever asked about paths of real
 * directories), at most 40 of them. Returns null when the path does not
 * resolve (missing, a loop, a name debugfs cannot be asked about).
 */
export async function resolveInImage(file: string, path: string): Promise<ImageInode | null> {
  const rest = path.split('/');
  const done: string[] = [];
  let links = 0;
  let last: Stat | null = await statInImage(file, '/');
  while (rest.length) {
    const part = rest.shift() as string;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      done.pop();
      last = null;
      continue;
    }
    if (last && last.type !== 'directory' && done.length) return null;
    const here = `/${[...done, part].join('/')}`;
    const inode = await statInImage(file, here);
    if (!inode) return null;
    if (inode.type === 'symlink') {
      if (++links > MAX_LINKS) return null;
      const target = await readLinkInImage(file, here, inode.raw);
      if (target === null) return null;
      if (target.startsWith('/')) done.length = 0;
      rest.unshift(...target.split('/'));
      last = null;
      continue;
    }
    done.push(part);
    last = inode;
  }
  const final = `/${done.join('/')}`;
  const end = last ?? (await statInImage(file, final));
  return end && { path: final, type: end.type, mode: end.mode };
}

/** A name debugfs's command parser would mangle: refuse it rather than look up the wrong file. */
const UNASKABLE = /["\\\x00-\x1f\x7f]/;

/** An inode and debugfs's whole `stat` of it. */
type Stat = ImageInode & { raw: string };

async function statInImage(file: string, path: string): Promise<Stat | null> {
  if (UNASKABLE.test(path)) return null;
  const r = await runStatus(requireTool('debugfs'), ['-R', `stat "${path}"`, file]);
  const m = /Type: (\w+)(?: special)?\s+Mode:\s+([0-7]+)/.exec(r.stdout);
  if (!m) return null;
  const type = m[1] === 'regular' || m[1] === 'directory' || m[1] === 'symlink' ? m[1] : 'other';
  return { path, type, mode: parseInt(m[2] as string, 8) & 0o7777, raw: r.stdout };
}

/** A symlink's target: inline in the inode ("fast") or in a data block (`cat` prints it). */
async function readLinkInImage(file: string, path: string, stat: string): Promise<string | null> {
  const fast = /^Fast link dest: "(.*)"$/m.exec(stat);
  if (fast) return fast[1] as string;
  const size = Number(/Size: (\d+)/.exec(stat)?.[1] ?? NaN);
  const body = await runStatus(requireTool('debugfs'), ['-R', `cat "${path}"`, file]);
  const target = Number.isFinite(size) ? body.stdout.slice(0, size) : body.stdout;
  return target && !target.includes('\0') ? target : null;
}

/**
 * Where `/bin/sh` leads in the image (e.g. /usr/bin/dash on a usrmerge
 * Debian), or null if it does not lead to an executable regular file.
 */
export async function findShell(file: string): Promise<string | null> {
  const sh = await resolveInImage(file, '/bin/sh');
  return sh && sh.type === 'regular' && (sh.mode & 0o111) !== 0 ? sh.path : null;
}

/** Which SSH daemon the image ships: OpenSSH's sshd, dropbear, or none. */
export async function detectSshDaemon(file: string): Promise<SshDaemon> {
  const isProgram = async (p: string): Promise<boolean> => {
    const i = await resolveInImage(file, p);
    return i !== null && i.type === 'regular';
  };
  if ((await isProgram('/usr/sbin/sshd')) || (await isProgram('/sbin/sshd'))) return 'openssh';
  for (const p of ['/usr/sbin/dropbear', '/usr/bin/dropbear', '/sbin/dropbear', '/bin/dropbear']) {
    if (await isProgram(p)) return 'dropbear';
  }
  return 'none';
}

/**
 * Everything a root filesystem image must pass, cheapest first: ext4 magic,
 * a clean `e2fsck -fn`, an executable /bin/sh. Each failure is one UserError
 * line naming `label`. Returns the shell's real path and the SSH daemon.
 */
export async function checkRootfs(file: string, label = file): Promise<{ shell: string; sshDaemon: SshDaemon }> {
  assertExt4Magic(file, label);
  await assertFsckClean(file, label);
  const shell = await findShell(file);
  if (!shell) throw new UserError(`${label} has no /bin/sh (an executable file, symlinks followed inside the image): every session starts one`);
  return { shell, sshDaemon: await detectSshDaemon(file) };
}
