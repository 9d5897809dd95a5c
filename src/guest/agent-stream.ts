/**
 * One stream of the guest agent protocol (docs/guest-protocol.md, "Streams"
 * and "Flow control"): the per-stream state every kind shares
 * ({@link StreamCore}: windows both ways, EOF and CLOSE bookkeeping) and the
 * Duplex the API hands out for TCP and agent-forwarding streams
 * ({@link AgentStream}).
 */
import { Duplex, Readable } from 'node:stream';
import { FrameType, MAX_DATA_CHUNK_SENT, STREAM_WINDOW } from './agent-frames.js';

/** What a stream needs from its connection. */
export interface StreamWire {
  /** Send one frame on this connection (dropped once it has ended). */
  send(type: number, stream: number, payload?: Buffer): void;
  /** The stream is over (both CLOSEs): the connection forgets its id. */
  release(stream: number): void;
}

/** The agent broke the protocol on a stream; the connection ends with `protocol error: <message>`. */
export class ProtocolViolation extends Error {
  override name = 'ProtocolViolation';
}

/** How a {@link StreamCore} reaches the object that delivers its bytes. */
export interface StreamCoreHooks {
  /** Bytes received and not yet read by the consumer (they count against the window we granted). */
  buffered(): number;
  /** Deliver a DATA (stderr false) or STDERR payload to the consumer. */
  deliver(payload: Buffer, stderr: boolean): void;
  /** The agent sent EOF: no more DATA/STDERR. */
  peerEof(): void;
  /** No more input at all (the agent's CLOSE, or the connection ended); called once. */
  ended(): void;
  /** The stream is over (both CLOSEs, or the connection ended); called once, after ended(). */
  over(): void;
}

const halfWindow = STREAM_WINDOW / 2;
const MAX_CREDIT = 0xffff_ffff;

/**
 * Windows and lifecycle of one open stream ("Flow control"): the gateway
 * sends at most the agent's window (DATA in chunks of ≤ 32 KiB), grants the
 * agent WINDOW once at least half of its 262,144-byte window has been read by
 * the consumer, and throws {@link ProtocolViolation} when the agent exceeds
 * the window, sends after EOF, or repeats EOF.
 */
export class StreamCore {
  /** Bytes the gateway may still send. */
  sendCredit = STREAM_WINDOW;
  /** Bytes the agent may still send. */
  recvCredit = STREAM_WINDOW;
  sentEof = false;
  gotEof = false;
  sentClose = false;
  gotClose = false;
  /** Over: both CLOSEs, or the connection ended. */
  dead = false;
  private queue: Array<{ buf: Buffer; cb: () => void }> = [];
  private eofPending = false;

  constructor(
    readonly id: number,
    private readonly wire: StreamWire,
    private readonly hooks: StreamCoreHooks,
  ) {}

  /** Bytes received from the agent and not yet read by the consumer (≤ 262,144). */
  get bufferedBytes(): number {
    return this.dead ? 0 : this.hooks.buffered();
  }

  /** True while the gateway may still send DATA. */
  get writable(): boolean {
    return !this.dead && !this.sentClose && !this.gotClose && !this.sentEof && !this.eofPending;
  }

  /** Queue bytes for DATA frames; `cb` runs once they are sent (or dropped because the stream ended). */
  write(buf: Buffer, cb: () => void): void {
    if (!this.writable) return cb();
    this.queue.push({ buf, cb });
    this.pump();
  }

  /** Send EOF after the queued bytes. */
  eof(): void {
    if (!this.writable) return;
    this.eofPending = true;
    this.pump();
  }

  /** Send CLOSE (drops queued bytes); the stream is over once the agent's CLOSE comes. */
  close(): void {
    if (this.dead || this.sentClose) return;
    this.sentClose = true;
    this.dropQueue();
    this.wire.send(FrameType.CLOSE, this.id);
  }

  /** Send a frame of another type on this stream (STREAM_REQUEST) unless CLOSE was sent or the stream is over. */
  sendOther(type: number, payload: Buffer): void {
    if (this.dead || this.sentClose || this.gotClose) return;
    this.wire.send(type, this.id, payload);
  }

  /** DATA or STDERR from the agent. @throws ProtocolViolation */
  onData(payload: Buffer, stderr: boolean): void {
    if (this.gotEof) throw new ProtocolViolation(`${stderr ? 'STDERR' : 'DATA'} after EOF on stream ${this.id}`);
    if (payload.length > this.recvCredit) {
      throw new ProtocolViolation(`window exceeded on stream ${this.id} (${payload.length} bytes, ${this.recvCredit} left)`);
    }
    this.recvCredit -= payload.length;
    if (this.sentClose) return; // hung up: discarded
    this.hooks.deliver(payload, stderr);
    this.consumed();
  }

  /** The consumer read something (or gave up reading): grant WINDOW when ≥ half the window is free again. */
  consumed(): void {
    if (this.dead || this.sentClose || this.gotClose || this.gotEof) return;
    const grant = STREAM_WINDOW - this.recvCredit - this.hooks.buffered();
    if (grant < halfWindow) return;
    this.recvCredit += grant;
    const p = Buffer.allocUnsafe(4);
    p.writeUInt32BE(grant, 0);
    this.wire.send(FrameType.WINDOW, this.id, p);
  }

  /** WINDOW from the agent. @throws ProtocolViolation on 0 or a window over 2^32-1 */
  onWindow(credit: number): void {
    if (credit === 0) throw new ProtocolViolation(`WINDOW of 0 on stream ${this.id}`);
    if (this.sendCredit + credit > MAX_CREDIT) throw new ProtocolViolation(`window over 2^32-1 on stream ${this.id}`);
    this.sendCredit += credit;
    this.pump();
  }

  /** EOF from the agent. @throws ProtocolViolation if repeated */
  onEof(): void {
    if (this.gotEof) throw new ProtocolViolation(`EOF twice on stream ${this.id}`);
    this.gotEof = true;
    if (!this.sentClose) this.hooks.peerEof();
  }

  /** CLOSE from the agent: answer CLOSE (if not sent yet); the stream is over. */
  onClose(): void {
    this.gotClose = true;
    this.close();
    this.finish(true);
  }

  /** The connection ended: the stream is over without CLOSE frames. */
  connectionEnded(): void {
    this.finish(false);
  }

  private finish(release: boolean): void {
    if (this.dead) return;
    this.dead = true;
    this.dropQueue();
    if (release) this.wire.release(this.id);
    this.hooks.ended();
    this.hooks.over();
  }

  private dropQueue(): void {
    const q = this.queue;
    this.queue = [];
    this.eofPending = false;
    for (const w of q) w.cb();
  }

  private pump(): void {
    while (this.queue.length && this.sendCredit > 0 && !this.dead && !this.sentClose) {
      const w = this.queue[0]!;
      const n = Math.min(w.buf.length, this.sendCredit, MAX_DATA_CHUNK_SENT);
      this.wire.send(FrameType.DATA, this.id, w.buf.subarray(0, n));
      this.sendCredit -= n;
      if (n === w.buf.length) {
        this.queue.shift();
        w.cb();
      } else {
        w.buf = w.buf.subarray(n);
      }
    }
    if (this.eofPending && this.queue.length === 0 && !this.dead && !this.sentClose) {
      this.eofPending = false;
      this.sentEof = true;
      this.wire.send(FrameType.EOF, this.id);
    }
  }
}

/**
 * A Readable whose buffer is bounded by the stream window; `onRead` runs
 * after every read() so the stream can grant WINDOW as the consumer reads.
 */
export class WindowedReadable extends Readable {
  constructor(private readonly onRead: () => void) {
    super({ highWaterMark: STREAM_WINDOW });
    this.once('close', () => onRead());
  }
  override _read(): void {
    this.onRead();
  }
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- Readable.read's own type
  override read(size?: number): any {
    const r: unknown = super.read(size);
    this.onRead();
    return r;
  }
}

/** What kind of stream an {@link AgentStream} relays. */
export type AgentStreamKind = 'tcp-connect' | 'tcp-accepted' | 'auth-agent';

/**
 * A byte stream inside the guest ("tcp-connect", "tcp-listen"/"tcp-accepted",
 * "auth-agent"), as a Duplex: write() sends DATA within the agent's window
 * (write() returns false while it waits; 'drain' follows), end() sends EOF (a
 * half-close), destroy() sends CLOSE. Reading grants the agent WINDOW; at most
 * 262,144 unread bytes are buffered. The readable side ends on the agent's
 * EOF, CLOSE or the connection's end; after the agent's CLOSE or the
 * connection's end, writes are silently dropped and the Duplex destroys itself
 * once its readable side has been read to the end. It never emits 'error' by
 * itself.
 */
export class AgentStream extends Duplex {
  /** Window and lifecycle state; for the connection. */
  readonly core: StreamCore;
  private readEnded = false;

  constructor(
    id: number,
    wire: StreamWire,
    /** What this stream relays. */
    readonly kind: AgentStreamKind,
  ) {
    super({ readableHighWaterMark: STREAM_WINDOW, allowHalfOpen: true });
    this.core = new StreamCore(id, wire, {
      buffered: () => (this.destroyed ? 0 : this.readableLength),
      deliver: (buf) => {
        if (!this.readEnded && !this.destroyed) this.push(buf);
      },
      peerEof: () => this.endReadable(),
      ended: () => {
        this.endReadable();
        if (this.readableEnded) this.destroy();
        else this.once('end', () => this.destroy());
      },
      over: () => {},
    });
    this.once('close', () => this.core.consumed());
  }

  /** The stream id (the gateway's half: 1 .. 2^31-1, the agent's: 2^31 ..). */
  get id(): number {
    return this.core.id;
  }

  private endReadable(): void {
    if (this.readEnded) return;
    this.readEnded = true;
    if (!this.destroyed) this.push(null);
  }

  override _read(): void {
    this.core.consumed();
  }
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- Readable.read's own type
  override read(size?: number): any {
    const r: unknown = super.read(size);
    this.core.consumed();
    return r;
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.core.write(chunk, () => cb());
  }
  override _final(cb: (err?: Error | null) => void): void {
    this.core.eof();
    cb();
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.core.close();
    cb(err);
  }
}
