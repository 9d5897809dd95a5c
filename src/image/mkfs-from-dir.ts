import { closeSync, lstatSync, openSync, readdirSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../util/exec.js';
import { requireTool } from '../util/tools.js';

/**
 * Turn a directory tree into an ext4 image with `mkfs.ext4 -d` (no loop
 * mount, no root needed for the file system itself: owners, modes, xattrs
 * such as file capabilities, hard links and device nodes are copied as they
 * are in the tree).
 */

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const BLOCK = 4 * KiB;
/** mke2fs's default bytes-per-inode for a file system of this size ("default" in /etc/mke2fs.conf). */
const BYTES_PER_INODE = 16 * KiB;

/** What a tree needs on ext4: `bytes` of 4 KiB blocks, `entries` inodes. */
export interface TreeSize {
  bytes: number;
  entries: number;
}

/** Walk `dir` (without following symlinks) and add up what its files need on ext4. */
export function measureTree(dir: string): TreeSize {
  let bytes = 0;
  let entries = 0;
  const stack = [dir];
  while (stack.length) {
    const p = stack.pop() as string;
    const st = lstatSync(p);
    entries++;
    if (st.isDirectory()) {
      bytes += BLOCK;
      for (const e of readdirSync(p)) stack.push(join(p, e));
    } else if (st.isFile()) {
      // mkfs -d keeps a sparse file's holes: what it needs is what the file has allocated.
      bytes += Math.ceil(Math.min(st.size, st.blocks * 512) / BLOCK) * BLOCK;
    } else if (st.isSymbolicLink() && st.size > 59) {
      bytes += BLOCK; // longer targets than fit in the inode take a block
    }
  }
  return { bytes, entries };
}

/**
 * The file system for a tree: its content plus as much again, at least
 * 1 GiB more (the image is sparse, so unused room costs nothing on the host,
 * and a VM's own changes need it), rounded to 64 MiB; inodes for twice the
 * entries, at least mke2fs's default for that size.
 */
export function ext4Geometry(tree: TreeSize): { fsBytes: number; inodes: number } {
  const fsBytes = Math.ceil((tree.bytes + Math.max(tree.bytes, GiB)) / (64 * MiB)) * 64 * MiB;
  const inodes = Math.max(Math.ceil(fsBytes / BYTES_PER_INODE), tree.entries * 2);
  return { fsBytes, inodes };
}

/**
 * Make `file` (created sparse, `fsBytes` long) an ext4 file system holding
 * `dir`'s tree. Returns the file system's size in bytes. Throws a UserError
 * carrying mkfs's own last line if it fails (a full disk among them).
 */
export async function mkfsFromDir(dir: string, file: string, label: string): Promise<number> {
  const { fsBytes, inodes } = ext4Geometry(measureTree(dir));
  const fd = openSync(file, 'w', 0o644);
  try {
    ftruncateSync(fd, fsBytes);
  } finally {
    closeSync(fd);
  }
  // -m 0: blocks kept for root help only non-root daemons, and every session runs as root.
  // lazy_journal_init: the file is new and sparse, so the journal already reads as zeros;
  // writing them out would put 32-64 MiB of zeros on the host's disk for nothing. (Inode
  // tables are left to mke2fs: marked zeroed, so no VM's kernel zeroes them into its own layer.)
  // The volume label is at most 16 bytes.
  const args = ['-F', '-q', '-t', 'ext4', '-m', '0', '-N', String(inodes), '-E', 'lazy_journal_init=1', '-L', label.slice(0, 16), '-d', dir, file];
  await run(requireTool('mkfs.ext4'), args);
  return fsBytes;
}
