/**
 * A scriptable stand-in for `sshvisor-agent`, for tests of src/guest: it
 * speaks the agent's side of docs/guest-protocol.md over any Duplex (a unix
 * socket in a temp dir), records every frame the gateway sends, and lets the
 * test send whatever frames it likes (valid or not).
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { encodeFrame, encodeHelloAck, FrameType, type Frame } from '../../src/guest/agent-frames.js';

/** How the fake answers HELLO. */
export interface FakeAgentOptions {
  /** Version to choose (default 1). */
  version?: number;
  /** HELLO_ACK JSON (default a valid one). */
  ackJson?: unknown;
  /** Bytes sent before the HELLO_ACK (resynchronisation). */
  junkBefore?: Buffer;
  /** Don't answer HELLO at all. */
  silent?: boolean;
  /** Answer OPEN/REQUEST automatically (default true): REQUEST → RESPONSE ok, OPEN → OPEN_OK. */
  auto?: boolean;
}

/** The agent side of one connection. Emits 'frame' (Frame) for each gateway frame after HELLO. */
export class FakeAgent extends EventEmitter {
  readonly frames: Frame[] = [];
  nonce: Buffer | undefined;
  private buf = Buffer.alloc(0);
  closed = false;

  constructor(
    readonly sock: Duplex,
    private readonly opts: FakeAgentOptions = {},
  ) {
    super();
    sock.on('error', () => {});
    sock.on('close', () => {
      this.closed = true;
      this.emit('closed');
    });
    sock.on('data', (c: Buffer) => this.onData(c));
  }

  private onData(c: Buffer): void {
    this.buf = Buffer.concat([this.buf, c]);
    while (this.buf.length >= 12) {
      const len = this.buf.readUInt32BE(0);
      if (this.buf.length < 12 + len) return;
      const f: Frame = { type: this.buf[4]!, stream: this.buf.readUInt32BE(8), payload: Buffer.from(this.buf.subarray(12, 12 + len)) };
      this.buf = this.buf.subarray(12 + len);
      if (f.type === FrameType.HELLO) {
        this.nonce = f.payload.subarray(12, 28);
        this.emit('hello', f);
        if (this.opts.silent) continue;
        if (this.opts.junkBefore) this.sock.write(this.opts.junkBefore);
        const ack = this.opts.ackJson ?? { agent: 'fake-agent 0.0.1', minVersion: 1, maxVersion: 1, bootId: 'boot-1', uptimeMs: 5 };
        this.sock.write(encodeHelloAck(this.nonce, this.opts.version ?? 1, ack));
        continue;
      }
      this.frames.push(f);
      if (this.opts.auto !== false) this.autoAnswer(f);
      this.emit('frame', f);
    }
  }

  private autoAnswer(f: Frame): void {
    if (f.type === FrameType.REQUEST) {
      const r = JSON.parse(f.payload.toString()) as { id: number; op: string };
      this.sendJson(FrameType.RESPONSE, 0, { id: r.id, ok: true, echo: r.op });
    } else if (f.type === FrameType.OPEN) {
      this.sendJson(FrameType.OPEN_OK, f.stream, { pid: 42, port: 9001 });
    }
  }

  /** Send one frame. */
  send(type: number, stream: number, payload: Buffer = Buffer.alloc(0)): void {
    if (!this.sock.destroyed) this.sock.write(encodeFrame(type, stream, payload));
  }
  /** Send one frame with a JSON payload. */
  sendJson(type: number, stream: number, v: unknown): void {
    this.send(type, stream, Buffer.from(JSON.stringify(v)));
  }
  /** Send a WINDOW. */
  window(stream: number, credit: number): void {
    const p = Buffer.alloc(4);
    p.writeUInt32BE(credit, 0);
    this.send(FrameType.WINDOW, stream, p);
  }
  /** Raw bytes. */
  raw(b: Buffer): void {
    if (!this.sock.destroyed) this.sock.write(b);
  }

  /** Frames seen so far matching, and those that come later until `timeoutMs`: resolves with the first match. */
  waitFor(pred: (f: Frame) => boolean, timeoutMs = 2000): Promise<Frame> {
    const seen = this.frames.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.off('frame', on);
        reject(new Error('fake agent: expected frame did not come'));
      }, timeoutMs);
      const on = (f: Frame) => {
        if (!pred(f)) return;
        clearTimeout(t);
        this.off('frame', on);
        resolve(f);
      };
      this.on('frame', on);
    });
  }

  /** The JSON of a frame. */
  static json(f: Frame): Record<string, unknown> {
    return JSON.parse(f.payload.toString()) as Record<string, unknown>;
  }
}
