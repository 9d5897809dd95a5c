import type { Logger } from '../util/log.js';

/** The limits the front door enforces; the `limit` field of every `event: "limit"` log line. */
export type LimitName =
  | 'max-startups'
  | 'auth-rate'
  | 'login-grace'
  | 'auth-tries'
  | 'channels-per-connection'
  | 'sessions-per-connection'
  | 'sessions-per-user';

/**
 * One `event: "limit"` line per hit. A hit that can repeat as fast as an
 * attacker can open sockets (a dropped connection, a source in its penalty)
 * is keyed: the first is logged, later ones with the same key within
 * `quietMs` are only counted, and the next line logged for that key carries
 * `suppressed: N`. So the log says every hit happened without an attacker
 * choosing how fast it grows.
 */
export class LimitLog {
  private readonly recent = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly log: Logger,
    private readonly quietMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  hit(limit: LimitName, source: string, fields: Record<string, unknown>, message: string, key?: string): void {
    if (key !== undefined) {
      const k = `${limit} ${key}`;
      const t = this.now();
      const seen = this.recent.get(k);
      if (seen && t - seen.at < this.quietMs) {
        seen.suppressed++;
        return;
      }
      if (this.recent.size >= 10_000) this.prune(t);
      this.recent.set(k, { at: t, suppressed: 0 });
      if (seen?.suppressed) fields = { ...fields, suppressed: seen.suppressed };
    }
    this.log.warn({ event: 'limit', limit, source, ...fields }, message);
  }

  private prune(t: number): void {
    for (const [k, v] of this.recent) if (t - v.at >= this.quietMs) this.recent.delete(k);
    // Still full: a flood from very many sources; forget the oldest rather than grow.
    if (this.recent.size >= 10_000) this.recent.clear();
  }
}
