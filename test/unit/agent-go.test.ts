import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// agent/ in the source tree; this file runs from dist/test/unit/.
const AGENT_DIR = fileURLToPath(new URL('../../../agent', import.meta.url));

it('the Go agent passes its own tests (go test ./... in agent/)', { timeout: 600_000 }, () => {
  const cache = mkdtempSync(join(tmpdir(), 'sshvisor-agent-gocache-'));
  try {
    const result = spawnSync('go', ['test', '-count=1', './...'], {
      cwd: AGENT_DIR,
      env: { ...process.env, GOPROXY: 'off', GOFLAGS: '', GOTOOLCHAIN: 'local', CGO_ENABLED: '0', GOCACHE: cache },
      encoding: 'utf8',
      timeout: 590_000,
    });
    if (result.error) throw result.error;
    const output = `${result.stdout}${result.stderr}`;
    assert.equal(result.status, 0, `go test failed:\n${output}`);
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
});
