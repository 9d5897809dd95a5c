import type { Logger } from '../util/log.js';
import type { Vm } from '../vm/driver.js';

/** What the monitor asks of a guest: the agent's `ping` (docs/guest-protocol.md); rejects when unanswered. */
export interface GuestPinger {
  ping(timeoutMs: number): Promise<void>;
}

/**
 * Tells a hung guest from a running one. Every few seconds, for each running
 * VM, two cheap questions:
 *
 *   - QEMU, over QMP: `query-status`. No answer means QEMU itself is stuck;
 *     a run state such as `io-error` means QEMU paused the guest (a disk
 *     write failed, e.g. a full data dir).
 *   - the guest, over the gateway's connection to its agent: `ping`. No
 *     process is started in the guest, but the answer needs the guest's
 *     kernel, its virtio-serial port and the agent to be scheduled.
 *
 * A VM whose QEMU runs but which has not answered for --hung-timeout seconds
 * is *hung*; when it answers again it is running again. Console silence is
 * reported alongside but decides nothing: an idle guest prints nothing, and a
 * hung kernel may still print (stall warnings). Console-only images have no
 * agent: for them only QEMU's answer counts. A hung VM is reported
 * (status, log, a console marker), not killed: a guest that is merely very
 * busy comes back, and its owner's work with it.
 */

export interface HungInfo {
  /** When the VM was last known to answer (ms since the epoch). */
  since: number;
  /** One line: what does not answer. */
  reason: string;
}

/** What the monitor needs of a VM the manager has in hand. */
export interface WatchedVm {
  name: string;
  vm?: Vm;
  /** The gateway's connection to the guest's agent, when there is one. */
  agent?: GuestPinger;
}

export interface HealthMonitorOptions {
  /** Seconds without an answer before a VM is hung; 0 turns the monitor off. */
  hungTimeoutSec: number;
  logger: Logger;
  /** The VMs to watch, asked on every round. */
  vms: () => Iterable<WatchedVm>;
  /** A VM became hung (info) or answers again (undefined). */
  onChange?: (name: string, info: HungInfo | undefined) => void;
  /**
   * Whether the data dir has room again. QEMU pauses a guest whose disk write
   * failed for want of space (run state io-error) and retries the write on
   * `cont`: with room again, the monitor sends it, and the guest goes on.
   */
  roomAgain?: () => boolean;
  now?: () => number;
}

/** How long one ping may take: longer than any timeout, so a late answer still counts. */
const PING_TIMEOUT_MS = 10 * 60_000;

interface Watch {
  vm: Vm;
  qmpAnsweredAt: number;
  guestAnsweredAt: number;
  consoleAt: number | undefined;
  qmpProbe?: Promise<void>;
  guestProbe?: GuestPinger;
  /** QEMU's run state at its last answer. */
  runState?: string;
  hung?: HungInfo;
  offConsole: () => void;
}

export class HealthMonitor {
  private readonly watches = new Map<string, Watch>();
  private readonly timer?: NodeJS.Timeout;
  private readonly now: () => number;

  constructor(private readonly opts: HealthMonitorOptions) {
    this.now = opts.now ?? Date.now;
    if (opts.hungTimeoutSec <= 0) return;
    // Several probes per timeout, so a hang is seen within about 1.3x the timeout.
    const everyMs = Math.min(5000, Math.max(250, (opts.hungTimeoutSec * 1000) / 4));
    this.timer = setInterval(() => this.round(), everyMs);
    this.timer.unref();
  }

  /** Whether `name` is hung now (undefined: it answers, or it is not running). */
  hung(name: string): HungInfo | undefined {
    const w = this.watches.get(name);
    return w?.vm.state === 'running' ? w.hung : undefined;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    for (const w of this.watches.values()) w.offConsole();
    this.watches.clear();
  }

  /** One round: start probes where none is outstanding, then judge every VM. Exposed for tests. */
  round(): void {
    const seen = new Set<string>();
    for (const v of this.opts.vms()) {
      if (!v.vm || v.vm.state !== 'running') continue;
      seen.add(v.name);
      let w = this.watches.get(v.name);
      if (w && w.vm !== v.vm) {
        this.forget(v.name, w);
        w = undefined;
      }
      w ??= this.watch(v.name, v.vm);
      this.probe(w, v.agent);
      this.judge(v.name, w, v.agent);
    }
    for (const [name, w] of this.watches) if (!seen.has(name)) this.forget(name, w);
  }

  private watch(name: string, vm: Vm): Watch {
    const now = this.now();
    const w: Watch = { vm, qmpAnsweredAt: now, guestAnsweredAt: now, consoleAt: undefined, offConsole: () => undefined };
    const onConsole = (): void => {
      w.consoleAt = this.now();
    };
    vm.on('console', onConsole);
    w.offConsole = () => vm.off('console', onConsole);
    this.watches.set(name, w);
    return w;
  }

  private forget(name: string, w: Watch): void {
    // Its end (exit, suspend) is reported elsewhere: a hung VM that went away did not "answer again".
    w.offConsole();
    this.watches.delete(name);
  }

  private probe(w: Watch, guest: GuestPinger | undefined): void {
    w.qmpProbe ??= w.vm
      .status()
      .then((s) => {
        // status() without QMP (it closed) reports no run state: that is no answer.
        if (s.hypervisorState === undefined) return;
        w.qmpAnsweredAt = this.now();
        w.runState = s.hypervisorState;
      })
      .catch(() => undefined)
      .finally(() => (w.qmpProbe = undefined));
    // Without a connection there is no one to ask; a connection made since is asked from now on.
    if (!guest) {
      if (!w.hung) w.guestAnsweredAt = this.now();
      return;
    }
    if (w.guestProbe === guest) return;
    w.guestProbe = guest;
    void askGuest(guest).then((answered) => {
      if (w.guestProbe === guest) w.guestProbe = undefined;
      if (answered) w.guestAnsweredAt = this.now();
    });
  }

  private judge(name: string, w: Watch, guest: GuestPinger | undefined): void {
    const now = this.now();
    const limit = this.opts.hungTimeoutSec * 1000;
    const ago = (t: number): string => `${Math.round((now - t) / 1000)} s`;
    let reason: string | undefined;
    let since = now;
    if (now - w.qmpAnsweredAt > limit) {
      reason = `QEMU has not answered on QMP for ${ago(w.qmpAnsweredAt)}`;
      since = w.qmpAnsweredAt;
    } else if (w.runState === 'io-error') {
      reason = 'QEMU paused the guest after a disk write failed (is the data dir full?)';
      since = w.hung?.since ?? now;
      if (this.opts.roomAgain?.()) {
        this.opts.logger.info({ vm: name, event: 'vm-io-retry' }, `room in the data dir again: continuing VM ${name}`);
        // Until QEMU says otherwise: one `cont` per answer, not one per round.
        w.runState = undefined;
        void w.vm.resume().catch(() => undefined);
      }
    } else if (w.runState && w.runState !== 'running') {
      // Paused on purpose (or mid-suspend): no answer is expected from the guest.
      w.guestAnsweredAt = now;
    } else if ((guest || w.hung) && now - w.guestAnsweredAt > limit) {
      const console = w.consoleAt === undefined ? 'no console output since it started' : `last console output ${ago(w.consoleAt)} ago`;
      reason = `the guest's agent has not answered for ${ago(w.guestAnsweredAt)} (${console})`;
      since = w.guestAnsweredAt;
    }
    if (reason) {
      const first = !w.hung;
      w.hung = { since, reason };
      if (first) {
        this.opts.logger.warn({ vm: name, event: 'vm-hung', reason }, `VM ${name} is hung: ${reason}`);
        this.opts.onChange?.(name, w.hung);
      }
    } else if (w.hung) {
      const hungFor = Math.round((now - w.hung.since) / 1000);
      w.hung = undefined;
      this.opts.logger.info({ vm: name, event: 'vm-answers', hungForSec: hungFor }, `VM ${name} answers again`);
      this.opts.onChange?.(name, undefined);
    }
  }
}

/** Resolves true when the guest's agent answers a ping, false if it does not (in time) or the connection is gone. */
function askGuest(guest: GuestPinger): Promise<boolean> {
  return guest.ping(PING_TIMEOUT_MS).then(
    () => true,
    () => false,
  );
}
