import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

let cached: Buffer | undefined;

/**
 * test/fixtures/rt-spin built as a static x86-64 binary (Debian's gcc and
 * libc6-dev), to be copied into a guest over SSH: the guest image has no
 * compiler and no chrt. Returns the binary's bytes.
 */
export function rtSpinner(): Buffer {
  if (cached) return cached;
  let dir = import.meta.dirname;
  while (!existsSync(join(dir, 'test', 'fixtures', 'rt-spin', 'rt-spin.c'))) {
    if (dirname(dir) === dir) throw new Error(`test/fixtures/rt-spin not found above ${import.meta.dirname}`);
    dir = dirname(dir);
  }
  const out = mkdtempSync(join(tmpdir(), 'sshvisor-rt-spin-'));
  try {
    const bin = join(out, 'rt-spin');
    const r = spawnSync('gcc', ['-static', '-O2', '-o', bin, join(dir, 'test', 'fixtures', 'rt-spin', 'rt-spin.c')], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`building rt-spin failed (gcc and libc6-dev: npm run setup):\n${r.error?.message ?? r.stderr}`);
    cached = readFileSync(bin);
    return cached;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}
