/**
 * The console bench's baseline: qemu-system-x86_64 started here with the
 * command line sshvisor's driver gives a VM (buildQemuArgs), its console
 * chardev socket read by one plain net.Socket. Plus small process helpers
 * for the bench's own children.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import type { Accel, VmSpec } from '../../src/vm/driver.js';
import type { GuestImage } from '../../src/image/image.js';
import { buildQemuArgs, type QemuRuntimePaths } from '../../src/vm/qemu/qemu-args.js';
import { QmpClient } from '../../src/vm/qemu/qmp-client.js';
import { UserError } from '../../src/util/errors.js';
import { trackChild } from '../lib/cleanup.js';
import { connectUnix } from '../../src/util/unix-socket.js';

/** The tail of a text stream, and waiting for something to show up in it. */
export class TextTail {
  text = '';
  private waiters: Array<() => void> = [];

  constructor(private readonly keep = 16384) {}

  feed(chunk: Buffer | string): void {
    this.text = (this.text + (typeof chunk === 'string' ? chunk : chunk.toString('latin1'))).slice(-this.keep);
    for (const w of [...this.waiters]) w();
  }

  /** Resolves once `re` matches the tail; rejects after `timeoutMs` or when `failed()` says why not. */
  waitFor(re: RegExp, timeoutMs: number, what: string, failed?: () => string | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const why = failed?.();
        if (re.test(this.text)) finish();
        else if (why) finish(new UserError(`${what}: ${why}${this.lastLines()}`));
      };
      const timer = setTimeout(() => finish(new UserError(`${what}: not within ${timeoutMs / 1000} s${this.lastLines()}`)), timeoutMs);
      const poll = setInterval(check, 250);
      const finish = (err?: Error): void => {
        clearTimeout(timer);
        clearInterval(poll);
        this.waiters = this.waiters.filter((w) => w !== check);
        if (err) reject(err);
        else resolve();
      };
      this.waiters.push(check);
      check();
    });
  }

  lastLines(n = 6): string {
    // eslint-disable-next-line no-control-regex
    const lines = this.text.replace(/[\x00-\x08\x0b-\x1f]/g, '').trim().split('\n').slice(-n);
    return lines.length && lines[0] ? `; last output:\n    ${lines.map((l) => l.slice(0, 200)).join('\n    ')}` : '';
  }
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

const closings = new WeakMap<ChildProcess, Promise<void>>();

/** trackChild(), and remember when the child has exited and its streams have closed. Call right after spawn(). */
export function track(child: ChildProcess): ChildProcess {
  trackChild(child);
  closings.set(child, new Promise((resolve) => child.once('close', () => resolve())));
  return child;
}

/** Resolves once a track()ed child has exited and its streams are closed. */
export function closed(child: ChildProcess): Promise<void> {
  return child.pid === undefined ? Promise.resolve() : (closings.get(child) ?? Promise.resolve());
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once it is gone. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.pid === undefined) return;
  const gone = closed(child);
  if (!exited(child)) {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await gone;
    clearTimeout(timer);
  }
  await gone;
}

export interface RawQemuOptions {
  qemu: string;
  /** An empty dir of the bench's for the sockets and the pid file. */
  dir: string;
  image: GuestImage;
  accel: Accel;
  tscKhz?: number;
  memoryMiB: number;
  cpus: number;
  name: string;
}

/**
 * QEMU with exactly the command line sshvisor's driver gives a VM of this
 * spec (buildQemuArgs: paused with -S, QMP, console chardev socket with
 * server=on,wait=off, -serial chardev:console0), started the way the driver
 * starts it: connect the console socket, then QMP `cont`, so no byte is lost.
 * The console is read by one plain net.Socket, nothing else.
 */
export class RawQemu {
  readonly console: Socket;
  readonly tail = new TextTail();
  private stderr = '';

  private constructor(
    private readonly child: ChildProcess,
    private readonly qmp: QmpClient,
    consoleSocket: Socket,
  ) {
    this.console = consoleSocket;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get exitReason(): string | undefined {
    if (!exited(this.child)) return undefined;
    const last = this.stderr.trim().split('\n').pop() ?? '';
    return `qemu exited (${this.child.signalCode ?? `code ${this.child.exitCode}`})${last ? `: ${last}` : ''}`;
  }

  static async start(o: RawQemuOptions): Promise<RawQemu> {
    const spec: VmSpec = {
      name: o.name,
      dir: o.dir,
      image: o.image,
      memoryMiB: o.memoryMiB,
      cpus: o.cpus,
      accel: o.accel,
      // No disk and no network: neither takes part in the serial console.
      network: { allowInternet: false },
      kernelArgs: [`sshvisor.name=${o.name}`],
    };
    const paths: QemuRuntimePaths = { qmpSocket: join(o.dir, 'qmp.sock'), consoleSocket: join(o.dir, 'console.sock'), agentSocket: join(o.dir, 'agent.sock'), pidFile: join(o.dir, 'qemu.pid') };
    const child = track(spawn(o.qemu, buildQemuArgs(spec, paths, { tscKhz: o.tscKhz }), { stdio: ['ignore', 'ignore', 'pipe'] }));
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-4096)));
    let qmp: QmpClient | undefined;
    try {
      const deadline = Date.now() + 15_000;
      while (!(existsSync(paths.qmpSocket) && existsSync(paths.consoleSocket))) {
        if (exited(child)) throw new UserError(`qemu exited at start-up: ${stderr.trim().split('\n').pop() ?? ''}`);
        if (Date.now() > deadline) throw new UserError('qemu made no QMP and console sockets within 15 s');
        await new Promise((r) => setTimeout(r, 10));
      }
      qmp = await QmpClient.connect(paths.qmpSocket);
      const consoleSocket = await connectUnix(paths.consoleSocket);
      const vm = new RawQemu(child, qmp, consoleSocket);
      child.stderr!.on('data', (s: string) => (vm.stderr = (vm.stderr + s).slice(-4096)));
      vm.stderr = stderr;
      consoleSocket.on('error', () => {});
      await qmp.execute('cont');
      return vm;
    } catch (err) {
      qmp?.close();
      child.kill('SIGKILL');
      await closed(child);
      throw err;
    }
  }

  write(text: string): void {
    this.console.write(text);
  }

  async stop(): Promise<void> {
    this.qmp.close();
    this.console.destroy();
    this.child.kill('SIGKILL');
    await closed(this.child);
  }
}

