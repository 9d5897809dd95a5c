import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { AdminKeys } from '../../src/ssh/admin-keys.js';
import { silentLogger } from '../../src/util/log.js';

const dir = mkdtempSync(join(tmpdir(), 'sshvisor-admin-keys-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** ssh2 writes about one ed25519 key in 256 unreadably (mscdex/ssh2#1390): make another. */
function key(): { line: string; blob: Buffer } {
  for (;;) {
    const { public: line } = ssh2.utils.generateKeyPairSync('ed25519');
    const parsed = ssh2.utils.parseKey(line);
    if (!(parsed instanceof Error) && !Array.isArray(parsed)) return { line, blob: parsed.getPublicSSH() };
  }
}

test('admin keys: authorized_keys format, re-read when the file changes, refused when it goes away', () => {
  const a = key();
  const b = key();
  const file = join(dir, 'admins');
  writeFileSync(file, `# operators\n${a.line} ops@example\n\nnot a key\n`);
  const keys = new AdminKeys(file, silentLogger);
  assert.equal(keys.count, 1);
  assert.equal(keys.isAdminKey(a.blob), true);
  assert.equal(keys.isAdminKey(b.blob), false);
  writeFileSync(file, `restrict,from="10.0.0.1" ${b.line}\n${a.line}\n# a longer file this time\n`);
  assert.equal(keys.isAdminKey(b.blob), true, 'a key added later works without a restart (options are skipped)');
  rmSync(file);
  assert.equal(keys.isAdminKey(a.blob), false, 'no file, no admins');
  assert.throws(() => new AdminKeys(join(dir, 'missing'), silentLogger), /--admin-keys .*missing: ENOENT/);
});
