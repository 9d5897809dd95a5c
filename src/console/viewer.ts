/**
 * One reader of a console channel (an SSH console session, a watcher).
 *
 * A viewer holds no bytes of its own: its "queue" is the stretch of the
 * channel's ring between its cursor (an absolute offset) and the ring's end.
 * Fan-out therefore costs no copies and no memory per viewer, and replay
 * followed by live output is one continuous read of one byte sequence, so
 * there can be no gap or duplicate at the seam. A viewer whose sink stops
 * taking bytes just stops advancing; when it lags too far it is skipped
 * forward to live (with a note) or disconnected, and the guest and the other
 * viewers never wait for it.
 */
import { errorMessage } from '../util/errors.js';
import { LineTracker, formatNotice } from './marker.js';
import type { RingBuffer } from './ring-buffer.js';

export type OverflowPolicy = 'skip' | 'disconnect';

export const VIEWER_DEFAULTS = {
  maxQueueBytes: 256 * 1024,
  /** Largest single write handed to a sink while catching up. */
  chunkBytes: 64 * 1024,
} as const;

export interface ViewerOptions {
  /**
   * Deliver bytes. Return false when the sink is full (it has still taken
   * these bytes): nothing more is written until viewer.drain() is called,
   * e.g. from an ssh2 channel's 'drain' event. May throw: that ends only this viewer.
   */
  write(data: Buffer): boolean;
  /** The hub ended this viewer (overflow with 'disconnect', a throwing sink, the channel closed). Not called for viewer.close(). */
  onClose?(reason: string): void;
  /** Live bytes a viewer may fall behind by before `overflow` applies; capped at the ring's capacity. */
  maxQueueBytes?: number;
  /** 'skip' (default): jump to live after a "[sshvisor: N bytes skipped]" line. 'disconnect': end the viewer. */
  overflow?: OverflowPolicy;
  /** Start with the last N lines of history, then continue live. Default 0: live only. */
  replayLines?: number;
  /** Keystrokes from a read-only viewer are refused. */
  readOnly?: boolean;
}

/** What a viewer needs from its channel. */
export interface ViewerHost {
  readonly ring: RingBuffer;
  input(data: Buffer | string): boolean;
  /** `byHost`: ended by the hub's policy, not by its owner. */
  removeViewer(viewer: Viewer, byHost: boolean): void;
}

export class Viewer {
  readonly readOnly: boolean;
  private readonly maxQueue: number;
  private readonly policy: OverflowPolicy;
  private cursor: number;
  /** Lag before this offset is replay, which the queue bound does not count. */
  private replayEnd: number;
  private paused = false;
  private pumping = false;
  private skippedUnnoted = 0;
  private skippedTotal = 0;
  private delivered = 0;
  private reason: string | undefined;
  private readonly lines = new LineTracker();

  constructor(
    private readonly host: ViewerHost,
    private readonly opts: ViewerOptions,
  ) {
    const { ring } = host;
    this.readOnly = opts.readOnly ?? false;
    this.policy = opts.overflow ?? 'skip';
    this.maxQueue = Math.max(1, Math.min(opts.maxQueueBytes ?? VIEWER_DEFAULTS.maxQueueBytes, ring.capacity));
    const replay = opts.replayLines ?? 0;
    this.cursor = replay > 0 ? ring.lastLinesOffset(replay) : ring.end;
    this.replayEnd = ring.end;
  }

  get closed(): boolean {
    return this.reason !== undefined;
  }

  /** Why the viewer ended, once it has. */
  get closeReason(): string | undefined {
    return this.reason;
  }

  /** Absolute ring offset of the next byte this viewer will get. */
  get offset(): number {
    return this.cursor;
  }

  /** Bytes written to the ring that this viewer has not been given yet. */
  get lagBytes(): number {
    return this.host.ring.end - this.cursor;
  }

  get bytesDelivered(): number {
    return this.delivered;
  }

  get bytesSkipped(): number {
    return this.skippedTotal;
  }

  /** The sink can take more bytes again. */
  drain(): void {
    this.paused = false;
    this.pump();
  }

  /** Keystrokes for the guest; false if refused (read-only, closed, no VM attached). */
  input(data: Buffer | string): boolean {
    if (this.closed || this.readOnly) return false;
    return this.host.input(data);
  }

  /** Stop viewing (the owner's own choice: onClose is not called). */
  close(reason = 'closed'): void {
    this.end(reason, false);
  }

  /** Called by the channel right after `data` was appended to the ring at offset `from`. */
  notify(from: number, data: Buffer): void {
    // A write in progress (the sink called back into the channel) will pick these bytes up itself.
    if (this.closed || this.pumping) return;
    if (!this.paused && this.skippedUnnoted === 0 && this.cursor === from) {
      // Caught up: hand the guest's buffer straight through, without a copy.
      this.pumping = true;
      try {
        this.cursor += data.length;
        this.deliver(data);
      } finally {
        this.pumping = false;
      }
    } else {
      this.checkOverflow();
    }
    this.pump();
  }

  /** Called by the channel when it shuts down. */
  hostClosed(reason: string): void {
    this.end(reason, true);
  }

  private checkOverflow(): void {
    const { ring } = this.host;
    const live = ring.end - Math.max(this.cursor, this.replayEnd);
    if (this.cursor >= ring.start && live <= this.maxQueue) return;
    const lag = ring.end - this.cursor;
    if (this.policy === 'disconnect') {
      this.end(`console viewer fell ${lag} bytes behind (limit ${this.maxQueue})`, true);
      return;
    }
    this.skippedUnnoted += lag;
    this.skippedTotal += lag;
    this.cursor = ring.end;
    this.replayEnd = ring.end;
  }

  /** Write from the cursor until caught up or the sink pushes back. Not reentrant: a nested call leaves the work to this loop. */
  private pump(): void {
    if (this.pumping || this.closed) return;
    this.pumping = true;
    try {
      while (!this.paused && !this.closed) {
        if (this.skippedUnnoted > 0) {
          const note = this.lines.lead() + formatNotice(`${this.skippedUnnoted} bytes skipped`);
          this.skippedUnnoted = 0;
          this.deliver(Buffer.from(note), false);
          continue;
        }
        const { ring } = this.host;
        if (this.cursor < ring.start) {
          this.checkOverflow();
          continue;
        }
        if (this.cursor >= ring.end) break;
        const { data, from } = ring.read(this.cursor, VIEWER_DEFAULTS.chunkBytes);
        this.cursor = from + data.length;
        this.deliver(data);
      }
    } finally {
      this.pumping = false;
    }
  }

  private deliver(data: Buffer, counts = true): void {
    if (counts) this.delivered += data.length;
    this.lines.update(data);
    let ok: boolean;
    try {
      ok = this.opts.write(data);
    } catch (err) {
      this.end(`console viewer write failed: ${errorMessage(err)}`, true);
      return;
    }
    if (!ok) this.paused = true;
  }

  private end(reason: string, tell: boolean): void {
    if (this.closed) return;
    this.reason = reason;
    this.host.removeViewer(this, tell);
    if (!tell) return;
    try {
      this.opts.onClose?.(reason);
    } catch {
      // the viewer is gone either way
    }
  }
}
