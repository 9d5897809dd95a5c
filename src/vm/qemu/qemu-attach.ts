import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { VmSpec } from '../driver.js';
import { findLiveQemu, isAlive } from './qemu-process.js';
import { readRuntime, runtimePath } from './qemu-runtime.js';
import type { Adoption } from './qemu-vm.js';

/** The runtime files a QEMU leaves in its VM dir while it runs (see qemu-args.ts, qemu-runtime.ts). */
const runtimeFiles = (dir: string): string[] => ['qmp.sock', 'console.sock', 'qemu.pid'].map((f) => join(dir, f)).concat(runtimePath(dir));

/**
 * The QEMU an earlier gateway process left running in `dir`, if it is still
 * alive and really is that VM's QEMU (its pid file's process serves the dir's
 * QMP socket). Otherwise whatever it left (a stale pid file, dead sockets) is
 * removed, so nothing later mistakes it for a live VM.
 */
export async function findLiveQemuVm(dir: string): Promise<{ spec: VmSpec; adoption: Adoption } | undefined> {
  const runtime = readRuntime(dir);
  const qmpSocket = join(dir, 'qmp.sock');
  const pid = findLiveQemu(join(dir, 'qemu.pid'), qmpSocket.replace(/,/g, ',,'));
  if (runtime && pid !== undefined && pid === runtime.pid) {
    return { spec: runtime.spec, adoption: { pid, startedAt: runtime.startedAt } };
  }
  // A live QEMU without its runtime record cannot be driven (no spec, no SSH port): end it.
  // Wait for it to be gone: it holds the disk image's lock, which the VM's next QEMU needs.
  if (pid !== undefined) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
    for (let i = 0; i < 100 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  }
  for (const f of runtimeFiles(dir)) rmSync(f, { force: true });
  return undefined;
}
