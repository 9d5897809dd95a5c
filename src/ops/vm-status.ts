import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { GuestImage } from '../image/image.js';
import type { VmRuntime } from '../manager/vm-manager.js';
import { snapshotTakenAt } from '../manager/snapshot-files.js';
import type { RestartInfo } from '../manager/restart-policy.js';
import type { OwnerKey, VmRecord } from '../store/store.js';
import { isValidVmName } from '../vm/vm-name.js';

/**
 * What a VM is doing, gathered without touching it: the manager's view if it
 * runs, the files in DATA_DIR/vms/NAME (a snapshot means suspended), the
 * store's record (boots, suspends, the last exit) and the console history.
 * Reading a status never boots or resumes anything.
 */

export type VmStateName = 'running' | 'hung' | 'starting' | 'stopping' | 'suspended' | 'stopped' | 'crashed';

export interface VmStatusReport {
  name: string;
  state: VmStateName;
  /** The VM's image, from the catalogue (`sshvisor image ls`). */
  image: string;
  /** e.g. "Linux 6.1.0-28-cloud-amd64" (the kernel release from the image manifest). */
  kernel: string;
  vcpus: number;
  memoryMiB: number;
  /** The VM's disk size: its own writes for an image VM (copy-on-write over the image), all of /root for the default image. */
  diskMiB: number;
  /** The hypervisor process, while running. */
  pid: number | null;
  /** When this run started (boot or resume), while running. */
  startedAt: number | null;
  uptimeSeconds: number | null;
  /** This run was resumed from a snapshot (not booted). */
  resumedThisRun: boolean;
  /** CPU time the VM's hypervisor process has used (user + system), while running. */
  cpuSeconds: number | null;
  /** Sessions holding the VM up (shell, exec, sftp, forwards, +console). */
  sessions: number;
  /** Console viewers attached (+watch, +console). */
  consoleViewers: number;
  /** Since when it is suspended (the snapshot's time). */
  suspendedSince: number | null;
  owners: string[];
  boots: number;
  lastBootAt: number | null;
  suspends: number;
  lastSuspendAt: number | null;
  resumes: number;
  lastResumeAt: number | null;
  lastExit: { reason: string; detail: string; at: number | null } | null;
  /** The last console lines, control characters removed. */
  console: string[];
  /** While hung: since when it has not answered, and what does not. */
  hung: { since: number; reason: string } | null;
  /** Under --restart on-failure: restarts in the current window, a pending one, or the crash-loop verdict. */
  restart: { policy: string; restarts: number; pendingAt: number | null; gaveUp: string | null } | null;
}

export interface StatusSources {
  dataDir: string;
  /** Describes the kernel every VM runs (see describeImage). */
  kernel: string;
  /** What a VM without a recorded shape (from before shapes were recorded) has: the server's defaults. */
  defaults: { image: string; memoryMiB: number; cpus: number; diskMiB: number };
  manager: { inspect(name: string): VmRuntime | undefined; names(): string[]; restartInfo?(name: string): RestartInfo | undefined };
  store: { getVm(name: string): VmRecord | undefined; listVms(): VmRecord[]; ownersOf(name: string): OwnerKey[] };
  console: {
    history(name: string, opts: { lines?: number; maxBytes?: number }): Buffer;
    /** Viewers attached to the name's console now. */
    viewers(name: string): number;
  };
  now?: () => number;
  /** CPU seconds used by a process (default: /proc/PID/stat). */
  cpuSeconds?: (pid: number) => number | undefined;
}

/** Exit reasons that mean the VM ended against its will. */
const CRASH_REASONS = new Set(['panic', 'crashed']);

export function describeImage(image: GuestImage): string {
  const release = image.manifest?.kernel.release;
  if (release) return `Linux ${release}`;
  return `custom kernel ${basename(image.kernel)}`;
}

const vmDir = (dataDir: string, name: string): string => join(dataDir, 'vms', name);

/** Whether sshvisor knows `name` at all: running, on disk, or in the store. */
export function isKnownVm(src: StatusSources, name: string): boolean {
  return (
    isValidVmName(name) &&
    (src.manager.inspect(name) !== undefined ||
      src.store.getVm(name) !== undefined ||
      src.store.ownersOf(name).length > 0 ||
      existsSync(vmDir(src.dataDir, name)))
  );
}

/** Every VM name known to the manager, the store or the data dir, sorted. */
export function listVmNames(src: StatusSources): string[] {
  const names = new Set<string>(src.manager.names());
  for (const r of src.store.listVms()) names.add(r.name);
  try {
    for (const d of readdirSync(join(src.dataDir, 'vms'))) if (isValidVmName(d)) names.add(d);
  } catch {
    // No VMs directory yet.
  }
  return [...names].sort();
}

export function collectStatus(src: StatusSources, name: string, opts: { consoleLines?: number } = {}): VmStatusReport {
  const now = (src.now ?? Date.now)();
  const runtime = src.manager.inspect(name);
  const record = src.store.getVm(name);
  const takenAt = runtime ? undefined : snapshotTakenAt(vmDir(src.dataDir, name));
  const live = runtime && runtime.state !== 'exited';
  let state: VmStateName;
  if (live) {
    state = runtime.state === 'running' || runtime.state === 'paused' ? (runtime.hung ? 'hung' : 'running') : runtime.state === 'stopping' ? 'stopping' : 'starting';
  } else if (takenAt !== undefined) {
    state = 'suspended';
  } else if (record?.lastExitReason && CRASH_REASONS.has(record.lastExitReason)) {
    state = 'crashed';
  } else {
    state = 'stopped';
  }
  const pid = live ? (runtime.pid ?? null) : null;
  const startedAt = live ? (runtime.startedAt ?? null) : null;
  const lines = opts.consoleLines ?? 10;
  const restart = src.manager.restartInfo?.(name);
  const history = lines > 0 ? src.console.history(name, { lines, maxBytes: 64 * 1024 }) : Buffer.alloc(0);
  // No recorded shape: a VM from before shapes were recorded (the default image's), or a name only claimed, with no VM yet.
  const shape = record?.shape ?? { ...src.defaults, image: existsSync(vmDir(src.dataDir, name)) || live ? 'default' : '-' };
  return {
    name,
    state,
    image: shape.image,
    kernel: src.kernel,
    vcpus: shape.cpus,
    memoryMiB: shape.memoryMiB,
    diskMiB: shape.diskMiB,
    pid,
    startedAt,
    uptimeSeconds: startedAt === null ? null : Math.max(0, Math.floor((now - startedAt) / 1000)),
    resumedThisRun: !!live && runtime.resumedFrom !== undefined,
    cpuSeconds: pid === null ? null : ((src.cpuSeconds ?? procCpuSeconds)(pid) ?? null),
    sessions: runtime?.sessions ?? 0,
    consoleViewers: src.console.viewers(name),
    suspendedSince: takenAt ?? null,
    owners: src.store.ownersOf(name).map((o) => o.fingerprint),
    boots: record?.boots ?? 0,
    lastBootAt: record?.lastBootAt ?? null,
    suspends: record?.suspends ?? 0,
    lastSuspendAt: record?.lastSuspendAt ?? takenAt ?? null,
    resumes: record?.resumes ?? 0,
    lastResumeAt: record?.lastResumeAt ?? null,
    lastExit: record?.lastExitReason ? { reason: record.lastExitReason, detail: record.lastExitDetail ?? '', at: record.lastExitAt } : null,
    console: consoleLines(history).slice(-lines),
    hung: live && runtime.hung ? { ...runtime.hung } : null,
    restart: restart ? { policy: restart.policy, restarts: restart.restarts, pendingAt: restart.pendingAt ?? null, gaveUp: live ? null : (restart.gaveUp ?? null) } : null,
  };
}

/** USER_HZ: what /proc/PID/stat counts in; 100 on every Linux architecture sshvisor runs on. */
const CLOCK_TICKS = 100;

/** utime + stime of a process from /proc/PID/stat, in seconds; undefined if it is gone. */
export function procCpuSeconds(pid: number): number | undefined {
  try {
    return parseProcStatCpu(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Fields 14 and 15 of /proc/PID/stat, counted after the ")" that ends the command name (which may hold spaces). */
export function parseProcStatCpu(stat: string): number | undefined {
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state): utime is field 14, stime 15.
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return undefined;
  return (utime + stime) / CLOCK_TICKS;
}

/**
 * Console bytes as printable lines: escape sequences and control characters
 * removed, and a line redrawn with \r shows what a terminal would (its last
 * text).
 */
export function consoleLines(bytes: Buffer): string[] {
  const lines = bytes.toString('utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map(printable);
}

function printable(line: string): string {
  const noEscapes = line
    // eslint-disable-next-line no-control-regex
    .replace(/\x1b\[[0-?]*[ -/]*[@-~]/g, '')
    // eslint-disable-next-line no-control-regex
    .replace(/\x1b\][^\x07\x1b]*(\x07|\x1b\\)?/g, '')
    // eslint-disable-next-line no-control-regex
    .replace(/\x1b[@-_]?/g, '');
  const segments = noEscapes.split('\r').filter((s) => s !== '');
  const last = segments[segments.length - 1] ?? '';
  return (
    last
      .replace(/\t/g, ' ')
      // eslint-disable-next-line no-control-regex
      .replace(/[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]/g, '')
      .trimEnd()
  );
}

/** 45s, 2m 05s, 3h 02m, 4d 03h. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const pad = (n: number): string => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d ${pad(Math.floor((s % 86400) / 3600))}h`;
}

export const isoTime = (ms: number): string => `${new Date(ms).toISOString().slice(0, 19)}Z`;

export interface FormatOptions {
  /** ANSI colour (a terminal on the other end). */
  color?: boolean;
  /** Line ending: "\r\n" for a pty. */
  eol?: string;
  now?: () => number;
}

const STATE_COLOR: Record<VmStateName, string> = {
  running: '32',
  hung: '1;33',
  starting: '36',
  stopping: '36',
  suspended: '33',
  stopped: '2',
  crashed: '1;31',
};

export function colorState(state: VmStateName, color: boolean): string {
  return color ? `\x1b[${STATE_COLOR[state]}m${state}\x1b[0m` : state;
}

/** The status report as a few aligned lines for a person. */
export function formatStatus(r: VmStatusReport, opts: FormatOptions = {}): string {
  const now = (opts.now ?? Date.now)();
  const eol = opts.eol ?? '\n';
  const color = opts.color ?? false;
  const plural = (n: number, noun: string): string => `${n} ${noun}${n === 1 ? '' : 's'}`;
  const when = (ms: number | null, count: string): string =>
    ms === null ? 'never' : `${isoTime(ms)} (${formatDuration((now - ms) / 1000)} ago; ${count})`;
  const rows: [string, string][] = [['state', colorState(r.state, color)]];
  if (r.suspendedSince !== null) rows[0]![1] += ` since ${isoTime(r.suspendedSince)} (${formatDuration((now - r.suspendedSince) / 1000)} ago)`;
  rows.push(['image', `${r.image} (${r.kernel})`]);
  if (r.uptimeSeconds !== null) {
    rows.push(['uptime', `${formatDuration(r.uptimeSeconds)}${r.startedAt === null ? '' : ` (${r.resumedThisRun ? 'resumed' : 'started'} ${isoTime(r.startedAt)})`}`]);
  } else {
    rows.push(['uptime', '-']);
  }
  rows.push(['vCPUs', String(r.vcpus)]);
  rows.push(['memory', `${r.memoryMiB} MiB`]);
  rows.push(['disk', `${r.diskMiB} MiB`]);
  rows.push(['CPU time', r.cpuSeconds === null ? '-' : `${r.cpuSeconds.toFixed(2)} s`]);
  rows.push(['sessions', `${r.sessions}${r.consoleViewers > 0 ? ` (and ${r.consoleViewers} console viewer${r.consoleViewers === 1 ? '' : 's'})` : ''}`]);
  rows.push(['booted', when(r.lastBootAt, plural(r.boots, 'boot'))]);
  rows.push(['suspended', when(r.lastSuspendAt, plural(r.suspends, 'time'))]);
  rows.push(['resumed', when(r.lastResumeAt, plural(r.resumes, 'time'))]);
  rows.push(['last exit', r.lastExit ? describeExit(r.lastExit) : 'none']);
  if (r.hung) rows.push(['health', `hung: ${r.hung.reason} (since ${isoTime(r.hung.since)})`]);
  if (r.restart) rows.push(['restarts', describeRestart(r.restart, now)]);
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  const bold = (s: string): string => (color ? `\x1b[1m${s}\x1b[0m` : s);
  const out = [bold(r.name), ...rows.map(([k, v]) => `  ${k.padEnd(width)}${v}`)];
  out.push(`  ${r.console.length > 0 ? `last ${r.console.length} console line${r.console.length === 1 ? '' : 's'}:` : 'console: nothing captured yet'}`);
  for (const line of r.console) out.push(`    ${line}`);
  return out.join(eol) + eol;
}

/** "1 in the current window (on-failure)", "... restarting in 4 s", or the crash-loop verdict. */
function describeRestart(r: NonNullable<VmStatusReport['restart']>, now: number): string {
  if (r.gaveUp) return r.gaveUp;
  const base = `restarts=${r.restarts} (policy ${r.policy})`;
  return r.pendingAt === null ? base : `${base}; restarting in ${Math.max(0, Math.ceil((r.pendingAt - now) / 1000))} s`;
}

/** "guest kernel panic, 2026-...Z"; the reason is added when the detail does not already say it. */
function describeExit(exit: NonNullable<VmStatusReport['lastExit']>): string {
  const what = !exit.detail ? exit.reason : exit.detail.includes(exit.reason) ? exit.detail : `${exit.detail} (${exit.reason})`;
  return exit.at === null ? what : `${what}, ${isoTime(exit.at)}`;
}

/** The same report as JSON: times as ISO 8601 strings, durations in seconds. */
export function statusJson(r: VmStatusReport): Record<string, unknown> {
  const t = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
  return {
    name: r.name,
    state: r.state,
    image: r.image,
    kernel: r.kernel,
    vcpus: r.vcpus,
    memoryMiB: r.memoryMiB,
    diskMiB: r.diskMiB,
    pid: r.pid,
    startedAt: t(r.startedAt),
    uptimeSeconds: r.uptimeSeconds,
    resumedThisRun: r.resumedThisRun,
    cpuSeconds: r.cpuSeconds,
    sessions: r.sessions,
    consoleViewers: r.consoleViewers,
    suspendedSince: t(r.suspendedSince),
    owners: r.owners,
    boots: r.boots,
    lastBootAt: t(r.lastBootAt),
    suspends: r.suspends,
    lastSuspendAt: t(r.lastSuspendAt),
    resumes: r.resumes,
    lastResumeAt: t(r.lastResumeAt),
    lastExit: r.lastExit && { reason: r.lastExit.reason, detail: r.lastExit.detail, at: t(r.lastExit.at) },
    console: r.console,
    hung: r.hung && { since: t(r.hung.since), reason: r.hung.reason },
    restart: r.restart && { ...r.restart, pendingAt: t(r.restart.pendingAt) },
  };
}

/** `SHA256:AbCdEfGh` (+N when a name has more owners), or "-". */
export function shortOwner(owners: string[]): string {
  if (owners.length === 0) return '-';
  const first = owners[0]!.replace(/^(SHA256:.{8}).*$/, '$1');
  return owners.length > 1 ? `${first} +${owners.length - 1}` : first;
}

export interface TableOptions extends FormatOptions {
  /** Terminal width: the last column is cut to fit. */
  columns?: number;
}

/** The `ls` table: one row per VM, aligned; the state coloured on a terminal. */
export function formatTable(reports: VmStatusReport[], opts: TableOptions = {}): string {
  const eol = opts.eol ?? '\n';
  const color = opts.color ?? false;
  const header = ['NAME', 'OWNER', 'STATE', 'IMAGE', 'SHAPE', 'UPTIME', 'SESSIONS', 'LAST CONSOLE LINE'];
  const rows = reports.map((r) => {
    const up = r.uptimeSeconds === null ? '-' : formatDuration(r.uptimeSeconds);
    const shape = `${r.vcpus}cpu/${r.memoryMiB}M/${r.diskMiB}M`;
    return { cells: [r.name, shortOwner(r.owners), r.state, r.image, shape, up, String(r.sessions), r.console[r.console.length - 1] ?? ''], state: r.state };
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r.cells[i]!.length)));
  const line = (cells: string[], state?: VmStateName): string => {
    const fixed = cells.slice(0, -1).map((c, i) => {
      const padded = c.padEnd(widths[i]!);
      return i === 2 && state && color ? padded.replace(state, colorState(state, true)) : padded;
    });
    const prefixWidth = widths.slice(0, -1).reduce((a, w) => a + w + 2, 0);
    let last = cells[cells.length - 1]!;
    const room = (opts.columns ?? 0) - prefixWidth;
    if (opts.columns && room > 0 && last.length > room) last = `${last.slice(0, Math.max(0, room - 3))}...`;
    return `${fixed.join('  ')}  ${last}`.trimEnd();
  };
  const head = line(header);
  const out = [color ? `\x1b[1m${head}\x1b[0m` : head, ...rows.map((r) => line(r.cells, r.state))];
  return out.join(eol) + eol;
}
