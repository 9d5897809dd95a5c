import { mkdirSync, statSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../util/exec.js';
import { requireTool } from '../util/tools.js';

/** agent/ in the source tree (this file runs from dist/src/image/). */
export const AGENT_DIR = fileURLToPath(new URL('../../../agent', import.meta.url));

/**
 * Build sshvisor-agent (agent/, Go standard library only) into `outFile`: a
 * static linux/`arch` binary (CGO off, symbols stripped), with the module
 * proxy off so nothing is fetched. The Go build cache lives under
 * ~/.cache/sshvisor-go (or the temp dir), so rebuilds take a second.
 * Returns the Go version and the binary's size in bytes; throws a
 * MissingToolError naming golang-go when Go is not installed, or a UserError
 * with the compiler's last line.
 */
export async function buildAgent(outFile: string, arch: 'amd64' | 'arm64'): Promise<{ goVersion: string; bytes: number }> {
  const go = requireTool('go');
  const cache = join(process.env.HOME ? homedir() : tmpdir(), '.cache', 'sshvisor-go');
  mkdirSync(cache, { recursive: true });
  const env = { ...process.env, CGO_ENABLED: '0', GOOS: 'linux', GOARCH: arch, GOPROXY: 'off', GOFLAGS: '', GOTOOLCHAIN: 'local', GOCACHE: cache };
  await run(go, ['build', '-trimpath', '-ldflags=-s -w', '-o', outFile, './cmd/sshvisor-agent'], { cwd: AGENT_DIR, env });
  const { stdout } = await run(go, ['env', 'GOVERSION'], { env });
  return { goVersion: stdout.trim(), bytes: statSync(outFile).size };
}
