import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';

/**
 * A small typed client for QEMU's machine protocol (QMP) over a unix socket:
 * one JSON object per line, commands answered in order, events interleaved.
 * https://www.qemu.org/docs/master/interop/qmp-spec.html
 */

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

/** The commands sshvisor uses, with their arguments and return values. */
export interface QmpCommands {
  qmp_capabilities: { args: undefined; ret: Record<string, never> };
  'query-status': { args: undefined; ret: { status: string; running: boolean; singlestep?: boolean } };
  'query-version': { args: undefined; ret: { qemu: { major: number; minor: number; micro: number }; package: string } };
  'query-cpus-fast': { args: undefined; ret: Array<{ 'cpu-index': number; 'thread-id': number; target: string }> };
  cont: { args: undefined; ret: Record<string, never> };
  stop: { args: undefined; ret: Record<string, never> };
  quit: { args: undefined; ret: Record<string, never> };
  system_powerdown: { args: undefined; ret: Record<string, never> };
  system_reset: { args: undefined; ret: Record<string, never> };
  'human-monitor-command': { args: { 'command-line': string }; ret: string };
  'migrate-set-capabilities': { args: { capabilities: Array<{ capability: string; state: boolean }> }; ret: Record<string, never> };
  migrate: { args: { uri: string }; ret: Record<string, never> };
  'migrate-incoming': { args: { uri: string }; ret: Record<string, never> };
  'query-migrate': { args: undefined; ret: { status?: string; 'error-desc'?: string } };
}

export type QmpCommandName = keyof QmpCommands;

/** QEMU refused a command: `class` is QMP's error class (GenericError, CommandNotFound, ...). */
export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    desc: string,
  ) {
    super(`QMP ${command}: ${desc}`);
    this.name = 'QmpError';
  }
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

export class QmpClient extends EventEmitter<{ event: [QmpEvent]; close: [] }> {
  private buffer = '';
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;
  private greeting?: (err?: Error) => void;
  version?: { major: number; minor: number; micro: number };

  private constructor(private readonly socket: Socket) {
    super();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => this.shutdown(err));
    socket.on('close', () => this.shutdown(new Error('QMP connection closed')));
  }

  /** Connect, read QEMU's greeting and leave capabilities negotiation mode. */
  static async connect(path: string, timeoutMs = 5000): Promise<QmpClient> {
    const socket = connect(path);
    const client = new QmpClient(socket);
    const timer = setTimeout(() => client.shutdown(new Error(`QMP greeting timed out on ${path}`)), timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        client.greeting = (err) => (err ? reject(err) : resolve());
      });
      await client.execute('qmp_capabilities');
      return client;
    } catch (err) {
      client.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  execute<C extends QmpCommandName>(
    command: C,
    ...args: QmpCommands[C]['args'] extends undefined ? [] : [QmpCommands[C]['args']]
  ): Promise<QmpCommands[C]['ret']> {
    if (this.closed) return Promise.reject(new Error(`QMP ${command}: connection closed`));
    const id = this.nextId++;
    const msg: Record<string, unknown> = { execute: command, id };
    if (args[0] !== undefined) msg.arguments = args[0];
    return new Promise((resolve, reject) => {
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(JSON.stringify(msg) + '\n');
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    this.socket.destroy();
    this.shutdown(new Error('QMP connection closed'));
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line) this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return this.shutdown(new Error(`QMP sent a line that is not JSON: ${line.slice(0, 80)}`));
    }
    if ('QMP' in msg) {
      const qmp = msg.QMP as { version?: { qemu?: { major: number; minor: number; micro: number } } };
      this.version = qmp.version?.qemu;
      this.greeting?.();
      this.greeting = undefined;
      return;
    }
    if ('event' in msg) {
      this.emit('event', msg as unknown as QmpEvent);
      return;
    }
    const id = typeof msg.id === 'number' ? msg.id : undefined;
    const pending = id === undefined ? undefined : this.pending.get(id);
    if (!pending || id === undefined) return;
    this.pending.delete(id);
    if ('error' in msg) {
      const e = msg.error as { class?: string; desc?: string };
      pending.reject(new QmpError(pending.command, e.class ?? 'GenericError', e.desc ?? 'unknown error'));
    } else {
      pending.resolve(msg.return);
    }
  }

  private shutdown(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.greeting?.(err);
    this.greeting = undefined;
    for (const p of this.pending.values()) p.reject(new Error(`QMP ${p.command}: ${err.message}`));
    this.pending.clear();
    this.socket.destroy();
    this.emit('close');
  }
}
