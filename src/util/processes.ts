import { readdirSync, readFileSync } from 'node:fs';

export interface ProcessMatch {
  /** argv[0] contains this (e.g. "qemu"). */
  program: string;
  /** The argument that must be followed by a path under the dir (e.g. "-pidfile"). */
  flag: string;
}

/**
 * Pids of the processes whose `match.flag` argument is a path under `dir`
 * (a QEMU whose `-pidfile` is DIR/.../qemu.pid), found through /proc: for
 * processes whose pid file is gone. Only the flag counts: another QEMU may
 * name a file under `dir` elsewhere (a clone maps a template's RAM).
 */
export function processesUsing(dir: string, match: ProcessMatch): number[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (!argv[0]?.includes(match.program)) continue;
      const i = argv.indexOf(match.flag);
      if (i >= 0 && argv[i + 1]?.startsWith(prefix)) pids.push(Number(entry));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}
