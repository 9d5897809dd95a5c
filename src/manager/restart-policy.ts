import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { ExitInfo } from '../vm/driver.js';

/**
 * --restart: what happens when a VM ends against its will.
 *
 *   never       it stays crashed until its owner's next login (the default)
 *   on-failure  after a guest panic or a QEMU crash it is started again from
 *               its disk, after a backoff of 1 s, 2 s, 4 s ... up to 60 s;
 *               more than --restart-max restarts within --restart-window
 *               seconds is a crash loop: the VM then stays crashed and its
 *               status says so, until an operator or its owner starts it.
 *
 * A power-off, an operator's stop, a suspend or a kill by sshvisor is not a
 * failure. A hung VM is not restarted: it is reported (health-monitor.ts).
 */

export const RESTART_POLICIES = ['never', 'on-failure'] as const;
export type RestartPolicyName = (typeof RESTART_POLICIES)[number];

/** Exit reasons that count as a failure. */
const FAILURES = new Set<ExitInfo['reason']>(['panic', 'crashed']);
const MAX_BACKOFF_SEC = 60;

export interface RestartPolicyOptions {
  policy: RestartPolicyName;
  /** Restarts allowed within windowSec; one more failure gives up. */
  maxRestarts: number;
  windowSec: number;
  logger: Logger;
  /** Start `name` again (from its disk). */
  restart: (name: string) => Promise<void>;
  /** A line for the VM's console log. */
  note?: (name: string, text: string) => void;
  now?: () => number;
}

/** What status shows about a name's restarts. */
export interface RestartInfo {
  policy: RestartPolicyName;
  /** Restarts within the current window. */
  restarts: number;
  /** A restart is due at this time (ms since the epoch). */
  pendingAt?: number;
  /** Set once the policy gave up: "crash loop: restarted 5 times in 10 min; giving up". */
  gaveUp?: string;
}

interface History {
  /** When each restart in the window was started. */
  times: number[];
  timer?: NodeJS.Timeout;
  pendingAt?: number;
  gaveUp?: string;
}

/** The backoff before restart number `n` (0-based): 1, 2, 4 ... seconds, at most a minute. */
export function backoffSec(n: number): number {
  return Math.min(MAX_BACKOFF_SEC, 2 ** n);
}

export function describeWindow(sec: number): string {
  return sec % 60 === 0 ? `${sec / 60} min` : `${sec} s`;
}

export class RestartPolicy {
  private readonly history = new Map<string, History>();
  private readonly now: () => number;
  private closed = false;

  constructor(private readonly opts: RestartPolicyOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** A VM ended: restart it later if the policy says so. */
  exited(name: string, info: ExitInfo): void {
    if (this.closed || this.opts.policy === 'never' || !FAILURES.has(info.reason)) return;
    const h = this.history.get(name) ?? { times: [] };
    this.history.set(name, h);
    if (h.timer) return;
    const now = this.now();
    h.times = h.times.filter((t) => now - t < this.opts.windowSec * 1000);
    if (h.times.length >= this.opts.maxRestarts) {
      h.gaveUp = `crash loop: restarted ${h.times.length} times in ${describeWindow(this.opts.windowSec)}; giving up`;
      this.opts.logger.error({ vm: name, event: 'vm-crash-loop', restarts: h.times.length, windowSec: this.opts.windowSec }, `VM ${name}: ${h.gaveUp}`);
      this.opts.note?.(name, h.gaveUp);
      return;
    }
    const delaySec = backoffSec(h.times.length);
    const attempt = h.times.length + 1;
    h.gaveUp = undefined;
    h.pendingAt = now + delaySec * 1000;
    this.opts.logger.warn({ vm: name, event: 'vm-restart-scheduled', reason: info.reason, attempt, delaySec }, `VM ${name} failed (${info.detail}); restarting in ${delaySec} s`);
    h.timer = setTimeout(() => {
      h.timer = undefined;
      h.pendingAt = undefined;
      if (this.closed) return;
      h.times.push(this.now());
      this.opts.note?.(name, `restarting after a failure (${info.detail}): restart ${attempt} of at most ${this.opts.maxRestarts} in ${describeWindow(this.opts.windowSec)}`);
      this.opts.logger.info({ vm: name, event: 'vm-restart', attempt }, `restarting VM ${name}`);
      this.opts.restart(name).catch((err) => {
        this.opts.logger.error({ vm: name, event: 'vm-restart-failed', err: errorMessage(err) }, `restarting VM ${name} failed`);
      });
    }, delaySec * 1000);
    h.timer.unref();
  }

  /** An operator or owner acted on `name` (stop, remove, a login that starts it): no restart is pending any more. */
  cancel(name: string, opts: { forget?: boolean } = {}): void {
    const h = this.history.get(name);
    if (!h) return;
    if (h.timer) clearTimeout(h.timer);
    h.timer = undefined;
    h.pendingAt = undefined;
    h.gaveUp = undefined;
    if (opts.forget) this.history.delete(name);
  }

  info(name: string): RestartInfo | undefined {
    const h = this.history.get(name);
    if (this.opts.policy === 'never' && !h) return undefined;
    const now = this.now();
    const restarts = h ? h.times.filter((t) => now - t < this.opts.windowSec * 1000).length : 0;
    return { policy: this.opts.policy, restarts, pendingAt: h?.pendingAt, gaveUp: h?.gaveUp };
  }

  close(): void {
    this.closed = true;
    for (const h of this.history.values()) if (h.timer) clearTimeout(h.timer);
  }
}
