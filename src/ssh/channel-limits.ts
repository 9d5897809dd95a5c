import type { LimitLog, LimitName } from './limit-log.js';

/**
 * Caps on what one authenticated connection, and one user across all their
 * connections, may hold open: OpenSSH's MaxSessions, plus a cap on all
 * channels (port forwards too) and one per user. Each open channel costs
 * the gateway a relay and up to a window of buffered data, so these caps are
 * also what bounds the memory a client can make the gateway hold.
 */
export interface ChannelLimits {
  /** Session channels open at once on one connection. */
  maxSessions: number;
  /** Channels of any kind (sessions, -L forwards) open at once on one connection. */
  maxChannels: number;
  /** Session channels open at once for one user (VM name), over all connections. */
  maxUserSessions: number;
}

export type ChannelDecision =
  | { ok: true; release: () => void }
  /** Refuse the channel open, with `reason` as its description (as sshd past MaxSessions). */
  | { ok: false; reason: string };

/** Session counts per user, shared by every connection of the server. */
export class UserSessions {
  private readonly open = new Map<string, number>();

  count(user: string): number {
    return this.open.get(user) ?? 0;
  }

  add(user: string): () => void {
    this.open.set(user, this.count(user) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = this.count(user) - 1;
      if (n <= 0) this.open.delete(user);
      else this.open.set(user, n);
    };
  }
}

/** The channels of one connection. */
export class ConnectionChannels {
  private sessions = 0;
  private channels = 0;
  private readonly logged = new Set<LimitName>();
  private readonly releases = new Set<() => void>();

  constructor(
    private readonly limits: ChannelLimits,
    private readonly users: UserSessions,
    private readonly log: LimitLog,
    private readonly source: string,
    private readonly port: number | undefined,
    /** The VM name the connection logged in as; undefined when it is only being told why it gets nothing. */
    private readonly user: string | undefined,
  ) {}

  /** A session channel is being opened. */
  openSession(): ChannelDecision {
    const refusal = this.sessionRefusal();
    if (refusal) {
      this.hit(refusal.limit, refusal.reason, refusal.max);
      return { ok: false, reason: refusal.reason };
    }
    this.sessions++;
    this.channels++;
    const releaseUser = this.user === undefined ? undefined : this.users.add(this.user);
    const release = once(() => {
      this.releases.delete(release);
      this.sessions--;
      this.channels--;
      releaseUser?.();
    });
    this.releases.add(release);
    return { ok: true, release };
  }

  /** The connection is gone: whatever ssh2 did or did not report, its sessions no longer count for its user. */
  closeAll(): void {
    for (const release of [...this.releases]) release();
  }

  /** A non-session channel (direct-tcpip) is being opened; undefined if refused. */
  openChannel(): (() => void) | undefined {
    if (this.channels >= this.limits.maxChannels) {
      this.hit('channels-per-connection', `too many channels open on this connection (at most ${this.limits.maxChannels})`, this.limits.maxChannels);
      return undefined;
    }
    this.channels++;
    return once(() => this.channels--);
  }

  private sessionRefusal(): { limit: LimitName; reason: string; max: number } | undefined {
    const { maxSessions, maxChannels, maxUserSessions } = this.limits;
    if (this.sessions >= maxSessions) {
      return { limit: 'sessions-per-connection', reason: `too many sessions open on this connection (at most ${maxSessions}); close one or open another connection`, max: maxSessions };
    }
    if (this.channels >= maxChannels) {
      return { limit: 'channels-per-connection', reason: `too many channels open on this connection (at most ${maxChannels})`, max: maxChannels };
    }
    if (this.user !== undefined && this.users.count(this.user) >= maxUserSessions) {
      return { limit: 'sessions-per-user', reason: `${this.user} has too many sessions open (at most ${maxUserSessions}); close one first`, max: maxUserSessions };
    }
    return undefined;
  }

  /** Logged once per connection and limit: a client looping on a refused open makes one line. */
  private hit(limit: LimitName, reason: string, max: number): void {
    if (this.logged.has(limit)) return;
    this.logged.add(limit);
    this.log.hit(limit, this.source, { port: this.port, user: this.user, max }, reason);
  }
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}
