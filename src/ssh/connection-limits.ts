import type { Socket } from 'node:net';
import { isIPv6 } from 'node:net';
import { LimitLog } from './limit-log.js';

/**
 * The limits on a connection before it authenticates, after OpenSSH's
 * LoginGraceTime, MaxStartups, MaxAuthTries and PerSourcePenalties. They
 * work on the TCP socket, before ssh2 spends a key exchange on it, and on
 * the authentication attempts ssh2 reports.
 */

/** OpenSSH's MaxStartups start:rate:full. */
export interface MaxStartups {
  /** Unauthenticated connections allowed before random early drop begins. */
  start: number;
  /** Percent chance of a drop at `start`, rising linearly to 100 at `full`. */
  rate: number;
  /** At this many unauthenticated connections every new one is dropped. */
  full: number;
}

export interface PreauthLimits {
  /** Seconds a connection has to authenticate; 0 = no limit. */
  loginGraceTime: number;
  maxStartups: MaxStartups;
  /** Failed authentication attempts allowed on one connection. */
  maxAuthTries: number;
  /** Failed authentications a source may make per `authFailureWindow` seconds (a token bucket). */
  maxAuthFailures: number;
  authFailureWindow: number;
}

/** Parse `start:rate:full` or a single `full` (no early drop), as sshd_config writes MaxStartups. */
export function parseMaxStartups(text: string): MaxStartups | { error: string } {
  const m = /^\s*(\d+)(?::(\d+):(\d+))?\s*$/.exec(text);
  if (!m) return { error: 'must be N or START:RATE:FULL, e.g. 10:30:100' };
  if (m[2] === undefined) {
    const n = Number(m[1]);
    return n >= 1 ? { start: n, rate: 100, full: n } : { error: 'must be at least 1' };
  }
  const [start, rate, full] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (start < 1 || full < start) return { error: 'needs 1 <= START <= FULL' };
  if (rate > 100) return { error: 'RATE is a percentage, 0 to 100' };
  return { start, rate, full };
}

/**
 * The address whose failures are counted together: an IPv4 address, or the
 * /64 of an IPv6 one (a single host usually holds a whole /64, as OpenSSH
 * assumes too).
 */
export function sourceKey(address: string | undefined): string {
  if (!address) return 'unknown';
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (v4) return v4[1]!;
  if (!isIPv6(address)) return address;
  const [head = '', tail = ''] = address.split('::');
  const left = head ? head.split(':') : [];
  const right = address.includes('::') && tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}

/** Token bucket per source: `capacity` failures, refilled at capacity per window. */
export class FailureBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly perMs: number;

  constructor(
    private readonly capacity: number,
    windowSec: number,
    private readonly now: () => number = Date.now,
  ) {
    this.perMs = capacity / (windowSec * 1000);
  }

  private tokens(source: string): number {
    const b = this.buckets.get(source);
    if (!b) return this.capacity;
    const t = this.now();
    b.tokens = Math.min(this.capacity, b.tokens + (t - b.at) * this.perMs);
    b.at = t;
    if (b.tokens >= this.capacity) this.buckets.delete(source);
    return b.tokens;
  }

  /** The source has no failure left to spend: refuse it until the bucket refills. */
  blocked(source: string): boolean {
    return this.tokens(source) < 1;
  }

  /** Spend one failure. */
  fail(source: string): void {
    const tokens = this.tokens(source) - 1;
    // Bound the table: under a flood from many sources, forget the ones closest to recovered.
    if (!this.buckets.has(source) && this.buckets.size >= 100_000) this.sweep();
    this.buckets.set(source, { tokens: Math.max(0, tokens), at: this.now() });
  }

  private sweep(): void {
    for (const source of [...this.buckets.keys()]) this.tokens(source);
    if (this.buckets.size >= 100_000) this.buckets.delete(this.buckets.keys().next().value!);
  }
}

interface Pending {
  socket: Socket;
  source: string;
  failures: number;
  timer?: NodeJS.Timeout;
  /** Already told to close: requests still in flight on it are refused without another log line. */
  refused?: boolean;
}

/**
 * Counts the connections that have not authenticated yet and applies the
 * limits to them. Connections are known by `ip:port`, which ssh2 also
 * reports, so no private ssh2 field is needed.
 */
export class PreauthGate {
  private readonly pending = new Map<string, Pending>();
  private readonly failures: FailureBuckets;

  constructor(
    private readonly limits: PreauthLimits,
    private readonly log: LimitLog,
    private readonly random: () => number = Math.random,
    now: () => number = Date.now,
  ) {
    this.failures = new FailureBuckets(limits.maxAuthFailures, limits.authFailureWindow, now);
  }

  /** Unauthenticated connections right now. */
  get unauthenticated(): number {
    return this.pending.size;
  }

  /** A new TCP connection. Returns false if it was refused (and the socket destroyed). */
  admit(socket: Socket): boolean {
    const source = sourceKey(socket.remoteAddress);
    const key = `${socket.remoteAddress}:${socket.remotePort}`;
    const fields = { port: socket.remotePort };
    if (this.failures.blocked(source)) {
      this.log.hit('auth-rate', source, fields, 'connection refused: too many failed authentications from this source', source);
      return refuse(socket, 'too many failed authentications from your address; try again later');
    }
    const { start, rate, full } = this.limits.maxStartups;
    const n = this.pending.size;
    if (n >= start) {
      const p = n >= full ? 1 : (rate + ((100 - rate) * (n - start)) / (full - start)) / 100;
      if (this.random() < p) {
        this.log.hit('max-startups', source, { ...fields, unauthenticated: n, maxStartups: `${start}:${rate}:${full}` }, 'connection dropped: too many unauthenticated connections', source);
        return refuse(socket, 'too many unauthenticated connections; try again later');
      }
    }
    const entry: Pending = { socket, source, failures: 0 };
    if (this.limits.loginGraceTime > 0) {
      entry.timer = setTimeout(() => {
        this.log.hit('login-grace', source, { ...fields, seconds: this.limits.loginGraceTime }, 'connection closed: did not authenticate within the login grace time');
        socket.destroy();
      }, this.limits.loginGraceTime * 1000);
      entry.timer.unref();
    }
    this.pending.set(key, entry);
    socket.once('close', () => this.forget(key));
    return true;
  }

  /** The connection from ip:port authenticated: it no longer counts, and its grace timer stops. */
  authenticated(ip: string | undefined, port: number | undefined): void {
    this.forget(`${ip}:${port}`);
  }

  /**
   * A failed authentication attempt on ip:port (a "none" probe is not one).
   * Returns false when the connection must be closed: its MaxAuthTries is
   * spent or its source is out of failures.
   */
  authFailed(ip: string | undefined, port: number | undefined): boolean {
    const entry = this.pending.get(`${ip}:${port}`);
    const source = entry?.source ?? sourceKey(ip);
    this.failures.fail(source);
    if (!entry) return true;
    if (entry.refused) return false;
    entry.failures++;
    if (entry.failures >= this.limits.maxAuthTries) {
      entry.refused = true;
      this.log.hit('auth-tries', source, { port, attempts: entry.failures }, 'connection closed: too many authentication attempts');
      return false;
    }
    if (this.failures.blocked(source)) {
      entry.refused = true;
      this.log.hit('auth-rate', source, { port }, 'connection closed: too many failed authentications from this source', source);
      return false;
    }
    return true;
  }

  private forget(key: string): void {
    const entry = this.pending.get(key);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.pending.delete(key);
  }
}

/**
 * Refuse before the SSH version exchange. The line is what sshd prints in
 * the same place; OpenSSH shows it as "kex_exchange_identification: ...".
 */
function refuse(socket: Socket, why: string): false {
  socket.on('error', () => {});
  socket.end(`${why}\r\n`);
  setTimeout(() => socket.destroy(), 1000).unref();
  return false;
}
