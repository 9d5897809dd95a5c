import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SshvisorServer, runProgram } from '../helpers/sshvisor-server.js';

/**
 * ssh-audit (the Debian package) against a real sshvisor on loopback: no
 * failure-level finding. The report is saved to test-output/ssh-audit.txt so
 * anyone can read what was checked. ssh-audit's exit status: 0 good,
 * 1 connection error, 2 warnings, 3 failures.
 */

const REPORT = resolve(import.meta.dirname, '..', '..', '..', 'test-output', 'ssh-audit.txt');
/** ssh-audit 2.5 predates OpenSSH's strict-kex marker (the Terrapin fix) and calls it unknown; that is its only warning. */
const KNOWN_WARNINGS = [/^\(kex\) kex-strict-s-v00@openssh\.com\s+-- \[warn\] unknown algorithm$/];

describe('ssh-audit', () => {
  let server: SshvisorServer;
  before(async () => {
    server = await new SshvisorServer().start();
  });
  after(async () => {
    await server?.stop();
  });

  it('finds nothing at failure level, and only the known warning', async () => {
    const r = await runProgram('ssh-audit', ['-n', '-p', String(server.port), '127.0.0.1'], { timeoutMs: 60_000 });
    mkdirSync(join(REPORT, '..'), { recursive: true });
    writeFileSync(REPORT, `$ ssh-audit -n -p PORT 127.0.0.1   (exit status ${r.code})\n\n${r.stdout}${r.stderr}`);
    const lines = r.stdout.split('\n');
    assert.match(r.stdout, /\(gen\) banner: SSH-2\.0-OpenSSH_sshvisor/, 'ssh-audit reached the server');
    assert.deepEqual(lines.filter((l) => l.includes('[fail]')), [], `failures in ${REPORT}`);
    const warnings = lines.filter((l) => l.includes('[warn]') && !KNOWN_WARNINGS.some((re) => re.test(l.trim())));
    assert.deepEqual(warnings, [], `unexpected warnings in ${REPORT}`);
    assert.ok(r.code === 0 || r.code === 2, `ssh-audit exit ${r.code} (3 = failures, 1 = connection error)`);
    // What is offered, exactly: a change to src/ssh/algorithms.ts must show up here.
    const offered = lines.filter((l) => /^\((kex|key|enc|mac)\) /.test(l)).map((l) => l.split(/\s+/).slice(0, 2).join(' '));
    assert.deepEqual(offered, [
      '(kex) curve25519-sha256',
      '(kex) curve25519-sha256@libssh.org',
      '(kex) kex-strict-s-v00@openssh.com',
      '(key) ssh-ed25519',
      '(enc) chacha20-poly1305@openssh.com',
      '(enc) aes256-gcm@openssh.com',
      '(enc) aes128-gcm@openssh.com',
      '(enc) aes256-ctr',
      '(enc) aes192-ctr',
      '(enc) aes128-ctr',
      '(mac) hmac-sha2-256-etm@openssh.com',
      '(mac) hmac-sha2-512-etm@openssh.com',
    ]);
  });
});
