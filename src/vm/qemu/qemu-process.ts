import { spawn, type StdioOptions } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import type { VmSpec } from '../driver.js';
import { killAllOnExit } from './process-reaper.js';
import { buildQemuArgs, type QemuRuntimePaths } from './qemu-args.js';
import { createPrivateFile, openDisk, prepareJail } from './qemu-jail.js';
import type { VmUser } from './vm-user.js';

/**
 * A QEMU process as QemuVm sees it: either a child this gateway spawned, or
 * one an earlier gateway process spawned and this one took over (adopted),
 * whose exit can only be noticed by watching its pid.
 */
export interface QemuProcess {
  readonly pid: number | undefined;
  /** Not our child: the exit status is unknown when it ends. */
  readonly adopted: boolean;
  /** The pipe on QEMU's fd 3 when spawned with one there (a restore's incoming state). */
  readonly incoming?: Writable;
  kill(signal: NodeJS.Signals): void;
  onExit(listener: (code: number | null, signal: NodeJS.Signals | null) => void): void;
}

export interface SpawnQemuOptions {
  /** QEMU's descriptors: files, not pipes, for stdout and stderr (a pipe would break, EPIPE, the moment the gateway dies). */
  stdio: StdioOptions;
  /**
   * Run QEMU in a session of its own, outside the reaper: it survives the
   * gateway process (a crash, a kill -9) and a later gateway adopts it.
   * Without it, QEMU dies with the Node process (tests, library use).
   */
  survivesGateway: boolean;
}

export function spawnQemu(binary: string, args: string[], opts: SpawnQemuOptions): QemuProcess {
  const c = spawn(binary, args, { stdio: opts.stdio, detached: opts.survivesGateway });
  if (opts.survivesGateway) c.unref();
  else killAllOnExit(c);
  return {
    pid: c.pid,
    adopted: false,
    incoming: (c.stdio[3] as Writable | null) ?? undefined,
    kill: (signal) => void c.kill(signal),
    onExit: (listener) => {
      c.once('exit', listener);
      c.once('error', () => listener(null, null));
    },
  };
}

export interface LaunchOptions {
  qemuBinary: string;
  tscKhz?: number;
  /** Drop to this user in a chroot (qemu-jail.ts). */
  user?: VmUser;
  /** QEMU's stderr (appended). */
  logFile: string;
  survivesGateway: boolean;
}

/** Make the VM's jail and files ready, and start its QEMU (paused: -S) with the descriptors it inherits. */
export function launchQemu(spec: VmSpec, paths: QemuRuntimePaths, o: LaunchOptions): QemuProcess {
  const jail = prepareJail(spec.dir, o.user, spec.network.allowInternet);
  if (spec.memoryFile && !spec.memoryPrivate) createPrivateFile(spec.memoryFile);
  const drop = o.user && jail.chroot ? { uid: o.user.uid, gid: o.user.gid, chroot: jail.chroot } : undefined;
  // Inherited descriptors: 3 a restore's incoming state (migration.ts INCOMING_FD), 4 the disk, 5 its backing image.
  const fds = [openSync(o.logFile, 'a', 0o600)];
  try {
    if (spec.disk) fds.push(openDisk(spec.disk, spec.name));
    if (spec.disk && spec.diskBacking) fds.push(openDisk(spec.diskBacking, spec.name, 'r'));
    const diskFd = spec.disk ? 4 : undefined;
    const backingFd = spec.disk && spec.diskBacking ? 5 : undefined;
    const args = buildQemuArgs(spec, paths, { tscKhz: o.tscKhz, drop, diskFd, backingFd });
    const stdio: StdioOptions = ['ignore', 'ignore', fds[0]!, spec.restoreFrom ? 'pipe' : 'ignore', ...fds.slice(1)];
    return spawnQemu(o.qemuBinary, args, { stdio, survivesGateway: o.survivesGateway });
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

const WATCH_INTERVAL_MS = 250;

/** Take over a running QEMU that is not our child; its end is noticed by polling /proc. */
export function adoptQemu(pid: number): QemuProcess {
  const listeners: Array<(code: number | null, signal: NodeJS.Signals | null) => void> = [];
  let ended = false;
  const timer = setInterval(() => {
    if (isAlive(pid)) return;
    ended = true;
    clearInterval(timer);
    for (const l of listeners) l(null, null);
  }, WATCH_INTERVAL_MS);
  timer.unref();
  return {
    pid,
    adopted: true,
    kill: (signal) => {
      if (ended) return;
      try {
        process.kill(pid, signal);
      } catch {
        // Already gone: the watcher reports it.
      }
    },
    onExit: (listener) => void listeners.push(listener),
  };
}

/**
 * Whether `pid` is a live process (not a zombie: a QEMU orphaned by a killed
 * gateway is reparented to a process that may never reap it).
 */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state follows the command name, which is in parentheses and may itself contain any character.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X' && state !== '';
  } catch {
    return false;
  }
}

/**
 * The pid in `pidFile` if that process is alive and is the QEMU that serves
 * `qmpSocket` (its command line names it): a pid file left by a QEMU that
 * died may by now name an unrelated process.
 */
export function findLiveQemu(pidFile: string, qmpSocket: string): number | undefined {
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(pidFile, 'utf8').trim(), 10);
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 1 || !isAlive(pid)) return undefined;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.some((a) => a.includes(qmpSocket)) ? pid : undefined;
  } catch {
    return undefined;
  }
}
