import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freeLoopbackPort } from '../../src/vm/qemu/free-port.js';
import { testImage } from './test-image.js';
import { qemuProcesses } from './host-listener.js';

const MAIN = resolve(import.meta.dirname, '..', '..', 'src', 'cli', 'main.js');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * A real `sshvisor serve` in a child process with its own data dir, and a
 * real OpenSSH client with keys made for the test. stop() ends the server,
 * then kills anything QEMU left under the data dir, and removes the temp dir.
 */
export class SshvisorServer {
  readonly dir = mkdtempSync(join(tmpdir(), 'sshvisor-e2e-'));
  readonly dataDir = join(this.dir, 'data');
  port = 0;
  /** The --http port, with `{ http: true }`. */
  httpPort = 0;
  log = '';
  private child?: ChildProcess;

  constructor(
    private readonly extraArgs: string[] = [],
    private readonly options: { http?: boolean; imageDir?: string } = {},
  ) {}

  /** http://127.0.0.1:PORT of the HTTP front door. */
  get httpUrl(): string {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  /** The admin token the server made in its data dir. */
  adminToken(): string {
    return readFileSync(join(this.dataDir, 'http-admin-token'), 'utf8').trim();
  }

  async start(): Promise<this> {
    // Another image (e.g. hostile-image.ts) instead of the test image.
    const imageDir = this.options.imageDir ?? resolve((await testImage()).kernel, '..');
    // A restart (after kill9) keeps the ports: clients and known_hosts stay valid.
    this.port ||= await freeLoopbackPort();
    if (this.options.http) this.httpPort ||= await freeLoopbackPort();
    this.log = '';
    mkdirSync(this.dataDir, { recursive: true });
    this.child = spawn(
      process.execPath,
      [
        MAIN, 'serve', '--data-dir', this.dataDir, '--image-dir', imageDir, '--port', String(this.port), '--accel', 'tcg',
        // Whether a new VM boots or is cloned would depend on when the background template is ready: tests that want clones say so.
        ...(this.extraArgs.includes('--templates') ? [] : ['--no-templates']),
        ...(this.options.http ? ['--http', `127.0.0.1:${this.httpPort}`] : []),
        ...this.extraArgs,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const child = this.child;
    child.stderr!.setEncoding('utf8');
    await new Promise<void>((resolveStart, reject) => {
      child.stderr!.on('data', (chunk: string) => {
        this.log += chunk;
        if (this.log.includes('"event":"listening"')) resolveStart();
      });
      child.once('exit', (code) => reject(new Error(`sshvisor serve exited (${code}) before listening:\n${this.log}`)));
    });
    return this;
  }

  /** The pid of the `sshvisor serve` process, while it runs. */
  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  /** The server process has not exited (e.g. crashed). */
  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** A new ed25519 key pair for a test user; returns the private key path. */
  makeKey(name: string): string {
    const path = join(this.dir, `key-${name}`);
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', path], { stdio: 'ignore' });
    return path;
  }

  /** OpenSSH client options that point at this server and trust its host key on first use. */
  sshOptions(key: string): string[] {
    return [
      '-i', key,
      '-o', 'IdentitiesOnly=yes',
      '-o', 'StrictHostKeyChecking=accept-new',
      '-o', `UserKnownHostsFile=${join(this.dir, 'known_hosts')}`,
      '-o', 'BatchMode=yes',
      '-o', 'LogLevel=error',
    ];
  }

  /** Run `ssh [opts] user@server cmd` and collect everything. */
  ssh(user: string, key: string, command: string[] = [], opts: { input?: Buffer | string; sshArgs?: string[]; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
    return runProgram('ssh', [...this.sshOptions(key), '-p', String(this.port), ...(opts.sshArgs ?? []), `${user}@127.0.0.1`, ...command], opts);
  }

  /** Lines of the server's JSON log that have `event`. */
  events(event: string): Array<Record<string, unknown>> {
    return this.log
      .split('\n')
      .filter((l) => l.includes(`"event":"${event}"`))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  async waitForEvent(event: string, count = 1, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.events(event).length < count) {
      if (Date.now() > deadline) throw new Error(`no ${count}x "${event}" in the server log within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** kill -9 the server (no suspend, no cleanup): its VMs are left running for the next start() on the same data dir. */
  kill9(): Promise<void> {
    return this.signal('SIGKILL');
  }

  /** Send the server `signal` and wait for it to exit, without stop()'s cleanup. */
  async signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await exited;
  }

  /** The pid of NAME's QEMU from its pid file, if it has one. */
  qemuPid(name: string): number | undefined {
    try {
      return Number.parseInt(readFileSync(join(this.dataDir, 'vms', name, 'qemu.pid'), 'utf8').trim(), 10);
    } catch {
      return undefined;
    }
  }

  /** End the server; `keepFiles` leaves the data dir for a later server (then call stop() again to clean up). */
  async stop(options: { keepFiles?: boolean } = {}): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    }
    // Whatever happened above, no QEMU of this test outlives it.
    // By pid: the QEMU processes whose command line names this test's data dir.
    for (const q of qemuProcesses(this.dataDir)) {
      try {
        process.kill(q.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    if (!options.keepFiles) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A program's whole output as bytes (what runProgramBytes resolves with). */
export interface RunBytes {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
}

/** Spawn a program, feed it `input`, collect everything as bytes; SIGKILL after `timeoutMs` (default 120 s). */
export function runProgramBytes(file: string, args: string[], opts: { input?: Buffer | string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunBytes> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolveRun({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err) });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/** runProgramBytes, with stdout and stderr as UTF-8 text. */
export async function runProgram(file: string, args: string[], opts: { input?: Buffer | string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  const r = await runProgramBytes(file, args, opts);
  return { ...r, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8') };
}
