/**
 * An exec stream of the guest agent protocol (docs/guest-protocol.md,
 * "exec"): a process in the guest with stdin, stdout and stderr, its exit,
 * and its stream requests (window-change, signal, break, eow).
 */
import { Writable, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { FrameType } from './agent-frames.js';
import { buildStreamRequest, SIGNAL_NAMES, type AgentExit, type PtyRequest } from './agent-messages.js';
import { ProtocolViolation, StreamCore, WindowedReadable, type AgentStream, type StreamWire } from './agent-stream.js';

export type { AgentExit } from './agent-messages.js';

/** What to run ("exec"). */
export interface AgentExecOptions {
  /** The command's exact bytes (`SHELL -c COMMAND`); undefined and no subsystem = the login shell. */
  command?: Buffer;
  /** Run the image's sftp-server directly. */
  subsystem?: 'sftp';
  /** Set in order after PATH, before what the server owns. */
  env?: Array<{ name: string; value: Buffer }>;
  /** A pty: cols/rows in characters, width/height in pixels, modes RFC 4254 §8 encoded. */
  pty?: PtyRequest;
  /** The directory the command starts in (an image's WorkingDir); absent, or not a directory in the guest: root's home. */
  cwd?: string;
  /** Called for each agent-forwarding connection the guest opens (kind auth-agent) for this session; sets `agentForward`. */
  onAuthAgent?: (stream: AgentStream) => void;
}

/** A process running in the guest; see {@link AgentConnection.exec}. */
export interface AgentProcess {
  /** The guest pid from OPEN_OK, if the agent gave one. */
  readonly pid: number | undefined;
  /** DATA to the agent; end() sends EOF; respects the agent's window (write() returns false, then 'drain'). Writes after the stream ended are dropped. */
  readonly stdin: Writable;
  /** DATA from the agent; WINDOW is granted as the consumer reads (stdout and stderr share the window). */
  readonly stdout: Readable;
  /** STDERR from the agent. */
  readonly stderr: Readable;
  /** Resolves when the agent sent EXIT (undefined if the stream closed without one: hung up, or connection lost). */
  readonly exit: Promise<AgentExit | undefined>;
  /**
   * Resolves when the stream is fully closed (both CLOSEs, or the connection
   * ended) and stdout and stderr have been read to their end (or destroyed):
   * all output has reached the consumer. Never rejects.
   */
  readonly closed: Promise<void>;
  /** window-change: size in characters and pixels. Ignored once the stream is closing. */
  resize(size: { cols: number; rows: number; width: number; height: number }): void;
  /** Send a signal by name without `SIG` (only TERM INT HUP KILL QUIT USR1 USR2 ALRM PIPE ABRT FPE ILL SEGV; others ignored). */
  signal(name: string): void;
  /** tcsendbreak on the pty; `ms` clamped to 0..2^32-1. */
  sendBreak(ms: number): void;
  /** eow@openssh.com: stdout is no longer wanted. */
  outputClosed(): void;
  /** CLOSE: the guest hangs the session up. */
  hangUp(): void;
}

const signalNames = new Set<string>(SIGNAL_NAMES);
const u32 = (n: number) => Math.max(0, Math.min(0xffff_ffff, Math.floor(Number.isFinite(n) ? n : 0)));

/** The {@link AgentProcess} of one open exec stream; created by the connection on OPEN_OK. */
export class ExecProcess implements AgentProcess {
  readonly core: StreamCore;
  readonly stdin: Writable;
  readonly stdout: WindowedReadable;
  readonly stderr: WindowedReadable;
  readonly exit: Promise<AgentExit | undefined>;
  readonly closed: Promise<void>;
  private resolveExit!: (e: AgentExit | undefined) => void;
  private gotExit = false;
  private outEnded = false;

  constructor(
    id: number,
    wire: StreamWire,
    readonly pid: number | undefined,
    /** For auth-agent streams of this session (undefined: not forwarded). */
    readonly onAuthAgent: ((stream: AgentStream) => void) | undefined,
  ) {
    this.exit = new Promise((r) => (this.resolveExit = r));
    let resolveOver!: () => void;
    const over = new Promise<void>((r) => (resolveOver = r));
    const consumed = () => this.core.consumed();
    this.stdout = new WindowedReadable(consumed);
    this.stderr = new WindowedReadable(consumed);
    const live = (r: Readable) => (r.destroyed ? 0 : r.readableLength);
    this.core = new StreamCore(id, wire, {
      buffered: () => live(this.stdout) + live(this.stderr),
      deliver: (buf, isStderr) => {
        const r = isStderr ? this.stderr : this.stdout;
        if (!this.outEnded && !r.destroyed) r.push(buf);
      },
      peerEof: () => this.endOutput(),
      ended: () => this.endOutput(),
      over: () => {
        this.resolveExit(undefined);
        resolveOver();
      },
    });
    const core = this.core;
    this.stdin = new Writable({
      write(chunk: Buffer, _enc, cb) {
        core.write(chunk, () => cb());
      },
      final(cb) {
        core.eof();
        cb();
      },
      destroy(err, cb) {
        core.eof();
        cb(err);
      },
    });
    // stdin's 'error' (write after end, by a careless caller) must not crash the gateway.
    this.stdin.on('error', () => {});
    const drained = (r: Readable) => finished(r).catch(() => {});
    this.closed = over.then(() => Promise.all([drained(this.stdout), drained(this.stderr)])).then(() => {});
  }

  private endOutput(): void {
    if (this.outEnded) return;
    this.outEnded = true;
    for (const r of [this.stdout, this.stderr]) if (!r.destroyed) r.push(null);
  }

  /** EXIT from the agent. @throws ProtocolViolation if repeated */
  onExit(e: AgentExit): void {
    if (this.gotExit) throw new ProtocolViolation(`EXIT twice on stream ${this.core.id}`);
    this.gotExit = true;
    this.resolveExit(e);
  }

  resize(size: { cols: number; rows: number; width: number; height: number }): void {
    this.request('window-change', { cols: u32(size.cols), rows: u32(size.rows), width: u32(size.width), height: u32(size.height) });
  }
  signal(name: string): void {
    if (signalNames.has(name)) this.request('signal', { name });
  }
  sendBreak(ms: number): void {
    this.request('break', { ms: u32(ms) });
  }
  outputClosed(): void {
    this.request('eow');
  }
  hangUp(): void {
    this.core.close();
  }

  private request(op: string, fields: Record<string, unknown> = {}): void {
    this.core.sendOther(FrameType.STREAM_REQUEST, buildStreamRequest(op, fields));
  }
}
