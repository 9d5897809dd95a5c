import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { pino } from 'pino';
import { FailureBuckets, PreauthGate, parseMaxStartups, sourceKey, type PreauthLimits } from '../../src/ssh/connection-limits.js';
import { ConnectionChannels, UserSessions } from '../../src/ssh/channel-limits.js';
import { LimitLog } from '../../src/ssh/limit-log.js';

/** A logger whose lines land in an array. */
function capture(): { log: LimitLog; lines: Record<string, unknown>[]; clock: { t: number } } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) });
  const clock = { t: 0 };
  return { log: new LimitLog(logger, 10_000, () => clock.t), lines, clock };
}

class FakeSocket extends EventEmitter {
  destroyed = false;
  written = '';
  constructor(
    readonly remoteAddress: string,
    readonly remotePort: number,
  ) {
    super();
  }
  end(data?: string): void {
    this.written += data ?? '';
    this.destroy();
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.emit('close');
  }
}
const sock = (ip: string, port: number): Socket => new FakeSocket(ip, port) as unknown as Socket;

const LIMITS: PreauthLimits = { loginGraceTime: 0, maxStartups: { start: 2, rate: 50, full: 4 }, maxAuthTries: 3, maxAuthFailures: 4, authFailureWindow: 4 };

describe('parseMaxStartups', () => {
  test('START:RATE:FULL and N', () => {
    assert.deepEqual(parseMaxStartups('10:30:100'), { start: 10, rate: 30, full: 100 });
    assert.deepEqual(parseMaxStartups('7'), { start: 7, rate: 100, full: 7 });
    for (const bad of ['', '0', '1:2', '5:30:4', '1:101:2', '-1', 'x:y:z', '1:2:3:4']) assert.ok('error' in parseMaxStartups(bad), bad);
  });
});

describe('sourceKey', () => {
  test('IPv4, IPv4-mapped, IPv6 by /64', () => {
    assert.equal(sourceKey('127.0.0.1'), '127.0.0.1');
    assert.equal(sourceKey('::ffff:10.1.2.3'), '10.1.2.3');
    assert.equal(sourceKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(sourceKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64');
    assert.equal(sourceKey('::1'), '0:0:0:0::/64');
    assert.equal(sourceKey(undefined), 'unknown');
  });
});

describe('FailureBuckets', () => {
  test('a source is blocked when its bucket is empty and recovers as it refills', () => {
    const clock = { t: 0 };
    const b = new FailureBuckets(3, 3, () => clock.t);
    for (let i = 0; i < 3; i++) {
      assert.equal(b.blocked('a'), false);
      b.fail('a');
    }
    assert.equal(b.blocked('a'), true);
    assert.equal(b.blocked('b'), false, 'other sources are not affected');
    clock.t = 999;
    assert.equal(b.blocked('a'), true);
    clock.t = 1000;
    assert.equal(b.blocked('a'), false, 'one token back after window/capacity');
  });
});

describe('PreauthGate', () => {
  test('MaxStartups: below START all pass, at FULL all drop, between by RATE', () => {
    const { log, lines } = capture();
    let r = 0.99;
    const gate = new PreauthGate(LIMITS, log, () => r);
    const socks = [sock('1.1.1.1', 1), sock('1.1.1.1', 2)];
    assert.ok(socks.every((s) => gate.admit(s)));
    // n=2=start: p = 50%: 0.99 passes, 0.1 drops.
    assert.equal(gate.admit(sock('1.1.1.1', 3)), true);
    r = 0.1;
    const dropped = sock('1.1.1.1', 4);
    assert.equal(gate.admit(dropped), false);
    assert.match((dropped as unknown as FakeSocket).written, /too many unauthenticated/);
    r = 0.99;
    assert.equal(gate.admit(sock('1.1.1.1', 5)), true);
    assert.equal(gate.unauthenticated, 4);
    assert.equal(gate.admit(sock('2.2.2.2', 6)), false, 'full: always dropped');
    assert.deepEqual(lines.map((l) => [l.event, l.limit, l.source]), [['limit', 'max-startups', '1.1.1.1'], ['limit', 'max-startups', '2.2.2.2']]);
    // Authenticated connections no longer count.
    gate.authenticated('1.1.1.1', 1);
    gate.authenticated('1.1.1.1', 2);
    (socks[0] as unknown as FakeSocket).destroy();
    assert.equal(gate.unauthenticated, 2);
    assert.equal(gate.admit(sock('2.2.2.2', 7)), true);
  });

  test('MaxAuthTries closes the connection at the limit, logged once', () => {
    const { log, lines } = capture();
    const gate = new PreauthGate({ ...LIMITS, maxAuthFailures: 100 }, log);
    gate.admit(sock('3.3.3.3', 9));
    assert.equal(gate.authFailed('3.3.3.3', 9), true);
    assert.equal(gate.authFailed('3.3.3.3', 9), true);
    assert.equal(gate.authFailed('3.3.3.3', 9), false);
    // A request already in flight when the connection was told to close: refused, not logged again.
    assert.equal(gate.authFailed('3.3.3.3', 9), false);
    assert.deepEqual(lines.map((l) => [l.limit, l.source, l.attempts]), [['auth-tries', '3.3.3.3', 3]]);
  });

  test('failed auths per source: refused at accept once spent, one line per episode', () => {
    const { log, lines, clock } = capture();
    const gate = new PreauthGate({ ...LIMITS, maxStartups: { start: 100, rate: 30, full: 100 } }, log, Math.random, () => clock.t);
    for (let port = 1; port <= 4; port++) {
      gate.admit(sock('4.4.4.4', port));
      assert.equal(gate.authFailed('4.4.4.4', port), port < 4);
    }
    for (let port = 10; port < 20; port++) assert.equal(gate.admit(sock('4.4.4.4', port)), false);
    assert.equal(gate.admit(sock('5.5.5.5', 1)), true, 'another source is not refused');
    assert.deepEqual(lines.map((l) => l.limit), ['auth-rate']);
    clock.t = 1000;
    assert.equal(gate.admit(sock('4.4.4.4', 30)), true, 'recovers as the bucket refills');
  });

  test('login grace time closes a connection that does not authenticate', async () => {
    const { log, lines } = capture();
    const gate = new PreauthGate({ ...LIMITS, loginGraceTime: 0.05 }, log);
    const slow = sock('6.6.6.6', 1);
    const quick = sock('6.6.6.6', 2);
    gate.admit(slow);
    gate.admit(quick);
    gate.authenticated('6.6.6.6', 2);
    await new Promise((r) => setTimeout(r, 120));
    assert.equal((slow as unknown as FakeSocket).destroyed, true);
    assert.equal((quick as unknown as FakeSocket).destroyed, false);
    assert.deepEqual(lines.map((l) => [l.limit, l.port]), [['login-grace', 1]]);
  });
});

describe('ConnectionChannels', () => {
  test('sessions per connection, channels per connection, sessions per user', () => {
    const { log, lines } = capture();
    const users = new UserSessions();
    const limits = { maxSessions: 2, maxChannels: 3, maxUserSessions: 3 };
    const a = new ConnectionChannels(limits, users, log, '1.1.1.1', 1, 'alice');
    const s1 = a.openSession();
    const s2 = a.openSession();
    assert.ok(s1.ok && s2.ok);
    const over = a.openSession();
    assert.equal(over.ok, false);
    assert.match(!over.ok ? over.reason : '', /too many sessions open on this connection \(at most 2\)/);
    assert.equal(a.openSession().ok, false, 'refused again');
    const fwd = a.openChannel();
    assert.ok(fwd);
    assert.equal(a.openChannel(), undefined, 'channels cap counts sessions too');

    const b = new ConnectionChannels(limits, users, log, '1.1.1.1', 2, 'alice');
    assert.equal(b.openSession().ok, true);
    const userOver = b.openSession();
    assert.match(!userOver.ok ? userOver.reason : '', /alice has too many sessions open \(at most 3\)/);
    if (s1.ok) s1.release();
    assert.equal(b.openSession().ok, true, 'a closed session frees the user slot');
    a.closeAll();
    assert.equal(users.count('alice'), 2);
    assert.deepEqual(lines.map((l) => l.limit), ['sessions-per-connection', 'channels-per-connection', 'sessions-per-user']);
  });
});
