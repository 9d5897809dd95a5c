/**
 * Teardown a bench must do however it ends (normal return, a thrown error,
 * Ctrl-C, SIGTERM): kill the QEMU processes it started and remove its temp
 * dirs. Everything here is synchronous so it also works from process 'exit'.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const children = new Set<ChildProcess>();
const pids = new Set<number>();
const dirs = new Set<string>();
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

function livePids(): number[] {
  const all = [...pids];
  for (const c of children) if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) all.push(c.pid);
  return all;
}

function cleanupNow(): void {
  for (const pid of livePids()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
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
        if (livePids().some(alive) && Date.now() < deadline) setTimeout(poll, 20);
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
