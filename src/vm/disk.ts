import { chmodSync, existsSync, renameSync, rmSync, openSync, ftruncateSync, closeSync } from 'node:fs';
import { dirname } from 'node:path';
import { fsyncDir, fsyncFile } from '../util/atomic-write.js';
import { run } from '../util/exec.js';
import { requireTool } from '../util/tools.js';

/**
 * A VM's disk is made under a temporary name, synced and renamed, so a crash
 * never leaves a half-made disk that looks like a real one. Resolves false,
 * doing nothing, when `path` exists; rethrows what `make` throws, leaving nothing.
 */
async function createDisk(path: string, make: (tmp: string) => Promise<void>): Promise<boolean> {
  if (existsSync(path)) return false;
  const tmp = `${path}.creating`;
  rmSync(tmp, { force: true });
  try {
    await make(tmp);
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

/** Create a VM's persistent data disk (the default image's /root) if it does not exist yet: a sparse raw file with ext4. */
export function ensureDisk(path: string, sizeMiB: number): Promise<boolean> {
  const mkfs = requireTool('mkfs.ext4');
  return createDisk(path, async (tmp) => {
    const fd = openSync(tmp, 'w', 0o600);
    try {
      ftruncateSync(fd, sizeMiB * 1024 * 1024);
    } finally {
      closeSync(fd);
    }
    await run(mkfs, ['-q', '-F', '-L', 'sshvisor-data', '-m', '0', tmp]);
  });
}

/**
 * Create a VM's copy-on-write disk over a root filesystem image if it does
 * not exist yet: a qcow2 file of `sizeBytes` (virtual) whose unwritten
 * blocks read from `backing`, a raw file that is never written through it.
 * It starts at a few hundred KiB on the host. Throws what qemu-img says when it fails.
 */
export function ensureOverlay(path: string, backing: string, sizeBytes: number): Promise<boolean> {
  const qemuImg = requireTool('qemu-img');
  return createDisk(path, (tmp) => run(qemuImg, ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', backing, tmp, String(sizeBytes)]).then(() => undefined));
}
