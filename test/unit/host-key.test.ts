import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HOST_KEY_FILE, loadOrCreateHostKey } from '../../src/ssh/host-key.js';
import { UserError } from '../../src/util/errors.js';

const root = mkdtempSync(join(tmpdir(), 'sshvisor-hostkey-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = (): string => join(root, `d${n++}`);

for (const [label, load, file] of [
  ['host key', loadOrCreateHostKey, HOST_KEY_FILE],
] as const) {
  describe(label, () => {
    test('created once, the same key afterwards, 0600, readable by ssh-keygen', () => {
      const dir = freshDir();
      const first = load(dir);
      const path = join(dir, file);
      assert.equal(first.path, path);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      assert.match(first.privateKey.toString(), /^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
      assert.match(first.publicKey, /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5[A-Za-z0-9+/]+=*$/);
      assert.deepEqual(readdirSync(dir), [file], 'no temporary file left behind');

      const second = load(dir);
      assert.deepEqual(second, first);

      // -l: fingerprint of the private key file; -y: its public line.
      const listed = execFileSync('ssh-keygen', ['-l', '-f', path], { encoding: 'utf8' });
      assert.equal(listed.split(' ')[1], first.fingerprint);
      assert.match(listed, /\(ED25519\)\s*$/);
      const pub = execFileSync('ssh-keygen', ['-y', '-f', path], { encoding: 'utf8' });
      assert.equal(pub.split(' ').slice(0, 2).join(' ').trim(), first.publicKey);
    });

    test('a too-open mode is tightened on load', () => {
      const dir = freshDir();
      load(dir);
      chmodSync(join(dir, file), 0o644);
      load(dir);
      assert.equal(statSync(join(dir, file)).mode & 0o777, 0o600);
    });

    test('a corrupt key file is an error, not silently replaced', () => {
      const dir = freshDir();
      load(dir);
      writeFileSync(join(dir, file), 'not a key\n');
      assert.throws(() => load(dir), (err: Error) => err instanceof UserError && /is not a usable private key/.test(err.message));
    });
  });
}


