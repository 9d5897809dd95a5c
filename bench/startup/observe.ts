/**
 * What the startup bench reads besides the client's wall time: the server's
 * JSON log (event times), a VM's directory while it comes up (QEMU's pid file,
 * console.log markers), its size on disk, QEMU's memory from smaps_rollup, and
 * the QEMUs of other users of the host (noise).
 */
import { closeSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { GUEST_INIT_MARKER, GUEST_READY_MARKER } from '../../src/image/guest-contract.js';
import type { SshvisorServe } from '../lib/ssh-servers.js';
import { childPids, cpuTimes } from '../lib/proc.js';

export type LogEvent = Record<string, unknown> & { time: number };

/** Events of the server's log with this name, oldest first, that have a numeric `time` (pino's epoch ms). */
export function eventsOf(sv: SshvisorServe, event: string): LogEvent[] {
  return sv.events(event).filter((e): e is LogEvent => typeof e.time === 'number');
}

/** The first `event` at or after `since` (epoch ms) that `match` accepts. */
export function findEvent(sv: SshvisorServe, event: string, since: number, match: (e: LogEvent) => boolean = () => true): LogEvent | undefined {
  return eventsOf(sv, event).find((e) => e.time >= since && match(e));
}

/**
 * The first line of the server's log at or after `since` whose message is
 * `msg` (lines without an `event` field, e.g. AgentConnection's "guest agent
 * connected") and that `match` accepts.
 */
export function findMessage(sv: SshvisorServe, msg: string, since: number, match: (e: LogEvent) => boolean = () => true): LogEvent | undefined {
  const needle = `"msg":${JSON.stringify(msg)}`;
  for (const line of sv.log.split('\n')) {
    if (!line.includes(needle)) continue;
    let e: Record<string, unknown>;
    try {
      e = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (typeof e.time === 'number' && e.time >= since && match(e as LogEvent)) return e as LogEvent;
  }
  return undefined;
}

/**
 * Wait for an `event` (at or after `since`) that `match` accepts; fail early on
 * any of `failOn` for the same match (e.g. vm-suspend-failed) or if the server exits.
 */
export async function waitForEvent(
  sv: SshvisorServe,
  event: string,
  since: number,
  match: (e: LogEvent) => boolean,
  opts: { timeoutMs: number; failOn?: string[]; what: string; vm?: string },
): Promise<LogEvent> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const e = findEvent(sv, event, since, match);
    if (e) return e;
    for (const bad of opts.failOn ?? []) {
      const f = findEvent(sv, bad, since, match);
      if (f) throw new Error(`${opts.what}: the server logged ${bad}: ${JSON.stringify(f)}`);
    }
    if (sv.pid === undefined || !isAlive(sv.pid)) throw new Error(`${opts.what}: sshvisor serve is gone`);
    if (Date.now() > deadline) {
      const vm = opts.vm;
      const tail = sv.log
        .split('\n')
        .filter((l) => l.trim() && (!vm || l.includes(`"vm":"${vm}"`) || l.includes(`"user":"${vm}"`)))
        .slice(-12)
        .join('\n    ');
      throw new Error(`${opts.what}: no "${event}" within ${opts.timeoutMs / 1000} s; server log${vm ? ` for ${vm}` : ''}:\n    ${tail}`);
    }
    await sleep(25);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Console lines a VM prints on its way up, as the guest's init writes them. */
export const CONSOLE_MARKS = {
  init: GUEST_INIT_MARKER,
  identity: 'sshvisor-guest: identity received',
  ready: GUEST_READY_MARKER,
} as const;
export type ConsoleMark = keyof typeof CONSOLE_MARKS;

/**
 * Watches DATA_DIR/vms/NAME while a login brings the VM up, every 10 ms: when
 * QEMU's pid file appears and when console.log (bytes appended after the
 * start) first holds each of CONSOLE_MARKS. Times are epoch ms, so they
 * line up with the server log's.
 */
export class VmDirWatch {
  readonly seen: Partial<Record<ConsoleMark | 'pidFile' | 'restored', number>> = {};
  private readonly timer: NodeJS.Timeout;
  private readonly consoleFile: string;
  private readonly pidFile: string;
  private offset: number;
  private text = '';

  constructor(vmDir: string) {
    this.consoleFile = join(vmDir, 'console.log');
    this.pidFile = join(vmDir, 'qemu.pid');
    this.offset = sizeOf(this.consoleFile);
    // A pid file left from the VM's previous QEMU is not this start's.
    const stalePid = readPid(this.pidFile);
    let pid: number | undefined;
    let loading = false;
    this.timer = setInterval(() => {
      const now = Date.now();
      if (pid === undefined) {
        const p = readPid(this.pidFile);
        if (p !== undefined && p !== stalePid) {
          pid = p;
          this.seen.pidFile = now;
        }
      }
      // A restore reads the state through a `cat` QEMU runs (exec: migration): done when it has exited.
      if (pid !== undefined && this.seen.restored === undefined) {
        const kids = childPids(pid);
        if (kids && kids.length > 0) loading = true;
        else if (kids && loading) this.seen.restored = now;
      }
      this.readConsole(now);
    }, 10);
  }

  private readConsole(now: number): void {
    const size = sizeOf(this.consoleFile);
    if (size < this.offset) this.offset = 0; // rotated
    if (size === this.offset) return;
    const buf = Buffer.alloc(Math.min(size - this.offset, 1 << 20));
    let fd: number;
    try {
      fd = openSync(this.consoleFile, 'r');
    } catch {
      return;
    }
    try {
      const n = readSync(fd, buf, 0, buf.length, this.offset);
      this.offset += n;
      this.text = (this.text + buf.subarray(0, n).toString('latin1')).slice(-65536);
    } finally {
      closeSync(fd);
    }
    for (const [mark, line] of Object.entries(CONSOLE_MARKS) as Array<[ConsoleMark, string]>) {
      if (this.seen[mark] === undefined && this.text.includes(line)) this.seen[mark] = now;
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.readConsole(Date.now());
  }
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** Space a file takes on disk (allocated blocks) and its apparent size, in bytes; undefined if it does not exist. */
export interface FileSize {
  allocated: number;
  apparent: number;
}

export function fileSize(path: string): FileSize | undefined {
  try {
    const st = statSync(path);
    return { allocated: st.blocks * 512, apparent: st.size };
  } catch {
    return undefined;
  }
}

export interface DirUsage {
  /** `du -s -B1 DIR`: allocated bytes of everything in it. */
  du: number;
  /** Every file directly in it (allocated and apparent bytes). */
  files: Record<string, FileSize>;
}

export function dirUsage(dir: string): DirUsage {
  const du = Number(execFileSync('du', ['-s', '-B1', dir], { encoding: 'utf8' }).split(/\s/)[0]);
  const files: Record<string, FileSize> = {};
  for (const f of readdirSync(dir)) {
    const s = fileSize(join(dir, f));
    if (s) files[f] = s;
  }
  return { du, files };
}

/**
 * A QEMU's memory from /proc/PID/smaps, in bytes, by what it holds: the guest
 * RAM mapping (the file `ramSuffix` names: the VM's own ram file, shared, or
 * the template's, private: copy-on-write pages count as its Anonymous), the
 * TCG translation cache (anonymous executable mappings), and everything else
 * (QEMU's heap, libraries, ...).
 */
export type MemParts = Record<'guestRam' | 'tcgCode' | 'other', { rss: number; pss: number; anon: number }>;

export function smapsParts(pid: number, ramSuffix = '/ram'): MemParts {
  const parts: MemParts = { guestRam: { rss: 0, pss: 0, anon: 0 }, tcgCode: { rss: 0, pss: 0, anon: 0 }, other: { rss: 0, pss: 0, anon: 0 } };
  let cur = parts.other;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (head) {
      const [, perms, path] = head;
      cur = path!.endsWith(ramSuffix) ? parts.guestRam : (!path && perms!.includes('x')) || path!.includes('tcg-jit') ? parts.tcgCode : parts.other;
      continue;
    }
    const m = /^(Rss|Pss|Anonymous):\s+(\d+) kB/.exec(line);
    if (m) cur[m[1] === 'Rss' ? 'rss' : m[1] === 'Pss' ? 'pss' : 'anon'] += Number(m[2]) * 1024;
  }
  return parts;
}

/** The fields of /proc/PID/smaps_rollup, in bytes (kB in the file). */
export type MemRollup = Record<string, number>;

export function smapsRollup(pid: number): MemRollup {
  const out: MemRollup = {};
  for (const line of readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').split('\n')) {
    const m = /^(\w+):\s+(\d+) kB/.exec(line);
    if (m) out[m[1]!] = Number(m[2]) * 1024;
  }
  return out;
}

/** Every running qemu-system-* process, with its command line. */
export function qemuProcesses(): Array<{ pid: number; cmdline: string }> {
  const out: Array<{ pid: number; cmdline: string }> = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'latin1');
      if (/qemu-system-/.test(cmdline.split('\0')[0] ?? '')) out.push({ pid: Number(name), cmdline });
    } catch {
      // gone
    }
  }
  return out;
}

/**
 * QEMUs that are not ours (their command line does not name our temp dir):
 * someone else's VMs on the same cores. Sampled every 2 s: how many, and the
 * CPU time they used while the bench ran.
 */
export class ForeignQemuMonitor {
  private readonly cpu = new Map<number, { first: number; last: number }>();
  private readonly timer: NodeJS.Timeout;
  private readonly startedAt = Date.now();
  maxCount = 0;
  readonly atStart: number;

  constructor(private readonly ourDir: string) {
    this.atStart = this.sample(true);
    this.timer = setInterval(() => this.sample(false), 2000);
    this.timer.unref();
  }

  /** Count the foreign QEMUs now and record their CPU time; one that appears later used all of its during the bench. */
  sample(initial = false): number {
    const foreign = qemuProcesses().filter((q) => !q.cmdline.includes(this.ourDir));
    for (const { pid } of foreign) {
      const t = cpuTimes(pid);
      if (!t) continue;
      const prev = this.cpu.get(pid);
      this.cpu.set(pid, { first: prev?.first ?? (initial ? t.self : 0), last: t.self });
    }
    this.maxCount = Math.max(this.maxCount, foreign.length);
    return foreign.length;
  }

  stop(): { atStart: number; max: number; cpuSeconds: number; wallSeconds: number } {
    this.sample(false);
    clearInterval(this.timer);
    let cpuSeconds = 0;
    for (const { first, last } of this.cpu.values()) cpuSeconds += last - first;
    return { atStart: this.atStart, max: this.maxCount, cpuSeconds, wallSeconds: (Date.now() - this.startedAt) / 1000 };
  }
}
