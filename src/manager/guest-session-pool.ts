import type { Logger } from '../util/log.js';
import type { GuestClient } from './guest-connection.js';

/**
 * Guest SSH connections for user sessions, one session per connection at a
 * time.
 *
 * Why not multiplex every session over the gateway's one connection: Debian
 * 12's dropbear (2022.83) aborts the whole connection ("Failed assertion
 * (common-channel.c:705): `!channel->sent_close'", mkj/dropbear#321, fixed in
 * 2024.86) when a session channel is checked for closing before its command
 * started, which happens when another session's child exits in that window.
 * With sessions multiplexed, one user's `ssh true` ending could cut every other
 * session in the same VM. A dropbear connection is its own process, so with
 * one session per connection the race has no other session to come from.
 *
 * Connections are dialled ahead (`spares`) so a login does not wait for a
 * handshake with an emulated CPU, and reused after their session ends.
 * At most `maxDialing` handshakes run at once: dropbear drops a source
 * (all of ours come from 10.0.2.2) with more than 5 unauthenticated
 * connections.
 */
export interface GuestSessionPoolOptions {
  dial: () => Promise<GuestClient>;
  logger: Logger;
  /** Idle connections kept ready. */
  spares?: number;
  maxDialing?: number;
}

/** A guest connection lent to one session; `release` returns it (or ends it when `broken`). */
export interface LentConnection {
  client: GuestClient;
  release(broken?: boolean): void;
}

export class GuestSessionPool {
  private readonly idle: GuestClient[] = [];
  private readonly waiters: Array<{ resolve: (c: GuestClient) => void; reject: (e: Error) => void }> = [];
  private readonly lent = new Set<GuestClient>();
  private dialing = 0;
  private closed = false;
  /** The gateway's main connection: lent to one session when no spare is ready (see primary()). */
  private main?: GuestClient;
  private mainLent = false;
  /** No spares while paused (a suspend in progress); takers are still served. */
  private paused = false;
  /** After failed dials, spares wait until then (waiters do not): an unreachable guest is not hammered. */
  private sparesAfter = 0;
  private failures = 0;
  private retryTimer?: NodeJS.Timeout;
  private readonly spares: number;
  private readonly maxDialing: number;

  constructor(private readonly opts: GuestSessionPoolOptions) {
    this.spares = opts.spares ?? 2;
    this.maxDialing = opts.maxDialing ?? 3;
  }

  /** Start dialling the spares. */
  warm(): void {
    this.fill();
  }

  /**
   * The gateway's main connection (port forwards, its own commands), lent to
   * a session when no spare is ready: the first login after a boot or resume
   * then does not wait for a handshake. Forwards are not sessions, so it
   * still carries one session at most.
   */
  primary(client: GuestClient | undefined): void {
    this.main = client;
    this.mainLent = false;
  }

  /** A connection with no other session on it. */
  async take(): Promise<LentConnection> {
    if (this.closed) throw new Error('the VM is shutting down');
    const client = this.idle.shift() ?? this.lendMain() ?? (await new Promise<GuestClient>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.fill();
    }));
    this.lent.add(client);
    this.fill();
    let returned = false;
    return {
      client,
      release: (broken = false) => {
        if (returned) return;
        returned = true;
        this.lent.delete(client);
        this.giveBack(client, broken);
      },
    };
  }

  /**
   * End the idle connections and keep no spares until unpause(): before a
   * snapshot, so the guest sees them go while it still runs (restored, their
   * dropbear processes would wait forever on connections that no longer exist).
   */
  pause(): void {
    this.paused = true;
    for (const c of this.idle.splice(0)) c.end();
  }

  unpause(): void {
    this.paused = false;
    this.fill();
  }

  /** End every connection, idle and lent; waiting takers are refused. */
  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    for (const w of this.waiters.splice(0)) w.reject(new Error('the VM is shutting down'));
    for (const c of this.idle.splice(0)) c.end();
    for (const c of this.lent) c.end();
    this.lent.clear();
  }

  get stats(): { idle: number; lent: number; dialing: number; waiting: number } {
    return { idle: this.idle.length, lent: this.lent.size, dialing: this.dialing, waiting: this.waiters.length };
  }

  private lendMain(): GuestClient | undefined {
    if (!this.main || this.mainLent || !isOpen(this.main)) return undefined;
    this.mainLent = true;
    return this.main;
  }

  private giveBack(client: GuestClient, broken: boolean): void {
    if (client === this.main) {
      // Not the pool's to end unless broken (hung up): the VM manager owns it and reconnects when it goes.
      this.mainLent = false;
      if (broken) return void client.end();
      const waiter = !this.closed && isOpen(client) ? this.waiters.shift() : undefined;
      if (waiter) {
        this.mainLent = true;
        waiter.resolve(client);
      }
      return;
    }
    if (this.closed || broken || !isOpen(client)) {
      client.end();
      this.fill();
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter) return waiter.resolve(client);
    if (this.paused || this.idle.length >= this.spares) return void client.end();
    this.park(client);
  }

  private park(client: GuestClient): void {
    this.idle.push(client);
    // A parked connection that dies (guest rebooted, keepalive failed) leaves the pool.
    client.once('close', () => {
      const i = this.idle.indexOf(client);
      if (i >= 0) this.idle.splice(i, 1);
      this.fill();
    });
  }

  /** Dial until waiters are served and `spares` are idle, `maxDialing` at a time. */
  private fill(): void {
    const spares = !this.paused && Date.now() >= this.sparesAfter ? this.spares : 0;
    while (!this.closed && this.dialing < this.maxDialing && this.idle.length + this.dialing < spares + this.waiters.length) {
      this.dialing++;
      this.opts
        .dial()
        .then(
          (client) => {
            this.failures = 0;
            if (this.closed) return void client.end();
            const waiter = this.waiters.shift();
            if (waiter) waiter.resolve(client);
            else if (this.paused || this.idle.length >= this.spares) client.end(); // not wanted (any more)
            else this.park(client);
          },
          (err: Error) => {
            if (this.closed) return;
            this.opts.logger.warn({ event: 'guest-dial-failed', err: err.message }, 'could not open a guest connection');
            // A waiter gets the error rather than a hang; spares are tried again later, backing off.
            this.waiters.shift()?.reject(err);
            const delay = Math.min(30_000, 500 * 2 ** this.failures++);
            this.sparesAfter = Date.now() + delay;
            clearTimeout(this.retryTimer);
            this.retryTimer = setTimeout(() => this.fill(), delay).unref();
          },
        )
        .finally(() => {
          this.dialing--;
          this.fill();
        });
    }
  }
}

/** Whether ssh2 still considers the connection usable (no public flag; the socket tells). */
function isOpen(client: GuestClient): boolean {
  const sock = (client as unknown as { _sock?: { writable?: boolean; destroyed?: boolean } })._sock;
  return !!sock && sock.writable === true && sock.destroyed !== true;
}
