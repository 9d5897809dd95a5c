import { chmodSync, existsSync, renameSync, rmSync, openSync, ftruncateSync, closeSync, fsyncSync } from 'node:fs';
import { dirname } from 'node:path';
import { fsyncDir } from '../util/atomic-write.js';
import { run } from '../util/exec.js';
import { requireTool } from '../util/tools.js';

/**
 * Create a VM's persistent disk if it does not exist yet: a sparse raw file
 * with an ext4 filesystem. Built under a temporary name and renamed, so a
 * crash never leaves a half-made disk that looks like a real one.
 */
export async function ensureDisk(path: string, sizeMiB: number): Promise<boolean> {
  if (existsSync(path)) return false;
  const mkfs = requireTool('mkfs.ext4');
  const tmp = `${path}.creating`;
  rmSync(tmp, { force: true });
  const fd = openSync(tmp, 'w', 0o600);
  try {
    ftruncateSync(fd, sizeMiB * 1024 * 1024);
  } finally {
    closeSync(fd);
  }
  try {
    await run(mkfs, ['-q', '-F', '-L', 'sshvisor-data', '-m', '0', tmp]);
    fsyncFile(tmp);
    renameSync(tmp, path);
    fsyncDir(dirname(path));
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  return true;
}

/**
 * Create a VM's copy-on-write disk over a root filesystem image if it does
 * not exist yet: a qcow2 file of `sizeBytes` (virtual) whose unwritten
 * blocks read from `backing`, a raw file that is never written through it.
 * It starts at a few hundred KiB on the host. Made under a temporary name
 * and renamed, like ensureDisk. Throws what qemu-img says when it fails.
 */
export async function ensureOverlay(path: string, backing: string, sizeBytes: number): Promise<boolean> {
  if (existsSync(path)) return false;
  const qemuImg = requireTool('qemu-img');
  const tmp = `${path}.creating`;
  rmSync(tmp, { force: true });
  try {
    await run(qemuImg, ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', backing, tmp, String(sizeBytes)]);
    chmodSync(tmp, 0o600);
    fsyncFile(tmp);
    renameSync(tmp, path);
    fsyncDir(dirname(path));
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  return true;
}

function fsyncFile(path: string): void {
  const fd = openSync(path, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
