import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { freeBytes, isNoSpace } from '../util/atomic-write.js';
import { UserError, errorMessage } from '../util/errors.js';
import { ensurePrivateDir } from '../util/paths.js';
import { ensureDisk, ensureOverlay } from '../vm/disk.js';
import { noSpaceError, requireSpace } from './disk-space.js';
import type { Entry, VmManagerOptions } from './manager-types.js';
import { overlayBytes } from './vm-shape.js';

/** What mkfs writes on a new (sparse) disk, and a little more: the journal is most of it. */
const NEW_DISK_ROOM_MIB = 64;

/**
 * Make `entry`'s directory and disk if it has none yet, and record a new
 * VM's image and shape once its disk exists: the default image's raw data
 * disk (`disk.img`, /root), or a qcow2 copy-on-write layer over a root
 * filesystem image (`disk.qcow2`, the whole root; docs/images.md).
 * Returns { dir, disk }. A new VM that fails here leaves nothing behind (no
 * directory, no record). Throws a NoSpaceError when the data dir is full, a
 * UserError for anything else.
 */
export async function prepareVmDisk(opts: Pick<VmManagerOptions, 'dataDir' | 'store'>, entry: Entry): Promise<{ dir: string; disk: string }> {
  const { image, shape } = entry;
  const fresh = !existsSync(join(opts.dataDir, 'vms', entry.name));
  // A new VM needs room for its memory and a start on its disk: say so before making anything.
  if (fresh) requireSpace(opts.dataDir, (shape.memoryMiB + NEW_DISK_ROOM_MIB) * 1024 * 1024, `create VM ${entry.name}`);
  const dir = ensurePrivateDir(join(opts.dataDir, 'vms', entry.name));
  const disk = join(dir, image.rootfs ? 'disk.qcow2' : 'disk.img');
  try {
    if (image.rootfs) await ensureOverlay(disk, image.rootfs.path, overlayBytes(image.rootfs.fsBytes, shape.diskMiB));
    else await ensureDisk(disk, shape.diskMiB);
    // Recorded once it has a disk: a VM that never got one leaves no record either.
    if (fresh) opts.store.createVm(entry.name, shape);
  } catch (err) {
    if (fresh) rmSync(dir, { recursive: true, force: true });
    // mkfs words a full disk in many ways ("short write", "could not allocate block"): go by the free space too.
    if (isNoSpace(err) || (freeBytes(opts.dataDir) ?? Infinity) < NEW_DISK_ROOM_MIB * 1024 * 1024) {
      throw noSpaceError(`create the disk of VM ${entry.name}`, opts.dataDir, shape.diskMiB * 1024 * 1024);
    }
    throw new UserError(`cannot create the disk of VM ${entry.name}: ${errorMessage(err)}`);
  }
  return { dir, disk };
}
