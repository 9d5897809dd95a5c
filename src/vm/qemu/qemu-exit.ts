import { readFileSync } from 'node:fs';
import type { ExitInfo } from '../driver.js';

/** The last line QEMU wrote to its log, without the program name: usually why it failed. */
export function lastLogLine(path: string): string {
  try {
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    return (lines[lines.length - 1] ?? '').replace(/^qemu-system-x86_64: /, '');
  } catch {
    return '';
  }
}

/** Why the host side asked the VM to end, if it did: decides between stopped, killed and crashed. */
export type EndRequest = 'stop' | 'stop-forced' | 'kill' | 'suspend';

/** What QemuVm saw before its QEMU ended. */
export interface ExitFacts {
  endRequest?: EndRequest;
  /** The kernel's panic text went by on the console. */
  panicSeen: boolean;
  /** pvpanic / GUEST_PANICKED. */
  guestPanicked: boolean;
  /** QMP SHUTDOWN's reason. */
  shutdownReason?: string;
  /** The process was taken over from an earlier gateway: its exit status cannot be known. */
  adopted: boolean;
  /** The last line QEMU wrote to its log. */
  logTail: () => string;
}

export function classifyExit(code: number | null, signal: NodeJS.Signals | null, f: ExitFacts): Pick<ExitInfo, 'reason' | 'detail'> {
  if (f.endRequest === 'kill') return { reason: 'killed', detail: 'killed by sshvisor' };
  if (f.endRequest === 'suspend') return { reason: 'suspended', detail: 'suspended to disk' };
  if (f.panicSeen) return { reason: 'panic', detail: 'guest kernel panic' };
  if (f.guestPanicked) return { reason: 'panic', detail: 'guest panic' };
  if (f.endRequest === 'stop-forced') return { reason: 'stopped', detail: 'guest ignored the power-off request and was killed' };
  if (f.shutdownReason === 'guest-shutdown') {
    return f.endRequest === 'stop'
      ? { reason: 'stopped', detail: 'guest powered off on request' }
      : { reason: 'poweroff', detail: 'guest powered off' };
  }
  if (f.shutdownReason === 'guest-reset') return { reason: 'reboot', detail: 'guest rebooted' };
  if (f.shutdownReason === 'guest-panic') return { reason: 'panic', detail: 'guest panic' };
  if (f.shutdownReason?.startsWith('host-')) return { reason: 'stopped', detail: `stopped by the host (${f.shutdownReason})` };
  if (signal) return { reason: 'crashed', detail: `qemu killed by ${signal}` };
  const tail = f.logTail();
  if (f.adopted && code === null) {
    return { reason: 'crashed', detail: `qemu ended without a shutdown (exit status unknown: an earlier gateway process started it)${tail ? `: ${tail}` : ''}` };
  }
  return { reason: 'crashed', detail: `qemu exited with code ${code}${tail ? `: ${tail}` : ''}` };
}
