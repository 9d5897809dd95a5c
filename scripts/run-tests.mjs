// Runs the compiled test suite with Node's built-in runner: unit tests
// first (seconds), then the end-to-end tests that boot real VMs, then the SSH
// conformance suite (sshvisor vs OpenSSH's sshd, docs/ssh-differences.md). Files run
// one at a time: the machine has two cores and every VM is emulated.
import { readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = join(import.meta.dirname, '..', 'dist', 'test');
const only = process.argv.slice(2);
const files = [];
for (const group of ['unit', 'e2e', 'conformance']) {
  const dir = join(root, group);
  if (!existsSync(dir)) continue;
  for (const f of readdirSync(dir).sort()) {
    if (!f.endsWith('.test.js')) continue;
    if (only.length && !only.some((o) => f.includes(o))) continue;
    files.push(join(dir, f));
  }
}
const result = spawnSync(
  process.execPath,
  ['--test', '--test-concurrency=1', '--test-timeout=600000', ...files],
  { stdio: 'inherit' },
);
process.exit(result.status ?? 1);
