/**
 * Teardown a bench must do however it ends (normal return, a thrown error,
 * Ctrl-C, SIGTERM): kill the processes (and process groups) it started and
 * remove its temp dirs. Everything here is synchronous so it also works from
 * process 'exit'.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UserError } from '../../src/util/errors.js';

const children = new Set<ChildProcess>();
const pids = new Set<number>();
/** Process group ids: leaders spawned with `detached: true`, so their whole tree can be killed at once. */
const groups = new Set<number>();
const dirs = new Set<string>();
const hooks = new Set<() => void>();
let installed = false;
let signalled: NodeJS.Signals | undefined;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

function killGroupNow(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // group already empty
  }
}

function livePids(): number[] {
  const all = [...pids];
  for (const c of children) if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) all.push(c.pid);
  return all;
}

function cleanupNow(): void {
  for (const g of groups) killGroupNow(g);
  for (const pid of livePids()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
  for (const h of hooks) {
    try {
      h();
    } catch {
      // best effort: the other hooks still run
    }
  }
  hooks.clear();
}

function install(): void {
  if (installed) return;
  installed = true;
  process.once('exit', cleanupNow);
  const codes = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;
  for (const [sig, code] of Object.entries(codes)) {
    // `on`, not `once`: while this listener is registered, the driver's own reaper
    // (src/vm/qemu/process-reaper.ts) leaves the signal to us instead of re-raising it.
    process.on(sig as NodeJS.Signals, () => {
      if (signalled) return;
      signalled = sig as NodeJS.Signals;
      process.stderr.write(`\nbench: ${sig}, cleaning up\n`);
      cleanupNow();
      // Stay up until Node has reaped the killed children (at most 2 s), so none is left a zombie.
      const deadline = Date.now() + 2000;
      const poll = (): void => {
        if ((livePids().some(alive) || [...groups].some(groupAlive)) && Date.now() < deadline) setTimeout(poll, 20);
        else process.exit(code);
      };
      poll();
    });
  }
}

/** The signal that is ending the bench, if one is: errors that follow from the teardown are not worth reporting. */
export function interruptedBy(): NodeJS.Signals | undefined {
  return signalled;
}

/** Kill `child` (SIGKILL) if the bench ends while it runs; forgotten once it exits. */
export function trackChild(child: ChildProcess): void {
  install();
  children.add(child);
  child.once('exit', () => children.delete(child));
}

/** Kill this pid if the bench ends before untrackPid(); for processes owned by other code (a Vm). */
export function trackPid(pid: number): void {
  install();
  pids.add(pid);
}

export function untrackPid(pid: number): void {
  pids.delete(pid);
}

/**
 * Kill the whole process group led by `child` (spawn it with `detached: true`)
 * if the bench ends before untrackGroup(): that also gets what the child started
 * itself, e.g. the QEMU under `sshvisor serve` or the `head` under `sh -c`.
 */
export function trackGroup(child: ChildProcess): void {
  install();
  if (child.pid !== undefined) groups.add(child.pid);
}

/** SIGKILL what is left of `child`'s process group (nothing, normally) and forget it, before its id can be reused. */
export function untrackGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  killGroupNow(child.pid);
  groups.delete(child.pid);
}

/**
 * Run `fn` (synchronously) when the bench ends, after the processes are killed,
 * unless it is dropped first; returns the function that drops it.
 */
export function atCleanup(fn: () => void): () => void {
  install();
  hooks.add(fn);
  return () => hooks.delete(fn);
}

/** A fresh private temp dir under os.tmpdir(), removed when the bench ends if not before. */
export function makeTempDir(prefix: string): string {
  install();
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.add(d);
  return d;
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  dirs.delete(dir);
}

/**
 * Run a bench's main: a failure prints one line (plus the stack for bugs)
 * and exits 1; when a signal interrupted it, the signal handler is already
 * tearing down and exits with the signal's code, so wait for that instead.
 */
export async function runBench(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (err) {
    if (interruptedBy()) await new Promise(() => {});
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    if (!(err instanceof UserError)) process.stderr.write(`${(err as Error).stack ?? ''}\n`);
    process.exitCode = 1;
  }
}
