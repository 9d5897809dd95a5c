/**
 * The gateway's multiplexed connection to one guest's `sshvisor-agent`
 * (docs/guest-protocol.md): handshake, control requests, and the streams
 * (exec, tcp-connect, tcp-listen/tcp-accepted, auth-agent). The agent is not
 * trusted: its first violation ends the connection with
 * `protocol error: ...` (logged once), and nothing it sends can grow memory
 * past the frame and window limits.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { connectUnix } from '../util/unix-socket.js';
import { AGENT_STREAM_ID_MIN, encodeFrame, FrameDecoder, FrameError, FrameType, MAX_OPEN_PAYLOAD, MAX_PAYLOAD, STREAM_WINDOW } from './agent-frames.js';
import { handshake, HandshakeRefused, type AgentHello } from './agent-handshake.js';
import { buildExecOpen, buildRequest, buildTcpOpen, openFailJson, openOkJson, parsePayload, responseJson, type OpenOkJson } from './agent-messages.js';
import { dispatchFrame, type Entry, type DispatchContext } from './agent-dispatch.js';
import { ExecProcess, type AgentExecOptions, type AgentProcess } from './agent-process.js';
import { AgentStream, StreamCore, type StreamWire } from './agent-stream.js';

export type { AgentExecOptions, AgentProcess, AgentExit } from './agent-process.js';
export type { AgentHello } from './agent-handshake.js';
export { AgentStream } from './agent-stream.js';

/** Where the connection logs: the protocol error that ended it (warn, once), and connection attempts (info). */
export interface AgentLog {
  warn(obj: object, msg: string): void;
  info?(obj: object, msg: string): void;
}

/** A tcp-listen inside the guest: the port bound, and close() to stop it (CLOSE). */
export interface AgentListener {
  port: number;
  close(): void;
}

const CONNECT_RETRY_MS = 50;
/** Bytes of unsent frames (besides a window per stream) past which the gateway stops reading the agent. */
const WRITE_BUFFER_BASE = 4 * 1024 * 1024;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/**
 * One connection to a guest agent. Emits `'close'` (reason: string) once when
 * it ends; never emits 'error'.
 */
export class AgentConnection extends EventEmitter {
  /** Resolves with the reason the connection ended: 'closed by the gateway', 'protocol error: ...', 'socket closed', ... */
  readonly closed: Promise<string>;
  private resolveClosed!: (reason: string) => void;
  private open = true;
  private readonly decoder = new FrameDecoder();
  private readonly entries = new Map<number, Entry>();
  private readonly requests = new Map<number, { resolve(v: Record<string, unknown>): void; reject(e: Error): void; timer: NodeJS.Timeout }>();
  private nextStreamId = 1;
  private nextRequestId = 1;
  private readonly ctx: DispatchContext;
  private readonly wire: StreamWire;

  /**
   * Connect to the agent's unix socket, send HELLO and wait for the matching
   * HELLO_ACK. Connecting is retried every 50 ms (also after the socket closes
   * mid-handshake) until `deadline` (ms since epoch) or until `abort` resolves.
   * @throws Error with a one-line reason: the deadline passed (with the last
   * failure), aborted, or a refused handshake (version mismatch naming both ranges).
   * The reason is shown to users, so it never names the host path.
   */
  static async connect(socketPath: string, opts: { deadline: number; abort?: Promise<unknown>; log?: AgentLog }): Promise<AgentConnection> {
    let aborted = false;
    const abort = opts.abort?.then(
      () => void (aborted = true),
      () => void (aborted = true),
    );
    let last = 'not tried';
    for (;;) {
      if (aborted) throw new Error('the VM went away while connecting to its guest agent');
      if (Date.now() >= opts.deadline) throw new Error(`the guest agent did not answer in time (${last})`);
      let sock;
      try {
        sock = await connectUnix(socketPath);
      } catch (e) {
        last = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
        await Promise.race([sleep(CONNECT_RETRY_MS), abort]);
        continue;
      }
      try {
        const { hello, rest } = await handshake(sock, opts.deadline, abort);
        opts.log?.info?.({ socketPath, agent: hello.agent, version: hello.version }, 'guest agent connected');
        return new AgentConnection(sock, hello, rest, opts.log);
      } catch (e) {
        sock.destroy();
        if (e instanceof HandshakeRefused) throw e;
        last = (e as Error).message;
        if (aborted || Date.now() >= opts.deadline) throw new Error(`the guest agent did not answer: ${last}`);
        await Promise.race([sleep(CONNECT_RETRY_MS), abort]);
      }
    }
  }

  /**
   * The same handshake over an already connected Duplex (tests, stdio); the
   * connection owns the duplex from then on (destroyed on failure).
   * @throws Error as {@link AgentConnection.connect}, after `timeoutMs`.
   */
  static async over(duplex: Duplex, opts: { timeoutMs: number; log?: AgentLog }): Promise<AgentConnection> {
    try {
      const { hello, rest } = await handshake(duplex, Date.now() + opts.timeoutMs);
      return new AgentConnection(duplex, hello, rest, opts.log);
    } catch (e) {
      duplex.destroy();
      throw e;
    }
  }

  private constructor(
    private readonly socket: Duplex,
    /** The agent's HELLO_ACK: chosen version, agent name, boot id. */
    readonly hello: AgentHello,
    rest: Buffer,
    private readonly log?: AgentLog,
  ) {
    super();
    this.closed = new Promise((r) => (this.resolveClosed = r));
    this.wire = {
      send: (type, id, payload) => this.send(type, id, payload),
      release: (id) => {
        if (this.entries.delete(id) && id >= AGENT_STREAM_ID_MIN) this.ctx.agentStreams--;
      },
    };
    this.ctx = {
      entries: this.entries,
      agentStreams: 0,
      wire: this.wire,
      response: (payload) => this.onResponse(payload),
      warn: (obj, msg) => this.log?.warn(obj, msg),
    };
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
    socket.once('end', () => this.close('socket closed'));
    socket.once('close', () => this.close('socket closed'));
    this.onBytes(rest);
    socket.resume();
  }

  /** True until the connection ended. */
  get isOpen(): boolean {
    return this.open;
  }

  /**
   * A control request ("Control requests"): `{id, op, ...args}` on stream 0.
   * @returns the RESPONSE's fields other than id and ok.
   * @throws (rejects) Error with the agent's error text on ok:false, on timeout after `timeoutMs`, on the connection's end, or if the request is over 65,536 bytes.
   */
  request(op: 'ping' | 'sync' | 'info' | 'set-clock' | 'identity', args: Record<string, unknown>, timeoutMs: number): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      if (!this.open) return reject(new Error(`guest agent connection closed before ${op}`));
      const id = this.nextRequestId;
      this.nextRequestId = id >= 0xffff_ffff ? 1 : id + 1;
      const payload = buildRequest(id, op, args);
      if (payload.length > MAX_PAYLOAD) return reject(new Error(`${op} request too large (${payload.length} bytes)`));
      const timer = setTimeout(() => {
        this.requests.delete(id);
        reject(new Error(`guest agent did not answer ${op} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.requests.set(id, { resolve, reject, timer });
      this.send(FrameType.REQUEST, 0, payload);
    });
  }

  /** `ping`: proves the agent's loop runs. @throws as request() */
  async ping(timeoutMs: number): Promise<void> {
    await this.request('ping', {}, timeoutMs);
  }
  /** `sync`: sync(2) in the guest. @throws as request() */
  async sync(timeoutMs: number): Promise<void> {
    await this.request('sync', {}, timeoutMs);
  }
  /** `set-clock`: the guest's clock to `unixMs` (ms since epoch). @throws as request() */
  async setClock(unixMs: number, timeoutMs: number): Promise<void> {
    await this.request('set-clock', { unixMs }, timeoutMs);
  }
  /** `identity`: hostname, clock (ms since epoch) and an RNG seed of 32..512 bytes. @throws RangeError on a bad seed size; as request() */
  async identity(id: { hostname: string; unixMs: number; seed: Buffer }, timeoutMs: number): Promise<void> {
    if (id.seed.length < 32 || id.seed.length > 512) throw new RangeError(`identity seed of ${id.seed.length} bytes (32..512)`);
    await this.request('identity', { hostname: id.hostname, unixMs: id.unixMs, seed: id.seed.toString('base64') }, timeoutMs);
  }

  /** Open an exec stream ("exec"). @throws (rejects) Error with the OPEN_FAIL reason, or when the connection ends first */
  exec(opts: AgentExecOptions): Promise<AgentProcess> {
    const payload = buildExecOpen({ ...opts, agentForward: opts.onAuthAgent !== undefined });
    return this.openStream('exec', payload, (id, ok) => {
      const proc = new ExecProcess(id, this.wire, ok.pid, opts.onAuthAgent);
      return { entry: { kind: 'exec', core: proc.core, proc }, value: proc };
    });
  }

  /** Connect to host:port from inside the guest ("tcp-connect"). @throws (rejects) Error with the agent's reason */
  connectTcp(host: string, port: number): Promise<AgentStream> {
    return this.openStream('tcp-connect', buildTcpOpen('tcp-connect', host, port), (id) => {
      const stream = new AgentStream(id, this.wire, 'tcp-connect');
      return { entry: { kind: 'stream', core: stream.core, stream }, value: stream };
    });
  }

  /**
   * Listen on host:port inside the guest ("tcp-listen"); each accepted
   * connection is handed to `onConnection` with its origin (the stream is
   * already accepted: destroy() it to refuse).
   * @returns the bound port (for port 0) and close() (CLOSE: the listener stops).
   * @throws (rejects) Error with the agent's reason
   */
  listenTcp(host: string, port: number, onConnection: (s: AgentStream, origin: { host: string; port: number }) => void): Promise<AgentListener> {
    return this.openStream('tcp-listen', buildTcpOpen('tcp-listen', host, port), (id, ok) => {
      const core = new StreamCore(id, this.wire, { buffered: () => 0, deliver: () => {}, peerEof: () => {}, ended: () => {}, over: () => {} });
      return { entry: { kind: 'listener', core, onConnection }, value: { port: ok.port ?? port, close: () => core.close() } };
    });
  }

  /**
   * Memory held for this connection, for tests and metrics: bytes in the frame
   * decoder (≤ 12 + 1,048,576 between reads), open stream ids, streams the
   * agent opened, and the largest unread byte count of any stream (≤ 262,144).
   */
  stats(): { decoderBytes: number; writeBufferBytes: number; streams: number; agentStreams: number; maxStreamBufferedBytes: number } {
    let max = 0;
    for (const e of this.entries.values()) if (e.kind !== 'opening') max = Math.max(max, e.core.bufferedBytes);
    return { decoderBytes: this.decoder.bufferedBytes, writeBufferBytes: this.socket.writableLength, streams: this.entries.size, agentStreams: this.ctx.agentStreams, maxStreamBufferedBytes: max };
  }

  /** End the connection: the socket is closed, pending requests and opens reject, every stream ends. */
  close(reason = 'closed by the gateway'): void {
    if (!this.open) return;
    this.open = false;
    this.socket.destroy();
    for (const r of this.requests.values()) {
      clearTimeout(r.timer);
      r.reject(new Error(`guest agent connection ended: ${reason}`));
    }
    this.requests.clear();
    const entries = [...this.entries.values()];
    this.entries.clear();
    for (const e of entries) {
      if (e.kind === 'opening') e.fail(new Error(`guest agent connection ended: ${reason}`));
      else e.core.connectionEnded();
    }
    this.resolveClosed(reason);
    this.emit('close', reason);
  }

  private openStream<T>(kind: string, payload: Buffer, make: (id: number, ok: OpenOkJson) => { entry: Entry; value: T }): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (!this.open) return reject(new Error(`guest agent connection closed before ${kind}`));
      if (payload.length > MAX_OPEN_PAYLOAD) return reject(new Error(`${kind} request too large (${payload.length} bytes)`));
      const id = this.allocateId();
      this.entries.set(id, {
        kind: 'opening',
        opened: (okPayload) => {
          const ok = parsePayload(openOkJson, okPayload);
          if (!ok.ok) return `OPEN_OK ${ok.error}`;
          const made = make(id, ok.value);
          resolve(made.value);
          return made.entry;
        },
        refused: (failPayload) => {
          const f = parsePayload(openFailJson, failPayload);
          reject(new Error(f.ok && f.value.error ? f.value.error : `${kind} refused by the guest agent`));
          return f.ok ? undefined : `OPEN_FAIL ${f.error}`;
        },
        fail: reject,
      });
      this.send(FrameType.OPEN, id, payload);
    });
  }

  private allocateId(): number {
    for (;;) {
      const id = this.nextStreamId;
      this.nextStreamId = id >= 0x7fff_ffff ? 1 : id + 1;
      if (!this.entries.has(id)) return id;
    }
  }

  private send(type: number, id: number, payload?: Buffer): void {
    if (!this.open) return;
    this.socket.write(encodeFrame(type, id, payload));
  }

  private onBytes(chunk: Buffer): void {
    if (!this.open) return;
    this.decoder.push(chunk);
    // An agent that does not read what we answer (OPEN_FAIL, CLOSE, WINDOW) would grow our
    // write buffer: past a bound, stop reading from it until the socket drains.
    if (this.socket.writableLength > WRITE_BUFFER_BASE + STREAM_WINDOW * this.entries.size && !this.socket.isPaused()) {
      this.socket.pause();
      this.socket.once('drain', () => this.socket.resume());
    }
    try {
      for (;;) {
        if (!this.open) return;
        const f = this.decoder.next();
        if (!f) return;
        const violation = dispatchFrame(this.ctx, f);
        if (violation !== undefined) return this.protocolError(violation);
      }
    } catch (e) {
      if (e instanceof FrameError) return this.protocolError(e.message);
      this.log?.warn({ err: e }, 'guest agent connection: internal error');
      this.close(`internal error: ${(e as Error).message}`);
    }
  }

  private onResponse(payload: Buffer): string | undefined {
    const r = parsePayload(responseJson, payload);
    if (!r.ok) return `RESPONSE ${r.error}`;
    const req = this.requests.get(r.value.id);
    if (!req) return undefined; // answered after its timeout
    this.requests.delete(r.value.id);
    clearTimeout(req.timer);
    if (r.value.ok) {
      const { id: _id, ok: _ok, ...rest } = r.value;
      req.resolve(rest);
    } else {
      req.reject(new Error(r.value.error || 'the guest agent refused the request'));
    }
    return undefined;
  }

  private protocolError(what: string): void {
    if (!this.open) return;
    this.log?.warn({ violation: what }, 'guest agent protocol error: connection closed');
    this.close(`protocol error: ${what}`);
  }
}
