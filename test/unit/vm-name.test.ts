import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, join, resolve } from 'node:path';
import { VM_NAME_PATTERN, assertVmName, isValidVmName } from '../../src/vm/vm-name.js';
import { parseUsername } from '../../src/ssh/routing.js';
import { UserError } from '../../src/util/errors.js';
import { Gen, prng } from '../helpers/fuzz-inputs.js';

/**
 * A VM name is a path component under DATA_DIR/vms/ and part of QEMU's
 * -name option, so a name from the network must never be able to leave that
 * directory or add a QEMU option.
 */

const DATA_DIR = '/srv/sshvisor-data';
const VMS = join(DATA_DIR, 'vms');

const HOSTILE = [
  '', '.', '..', '../x', 'a/../../etc', '/etc/passwd', 'a/b', 'a\\b', 'a\0b', 'a\0', '\0', 'a\n', 'a\nb', 'a\r', ' a', 'a ', 'a\t',
  '-a', '-rf', '--help', '0a', '9', '_a', 'Alice', 'ALICE', 'aB', 'a.b', '.a', 'a.', 'a,b', 'a,id=x', 'a=b', 'a:b', 'a;b', 'a$b', 'a`b', 'a"b', "a'b",
  '\u0430lice', 'al\u0131ce', '\uff41', 'a\u202e', 'a\u200b', '\u{1f600}', 'é', 'a%2f..', 'a+b', 'a@b', 'a'.repeat(33), 'a'.repeat(10_000),
];

describe('VM names', () => {
  test('hostile names are refused everywhere a name enters', () => {
    for (const name of HOSTILE) {
      assert.equal(isValidVmName(name), false, JSON.stringify(name));
      assert.throws(() => assertVmName(name), UserError, JSON.stringify(name));
      const parsed = parseUsername(name);
      assert.ok(!parsed.ok, `parseUsername(${JSON.stringify(name)})`);
      // Every reason stays one printable line, whatever was sent.
      if (!parsed.ok) assert.doesNotMatch(parsed.reason, /[\0-\x1f\x7f\u202e]/, JSON.stringify(name));
    }
  });

  test('the longest and shortest valid names', () => {
    assert.equal(isValidVmName('a'), true);
    assert.equal(isValidVmName(`a${'-'.repeat(31)}`), true);
    assert.equal(isValidVmName(`a${'0'.repeat(31)}`), true);
    assert.equal(isValidVmName(`a${'0'.repeat(32)}`), false);
    // JavaScript's $ does not match before a trailing newline (unlike Perl's and Python's).
    assert.equal(VM_NAME_PATTERN.test('alice\n'), false);
  });

  test('no accepted name, of 50,000 generated, resolves outside DATA_DIR/vms or adds a QEMU option', () => {
    const gen = new Gen(prng(20261125));
    let accepted = 0;
    for (let i = 0; i < 50_000; i++) {
      const name = i % 2 ? gen.username() : gen.text(40, 'abcz09-./\\\0,=+ A');
      if (!isValidVmName(name)) continue;
      accepted++;
      const dir = resolve(VMS, name);
      assert.equal(dirname(dir), VMS, JSON.stringify(name));
      assert.equal(dir, join(VMS, name));
      assert.doesNotMatch(name, /[,=\s/\\.]/, 'nothing QEMU -name or a path would split on');
    }
    assert.ok(accepted > 1000, `${accepted} valid names among the generated`);
  });
});
