/**
 * Running the programs a bench measures (each in its own process group, so
 * nothing it starts outlives the bench) and reading CPU time from /proc.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { UserError } from '../../src/util/errors.js';
import { trackGroup, untrackGroup } from './cleanup.js';

export interface ClientResult {
  /** Wall time from just before spawn to the exit of the program (not of its output streams). */
  ms: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  /** The last 8 KiB of stderr. */
  stderr: string;
}

export interface RunOptions {
  /** 'ignore' (/dev/null), an open fd, or text to write to a pipe. */
  stdin?: 'ignore' | number | { text: string };
  /** 'pipe' collects it (keep it small), 'ignore' is /dev/null, or an open fd. */
  stdout?: 'pipe' | 'ignore' | number;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/**
 * Run `argv` to completion in a process group of its own, timed. If the bench
 * ends meanwhile (error, Ctrl-C) or the timeout passes, the group is killed;
 * a non-zero exit is returned, not thrown.
 */
export function runClient(argv: readonly string[], opts: RunOptions = {}): Promise<ClientResult> {
  const [file, ...args] = argv;
  if (!file) throw new Error('runClient: empty argv');
  const input = typeof opts.stdin === 'object' ? opts.stdin.text : undefined;
  const stdin: 'ignore' | 'pipe' | number = typeof opts.stdin === 'object' ? 'pipe' : opts.stdin ?? 'ignore';
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child: ChildProcess = spawn(file, args, { detached: true, stdio: [stdin, opts.stdout ?? 'ignore', 'pipe'], env: opts.env ?? process.env });
    trackGroup(child);
    let t1 = 0;
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-8192)));
    if (input !== undefined) {
      child.stdin!.on('error', () => {});
      child.stdin!.end(input);
    }
    const timer = setTimeout(() => {
      stderr += `\n(killed after ${opts.timeoutMs} ms)`;
      untrackGroup(child);
    }, opts.timeoutMs ?? 600_000);
    child.once('exit', () => (t1 = performance.now()));
    child.once('error', (err) => {
      clearTimeout(timer);
      untrackGroup(child);
      reject(new Error(`cannot run ${file}: ${err.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      // Whatever the program left running in its group goes with it.
      untrackGroup(child);
      resolve({ ms: (t1 || performance.now()) - t0, code, signal, stdout, stderr });
    });
  });
}

/** Throw (a UserError: the message says it all, no stack), with the end of stderr, unless the program exited 0. */
export function mustSucceed(what: string, r: ClientResult): ClientResult {
  if (r.code === 0) return r;
  const tail = r.stderr.trim().split('\n').slice(-6).join('\n    ');
  throw new UserError(`${what} failed (${r.signal ?? `exit ${r.code}`})${tail ? `:\n    ${tail}` : ''}`);
}

let ticks: number | undefined;

/** Clock ticks per second, the unit of the CPU times in /proc/PID/stat. */
export function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

export interface CpuTimes {
  /** utime + stime of the process itself (all its threads), seconds. */
  self: number;
  /** cutime + cstime: its children (and theirs) that it has waited for, seconds. */
  children: number;
}

/** CPU times of `pid` ('self' for this process), or undefined once it is gone. */
export function cpuTimes(pid: number | 'self'): CpuTimes | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Fields after the ")" that closes the command name start with field 3 (state).
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ').map(Number);
  const t = clockTicks();
  return { self: (f[11]! + f[12]!) / t, children: (f[13]! + f[14]!) / t };
}

/** Child pids of `pid` (Linux 3.5+ with CONFIG_PROC_CHILDREN), or undefined if that is not available. */
export function childPids(pid: number): number[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return undefined;
  }
}

/** Wait until `pid` has no children left (it has reaped them), at most `timeoutMs`. */
export async function waitForNoChildren(pid: number, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const kids = childPids(pid);
    if (kids === undefined) return void (await new Promise((r) => setTimeout(r, 200)));
    if (kids.length === 0 || Date.now() > deadline) return;
    await new Promise((r) => setTimeout(r, 10));
  }
}
