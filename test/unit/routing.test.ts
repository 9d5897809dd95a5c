import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ROUTE_SUFFIXES, parseUsername, quoteForDisplay, type RouteResult } from '../../src/ssh/routing.js';

function reason(username: string): string {
  const r = parseUsername(username);
  assert.equal(r.ok, false, `${JSON.stringify(username)} should be rejected`);
  return (r as Extract<RouteResult, { ok: false }>).reason;
}

describe('parseUsername', () => {
  test('NAME is a shell', () => {
    assert.deepEqual(parseUsername('alice'), { ok: true, route: { kind: 'vm', vm: 'alice', mode: 'shell' } });
    assert.deepEqual(parseUsername('a'), { ok: true, route: { kind: 'vm', vm: 'a', mode: 'shell' } });
    assert.deepEqual(parseUsername('web-2'), { ok: true, route: { kind: 'vm', vm: 'web-2', mode: 'shell' } });
    const max = `a${'b'.repeat(31)}`;
    assert.deepEqual(parseUsername(max), { ok: true, route: { kind: 'vm', vm: max, mode: 'shell' } });
  });

  test('NAME+SUFFIX for every known suffix', () => {
    assert.deepEqual([...ROUTE_SUFFIXES], ['console', 'watch', 'logs', 'status', 'token']);
    for (const mode of ROUTE_SUFFIXES) {
      assert.deepEqual(parseUsername(`alice+${mode}`), { ok: true, route: { kind: 'vm', vm: 'alice', mode } });
    }
  });

  test('admin is reserved', () => {
    assert.deepEqual(parseUsername('admin'), { ok: true, route: { kind: 'admin' } });
    assert.equal(reason('admin+console'), '"admin" is reserved and takes no "+" suffix');
    assert.deepEqual(parseUsername('admins'), { ok: true, route: { kind: 'vm', vm: 'admins', mode: 'shell' } });
  });

  test('one specific reason per failure', () => {
    assert.equal(reason(''), 'empty username: connect as NAME@host, e.g. ssh alice@host');
    assert.equal(reason('+console'), 'empty VM name before "+"');
    assert.equal(reason(`a${'b'.repeat(32)}`), `name "a${'b'.repeat(32)}" is too long (33 characters, at most 32)`);
    assert.equal(reason('Alice'), 'name "Alice" has uppercase letters; names are lowercase: try "alice"');
    assert.equal(reason('Al_ice'), 'name "Al_ice" must start with a lowercase letter, not "A"');
    assert.equal(reason('aB_'), 'name "aB_" contains "B"; use only lowercase letters, digits and "-"');
    assert.equal(reason('1alice'), 'name "1alice" must start with a lowercase letter, not "1"');
    assert.equal(reason('-alice'), 'name "-alice" must start with a lowercase letter, not "-"');
    assert.equal(reason('al_ice'), 'name "al_ice" contains "_"; use only lowercase letters, digits and "-"');
    assert.equal(reason('al.ice+console'), 'name "al.ice" contains "."; use only lowercase letters, digits and "-"');
    assert.equal(reason('alice+shell'), 'unknown suffix "+shell": use alice alone or with one of +console, +watch, +logs, +status, +token');
    assert.equal(reason('alice+'), 'empty suffix after "+": use alice alone or with one of +console, +watch, +logs, +status, +token');
    assert.equal(reason('alice+console+x'), 'unknown suffix "+console+x": use alice alone or with one of +console, +watch, +logs, +status, +token');
    assert.equal(reason('alice+Console'), 'unknown suffix "+Console": use alice alone or with one of +console, +watch, +logs, +status, +token');
  });

  test('control and format characters are shown escaped', () => {
    assert.equal(reason('al\x1b[2Jice'), 'name "al\\u001b[2Jice" contains "\\u001b"; use only lowercase letters, digits and "-"');
    assert.equal(reason('a\nb'), 'name "a\\u000ab" contains "\\u000a"; use only lowercase letters, digits and "-"');
    assert.equal(reason('alice+\u202econsole'), 'unknown suffix "+\\u202econsole": use alice alone or with one of +console, +watch, +logs, +status, +token');
    assert.equal(reason('a\ud800'), 'name "a\\ud800" contains "\\ud800"; use only lowercase letters, digits and "-"');
    assert.equal(reason('a"b'), 'name "a\\"b" contains "\\""; use only lowercase letters, digits and "-"');
    assert.equal(reason('aé'), 'name "aé" contains "é"; use only lowercase letters, digits and "-"');
  });

  test('long input is cut short in the reason', () => {
    const r = reason('x'.repeat(100_000));
    assert.equal(r, `name "${'x'.repeat(40)}..." is too long (100000 characters, at most 32)`);
  });

  test('quoteForDisplay escapes what could move the cursor', () => {
    assert.equal(quoteForDisplay('\x00\x7f\x9b\u2028'), '"\\u0000\\u007f\\u009b\\u2028"');
    assert.equal(quoteForDisplay('abc', 2), '"ab..."');
  });

  test('thousands of random strings: never throws, reasons are one bounded printable line', () => {
    let seed = 42;
    const rand = (n: number): number => {
      // xorshift: deterministic, so a failure reproduces.
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const alphabet = ['a', 'z', '0', '-', '+', 'A', '_', '.', '@', ' ', '\x00', '\x1b', '\n', '\x7f', 'é', '\u202e', '\ud800', '\udc00', '😀'];
    const sample = (): string => {
      const len = rand(60);
      let s = '';
      for (let i = 0; i < len; i++) {
        s += rand(3) === 0 ? String.fromCharCode(rand(0x10000)) : alphabet[rand(alphabet.length)];
      }
      return s;
    };
    let accepted = 0;
    for (let i = 0; i < 5000; i++) {
      const input = i % 5 === 0 ? `${['alice', 'admin', 'b1'][rand(3)]}+${sample()}` : sample();
      const r = parseUsername(input);
      if (r.ok) {
        accepted++;
        if (r.route.kind === 'vm') assert.match(r.route.vm, /^[a-z][a-z0-9-]{0,31}$/);
        continue;
      }
      assert.ok(r.reason.length > 0 && r.reason.length <= 600, `reason length ${r.reason.length}`);
      assert.doesNotMatch(r.reason, /[\p{C}\p{Zl}\p{Zp}]/u, `unescaped character in ${JSON.stringify(r.reason)}`);
    }
    assert.ok(accepted < 5000);
  });
});
