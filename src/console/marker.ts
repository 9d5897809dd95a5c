/**
 * The lines sshvisor itself puts into a console stream. They are written into
 * the same bytes as the guest's output (ring, log, viewers), so each one must
 * be a single line of its own: text is flattened, and a marker that would
 * land in the middle of a guest line is moved to a fresh one.
 */

const NL = 0x0a;

/** 2026-11-22T10:00:00Z: second precision is plenty next to a boot log, and shorter. */
export function isoSeconds(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

/** `[sshvisor 2026-11-22T10:00:00Z] VM exited: guest panic\r\n` (no leading newline; see LineTracker). */
export function formatMarker(text: string, date: Date = new Date()): string {
  return `[sshvisor ${isoSeconds(date)}] ${oneLine(text)}\r\n`;
}

/** `[sshvisor: 1234 bytes skipped]\r\n`: an untimed note about the stream itself. */
export function formatNotice(text: string): string {
  return `[sshvisor: ${oneLine(text)}]\r\n`;
}

/**
 * Remembers whether the last byte of a stream was a newline, so a marker can
 * start on a fresh line without touching guest bytes: `tracker.lead()` is
 * "" at a line start and "\r\n" otherwise (\r\n because the reader is a
 * terminal in raw mode).
 */
export class LineTracker {
  private last: number | undefined;

  constructor(lastByte?: number) {
    this.last = lastByte;
  }

  /** True before any byte and right after a \n. */
  get atLineStart(): boolean {
    return this.last === undefined || this.last === NL;
  }

  update(buf: Buffer | string): void {
    if (typeof buf === 'string') {
      if (buf.length > 0) this.last = buf.charCodeAt(buf.length - 1) === NL ? NL : 0;
    } else if (buf.length > 0) {
      this.last = buf[buf.length - 1];
    }
  }

  lead(): string {
    return this.atLineStart ? '' : '\r\n';
  }
}

/** Control characters (a \n from an exit detail, an escape sequence) would break the one-line rule. */
function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f]+/g, ' ').trim();
}
