import { existsSync, statSync } from 'node:fs';
import { UserError, errorMessage } from '../util/errors.js';
import { freeBytes, isNoSpace } from '../util/atomic-write.js';
import { run } from '../util/exec.js';
import { requireTool } from '../util/tools.js';
import type { Logger } from '../util/log.js';
import type { VmManagerOptions } from './manager-types.js';

/**
 * A full data dir, met before it does harm. A running VM's RAM is a shared
 * mapping of DATA_DIR/vms/NAME/ram: were that file sparse, the guest touching
 * a new page on a full filesystem would get QEMU killed by SIGBUS. So the file
 * is allocated in full before QEMU starts (fallocate: blocks reserved, nothing
 * written), and a VM that cannot have its memory does not start, with a clear
 * error. Suspends check for room first, and a suspend that fails anyway
 * leaves the VM running.
 */

const MiB = 1024 * 1024;

/** The data dir is full: retrying another way (a cold boot instead of a resume) would not help. */
export class NoSpaceError extends UserError {}

/** The words users and operators see, whatever failed. */
export function noSpaceError(what: string, dir: string, needBytes?: number): NoSpaceError {
  const free = freeBytes(dir);
  const numbers = free === undefined ? '' : ` (${mib(free)} free${needBytes === undefined ? '' : `, needs about ${mib(needBytes)}`})`;
  return new NoSpaceError(`no space left in the data dir to ${what}${numbers}`);
}

const mib = (bytes: number): string => `${Math.floor(bytes / MiB)} MiB`;

/** Reserve every block of a VM's RAM file; throws a "no space left" UserError when the data dir cannot hold it. */
export async function preallocateRam(path: string, bytes: number, what: string): Promise<void> {
  // Blocks the file already has (a resumed VM's RAM) need no new room.
  const have = existsSync(path) ? statSync(path).blocks * 512 : 0;
  const dir = path.slice(0, path.lastIndexOf('/')) || '/';
  const free = freeBytes(dir);
  if (free !== undefined && free < bytes - have) throw noSpaceError(what, dir, bytes - have);
  try {
    await run(requireTool('fallocate'), ['-l', String(bytes), path]);
  } catch (err) {
    if (isNoSpace(err)) throw noSpaceError(what, dir, bytes - have);
    // A filesystem without fallocate (some network filesystems): run sparse, as before.
    if (/not supported/i.test(errorMessage(err))) return;
    throw err;
  }
}

/** Throw a "no space left" UserError unless `dir` has `bytes` free. */
export function requireSpace(dir: string, bytes: number, what: string): void {
  const free = freeBytes(dir);
  if (free !== undefined && free < bytes) throw noSpaceError(what, dir, bytes);
}

type VmRecords = VmManagerOptions['store'];

/**
 * The store's VM records (boots, exits, resumes) are bookkeeping: on a full
 * disk SQLite refuses the write (SQLITE_FULL), and that must cost a line in
 * the log, not an exception in a VM's exit handler that takes the gateway,
 * and every VM with it, down.
 */
export function bestEffortRecords(store: VmRecords, logger: Logger): VmRecords {
  const attempt = (what: string, vm: string, write: () => void): void => {
    try {
      write();
    } catch (err) {
      logger.warn({ vm, event: 'record-failed', what, err: errorMessage(err) }, `could not record the ${what} of VM ${vm}`);
    }
  };
  return {
    recordBoot: (vm) => attempt('boot', vm, () => store.recordBoot(vm)),
    recordExit: (vm, reason, detail) => attempt('exit', vm, () => store.recordExit(vm, reason, detail)),
    recordResume: (vm) => attempt('resume', vm, () => store.recordResume(vm)),
    // Reads: a full disk does not stop them.
    listVms: () => store.listVms(),
    getVm: (vm) => store.getVm(vm),
    // Not bookkeeping: a VM whose image is not recorded could not be started again as what it is.
    createVm: (vm, shape) => store.createVm(vm, shape),
  };
}
