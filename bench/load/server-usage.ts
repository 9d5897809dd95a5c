/**
 * What a server process costs during one load scenario: CPU seconds and peak
 * resident memory, read from /proc.
 *
 * CPU is the change of `self + children` of the server's main process over the
 * scenario. For sshd that covers every per-connection sshd and every shell it
 * ran, provided the scenario ends with all of them reaped (the caller waits for
 * that): a child's time lands in its parent's cutime when it is waited for.
 * For sshvisor the gateway has no short-lived children; QEMU is accounted
 * separately through `extraPids`.
 *
 * RSS is sampled every 200 ms over the server's whole process tree and the
 * peak sum is kept: a per-connection server (sshd) pays memory per process.
 */
import { readFileSync } from 'node:fs';
import { childPids, cpuTimes } from '../lib/proc.js';

function rssKiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function tree(pid: number, into: number[] = []): number[] {
  into.push(pid);
  for (const c of childPids(pid) ?? []) tree(c, into);
  return into;
}

export interface Usage {
  /** CPU seconds of the server (and, for sshd, what it ran and reaped). */
  cpuS: number;
  /** CPU seconds of `extraPids` (sshvisor: the QEMU processes). */
  extraCpuS: number;
  /** Peak of the summed RSS of the server's process tree, MiB. */
  peakRssMiB: number;
  /** The server process's own RSS at the end, MiB. */
  endRssMiB: number;
}

export class UsageMeter {
  private readonly cpu0: number;
  private readonly extra0: Map<number, number>;
  private peakKiB = 0;
  private readonly timer: NodeJS.Timeout;

  /**
   * @param excludeFromTree pids not to count in the RSS tree (sshvisor's QEMU
   *   children: guest RAM is not the gateway's memory).
   */
  constructor(
    private readonly pid: number,
    private readonly extraPids: readonly number[] = [],
    private readonly excludeFromTree: readonly number[] = [],
  ) {
    const t = cpuTimes(pid);
    if (!t) throw new Error(`server process ${pid} is gone`);
    this.cpu0 = t.self + t.children;
    this.extra0 = new Map(extraPids.map((p) => [p, cpuTimes(p)?.self ?? 0]));
    this.sample();
    this.timer = setInterval(() => this.sample(), 200);
  }

  private sample(): void {
    const skip = new Set(this.excludeFromTree);
    let kib = 0;
    for (const p of tree(this.pid)) if (!skip.has(p)) kib += rssKiB(p);
    this.peakKiB = Math.max(this.peakKiB, kib);
  }

  stop(): Usage {
    clearInterval(this.timer);
    this.sample();
    const t = cpuTimes(this.pid);
    let extra = 0;
    for (const p of this.extraPids) extra += (cpuTimes(p)?.self ?? this.extra0.get(p)!) - this.extra0.get(p)!;
    return {
      cpuS: t ? t.self + t.children - this.cpu0 : NaN,
      extraCpuS: extra,
      peakRssMiB: this.peakKiB / 1024,
      endRssMiB: rssKiB(this.pid) / 1024,
    };
  }
}
