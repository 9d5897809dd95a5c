import { closeSync, fsyncSync, openSync, renameSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Persistent files that are read back as a whole (snapshot descriptions,
 * template markers, pinned keys) are written under a temporary name, synced,
 * and renamed over the real name: a crash or a full disk leaves either the
 * old file or the new one, never half of one that looks whole.
 */

/** The temporary name a file is built under; never read as the real thing. */
export const partialName = (path: string): string => `${path}.partial`;

export function writeFileAtomic(path: string, content: string | Buffer, mode = 0o600): void {
  const tmp = partialName(path);
  try {
    const fd = openSync(tmp, 'w', mode);
    try {
      writeSync(fd, typeof content === 'string' ? Buffer.from(content) : content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  fsyncDir(dirname(path));
}

/** fsync a file's data and metadata (it must exist and be writable). */
export function fsyncFile(path: string): void {
  const fd = openSync(path, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Make a rename in `dir` durable (the directory entry, not just the file's bytes). */
export function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the rename itself is still atomic.
  }
}

/** Whether `err` is the filesystem saying it is full (or over quota). */
export function isNoSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return true;
  return /no space left on device|disk quota exceeded|SQLITE_FULL/i.test(String((err as Error | undefined)?.message ?? err));
}

/** Bytes an unprivileged writer can still use on the filesystem holding `path`, or undefined if unknown. */
export function freeBytes(path: string): number | undefined {
  try {
    const s = statfsSync(path);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return undefined;
  }
}
