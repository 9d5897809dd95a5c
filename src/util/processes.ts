import { readdirSync, readFileSync } from 'node:fs';

/**
 * Pids of the processes whose command line has an argument under `dir`
 * (e.g. a QEMU with `-pidfile DIR/qemu.pid`), found through /proc: for
 * processes whose pid file is gone. `program` narrows it to processes whose
 * argv[0] contains it (a shell with a file of `dir` open is not a QEMU).
 */
export function processesUsing(dir: string, program?: string): number[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (program !== undefined && !argv[0]?.includes(program)) continue;
      if (argv.some((a) => a.includes(prefix))) pids.push(Number(entry));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}
