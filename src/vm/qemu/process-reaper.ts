import type { ChildProcess } from 'node:child_process';

/**
 * QEMU children still alive when this Node process exits (an uncaught error,
 * a test runner giving up) are killed with it, so no VM outlives the process
 * that owned it. This is the default (tests, library use); `sshvisor serve`
 * spawns its VMs outside it (qemu-process.ts, survivesGateway) so they
 * survive a crash of the gateway, except ephemeral ones (a template build).
 * A SIGKILL of this process runs no handler: a later gateway ends or adopts
 * what is left (src/manager/reattach.ts).
 */
const live = new Set<ChildProcess>();
let hooked = false;

export function killAllOnExit(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const c of live) c.kill('SIGKILL');
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      // Someone else (sshvisor serve) handles this signal and will exit in its own time.
      if (process.listenerCount(sig) > 1) return;
      for (const c of live) c.kill('SIGKILL');
      process.off(sig, onSignal);
      process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}
