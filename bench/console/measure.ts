/**
 * What the console bench measures with: the guest command that floods the
 * serial console between two unique marker lines, a meter that counts the
 * bytes between those lines in one received byte stream, and per-thread
 * CPU time read from /proc.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { clockTicks } from '../lib/proc.js';

/** 79 characters and the newline: every payload line is 80 bytes in the guest (81 on the wire, see wireBytes). */
const LINE = 'x'.repeat(79);

export interface Markers {
  start: string;
  end: string;
}

export function markersFor(nonce: string): Markers {
  return { start: `CB-${nonce}-S`, end: `CB-${nonce}-E` };
}

/**
 * A shell command (busybox sh) that writes `bytes` of 80-byte lines to the
 * serial console as fast as the guest can, between a start and an end
 * line. The markers are put together by the shell from `$m`, so the command
 * line itself, echoed by the console's shell when typed into it (the raw
 * baseline), never contains them.
 */
export function guestCommand(nonce: string, bytes: number): string {
  return `m=${nonce}; { echo "CB-$m-S"; yes ${LINE} | head -c ${bytes}; echo; echo "CB-$m-E"; } > /dev/ttyS0`;
}

/**
 * Bytes the payload takes on the wire: the tty's ONLCR turns each of its
 * newlines into \r\n, and the `echo` after it ends the last, partial line
 * with another \r\n.
 */
export function wireBytes(payloadBytes: number): number {
  return payloadBytes + Math.floor(payloadBytes / (LINE.length + 1)) + 2;
}

const SKIP_NOTICE = /\[sshvisor: (\d+) bytes skipped\]/g;
/** Enough of the previous bytes for a marker or a skip note split across reads. */
const CARRY_BYTES = 64;
const MAX_FOREIGN = 5;

/**
 * Counts the bytes of one received console stream between the start
 * marker's line and the end marker, timing both by when the chunk holding
 * them arrived. Markers split across chunks are found too.
 */
export class PayloadMeter {
  state: 'waiting' | 'start-line' | 'counting' | 'done' = 'waiting';
  /** performance.now() of the chunk holding the start marker / the end marker. */
  startAt = 0;
  endAt = 0;
  /** Bytes from the line after the start marker up to the end marker: the payload as received. */
  bytes = 0;
  /** Chunks (reads) that carried payload; bytes / chunks says how much each read got. */
  chunks = 0;
  /** Bytes the gateway skipped for this viewer ("[sshvisor: N bytes skipped]" notes inside the payload). */
  skipped = 0;
  /** Lines inside the payload that are not payload (a kernel message, a skip note): the first few, cut short. */
  readonly foreign: string[] = [];
  private capturing: string | undefined;
  lastDataAt = performance.now();
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private readonly start: Buffer;
  private readonly end: Buffer;
  /** Absolute offset of the next byte fed, and of the payload's first byte. */
  private pos = 0;
  private payloadFrom = 0;
  /** The last bytes fed (a marker's length minus one), for markers split across chunks. */
  private carry = Buffer.alloc(0);

  constructor(markers: Markers) {
    this.start = Buffer.from(markers.start, 'latin1');
    this.end = Buffer.from(markers.end, 'latin1');
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  feed(chunk: Buffer): void {
    if (this.state === 'done' || chunk.length === 0) return;
    const now = performance.now();
    this.lastDataAt = now;
    const at = this.pos;
    let from = 0;
    if (this.state === 'waiting') {
      const i = this.find(this.start, chunk, at);
      if (i >= 0) {
        this.state = 'start-line';
        this.startAt = now;
        from = Math.max(0, i + this.start.length - at);
      }
    }
    if (this.state === 'start-line') {
      const nl = chunk.indexOf(0x0a, from);
      if (nl >= 0) {
        this.state = 'counting';
        this.payloadFrom = at + nl + 1;
        from = nl + 1;
      }
    }
    if (this.state === 'counting') {
      const j = this.find(this.end, chunk, at);
      const stop = j >= 0 ? j - at : chunk.length;
      if (stop > from || j < 0) this.chunks++;
      this.countSkips(chunk, from);
      if (this.foreign.length < MAX_FOREIGN || this.capturing !== undefined) this.noteForeign(chunk, from, stop);
      if (j >= 0) {
        // What was taken for a foreign line may be the end marker's beginning, split across reads.
        if (this.capturing !== undefined && this.end.toString('latin1').startsWith(this.capturing)) this.capturing = undefined;
        this.endForeign();
        this.bytes = j - this.payloadFrom;
        this.endAt = now;
        this.state = 'done';
        this.resolveDone();
      } else {
        this.bytes = at + chunk.length - this.payloadFrom;
      }
    }
    this.pos += chunk.length;
    this.keepCarry(chunk);
  }

  get seconds(): number {
    return (this.endAt - this.startAt) / 1000;
  }

  /** Absolute offset of `marker` in the stream, starting in the carry or in `chunk` (at absolute `at`), or -1. */
  private find(marker: Buffer, chunk: Buffer, at: number): number {
    if (this.carry.length > 0) {
      const seam = Buffer.concat([this.carry, chunk.subarray(0, marker.length - 1)]);
      const k = seam.indexOf(marker);
      if (k >= 0) return at - this.carry.length + k;
    }
    const i = chunk.indexOf(marker);
    return i >= 0 ? at + i : -1;
  }

  private keepCarry(chunk: Buffer): void {
    const keep = CARRY_BYTES;
    // A copy: the carry must not keep a large chunk alive.
    this.carry = chunk.length >= keep ? Buffer.from(chunk.subarray(chunk.length - keep)) : Buffer.concat([this.carry, chunk]).subarray(-keep);
  }

  /** Remember the first few lines in chunk[from, to) holding anything but the payload's x, \r and \n. */
  private noteForeign(chunk: Buffer, from: number, to: number): void {
    let i = from;
    if (this.capturing !== undefined) {
      // The rest of a foreign line that began in an earlier chunk.
      const nl = chunk.indexOf(0x0a, from);
      const end = nl < 0 || nl >= to ? to : nl;
      this.capturing += chunk.toString('latin1', from, end);
      if (end === to) return this.capturing.length > 200 ? this.endForeign() : undefined;
      this.endForeign();
      i = end + 1;
    }
    for (; i < to && this.foreign.length < MAX_FOREIGN; i++) {
      const b = chunk[i];
      if (b === 0x78 || b === 0x0d || b === 0x0a) continue;
      const lineStart = Math.max(from, chunk.lastIndexOf(0x0a, i) + 1);
      const nl = chunk.indexOf(0x0a, i);
      this.capturing = chunk.toString('latin1', lineStart, nl < 0 || nl >= to ? to : nl);
      if (nl < 0 || nl >= to) return;
      this.endForeign();
      i = nl;
    }
  }

  private endForeign(): void {
    // eslint-disable-next-line no-control-regex
    if (this.capturing !== undefined) this.foreign.push(this.capturing.replace(/[\x00-\x1f]/g, '').slice(0, 200));
    this.capturing = undefined;
  }

  /** Skip notes ending in this chunk (after payload offset `from`); one that began in the carry is found too. */
  private countSkips(chunk: Buffer, from: number): void {
    if (chunk.indexOf(0x5d /* ] */, from) < 0) return;
    const lead = this.carry.subarray(Math.max(0, this.carry.length - Math.max(0, this.pos - this.payloadFrom)));
    const text = lead.toString('latin1') + chunk.toString('latin1', from);
    for (const m of text.matchAll(SKIP_NOTICE)) {
      // A note that ended inside the carry was counted with the chunk it ended in.
      if (m.index + m[0].length > lead.length) this.skipped += Number(m[1]);
    }
  }
}

/** Seconds of CPU (user + system) per thread of `pid`, by thread id; empty once it is gone. */
export function threadCpu(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  const ticks = clockTicks();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), (Number(f[11]) + Number(f[12])) / ticks);
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

export interface ThreadUse {
  tid: number;
  seconds: number;
  /** Share of one core over the interval. */
  percentOfWall: number;
}

export interface CpuUse {
  /** CPU seconds over the interval, all threads. */
  seconds: number;
  percentOfWall: number;
  /** The main thread (tid = pid): QEMU's main loop (chardev watches, timers, QMP). */
  main?: ThreadUse;
  /** The busiest other thread: QEMU's vCPU thread (with 1 vCPU), which runs the guest and its port I/O. */
  busiestOther?: ThreadUse;
}

/** CPU use of process `pid` between two threadCpu() samples taken `wallS` seconds apart. */
export function cpuBetween(pid: number, before: Map<number, number>, after: Map<number, number>, wallS: number): CpuUse {
  const pct = (sec: number): number => (wallS > 0 ? (100 * sec) / wallS : NaN);
  let seconds = 0;
  let main: ThreadUse | undefined;
  let busiest: ThreadUse | undefined;
  for (const [tid, a] of after) {
    const d = a - (before.get(tid) ?? 0);
    seconds += d;
    const use = { tid, seconds: d, percentOfWall: pct(d) };
    if (tid === pid) main = use;
    else if (!busiest || d > busiest.seconds) busiest = use;
  }
  return { seconds, percentOfWall: pct(seconds), main, busiestOther: busiest };
}

/** Jiffies of the whole host from /proc/stat's "cpu" line: busy (not idle or iowait) and total. */
export function hostJiffies(): { busy: number; total: number } {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: total - f[3]! - f[4]!, total };
  } catch {
    return { busy: NaN, total: NaN };
  }
}

/** Pids of running qemu-system-* processes (other than `exceptPids`): other guests competing for the host's CPUs. */
export function otherQemuPids(exceptPids: ReadonlySet<number> = new Set()): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || exceptPids.has(Number(name))) continue;
    try {
      const argv0 = readFileSync(`/proc/${name}/cmdline`, 'latin1').split('\0')[0] ?? '';
      if (/qemu-system-/.test(argv0)) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}
