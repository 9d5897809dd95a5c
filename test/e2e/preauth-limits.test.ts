import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import ssh2, { type ClientChannel } from 'ssh2';
import { SshvisorServer } from '../helpers/sshvisor-server.js';

/**
 * The front door's limits against a real `sshvisor serve` on loopback, with
 * small limits so each is reached quickly: OpenSSH's `ssh` for logins, raw
 * TCP sockets for connections that never speak, the ssh2 client library for
 * many channels on one connection. No VM is ever booted here.
 */

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function limitLines(server: SshvisorServer, limit: string): Array<Record<string, unknown>> {
  return server.events('limit').filter((e) => e.limit === limit);
}

/** A TCP connection that sends nothing; resolves what the server wrote and when it closed. */
function idleSocket(port: number): { socket: Socket; received: () => string; closed: Promise<void> } {
  const socket = connect(port, '127.0.0.1');
  let data = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => (data += d));
  socket.on('error', () => {});
  return { socket, received: () => data, closed: once(socket, 'close').then(() => undefined) };
}

describe('pre-authentication limits', { timeout: 180_000 }, () => {
  let server: SshvisorServer;
  let owner: string;
  const keys: string[] = [];
  before(async () => {
    server = new SshvisorServer([
      // 4 failures per 60 s: one comes back every 15 s, so a slow host cannot refill the bucket mid-test.
      '--login-grace-time', '3', '--max-startups', '3', '--max-auth-tries', '2', '--max-auth-failures', '4', '--auth-failure-window', '60',
    ]);
    owner = server.makeKey('owner');
    for (const k of ['k1', 'k2', 'k3']) keys.push(server.makeKey(k));
    await server.start();
  });
  after(async () => {
    await server?.stop();
  });

  it('MaxStartups: past 3 unauthenticated connections a new one is dropped; the idle ones end at the grace time', async () => {
    const idle = [idleSocket(server.port), idleSocket(server.port), idleSocket(server.port)];
    // Each gets the server's version line: they are counted before the next opens.
    for (const c of idle) while (!c.received().startsWith('SSH-2.0-OpenSSH_sshvisor')) await sleep(20);
    const extra = idleSocket(server.port);
    await extra.closed;
    assert.match(extra.received(), /too many unauthenticated connections/);
    const drops = limitLines(server, 'max-startups');
    assert.equal(drops.length, 1, 'one line for the one drop');
    assert.equal(drops[0]!.source, '127.0.0.1');
    assert.equal(drops[0]!.unauthenticated, 3);

    await Promise.all(idle.map((c) => c.closed));
    await server.waitForEvent('limit', 4);
    const grace = limitLines(server, 'login-grace');
    assert.equal(grace.length, 3, 'one line per connection closed');
    assert.ok(grace.every((g) => g.source === '127.0.0.1' && g.seconds === 3));
    // Nothing unauthenticated is left: a real client gets in (to be told its name is wrong; no VM).
    const r = await server.ssh('Nobody', owner, ['true']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /has uppercase letters/);
  });

  it('MaxAuthTries: the second failed key ends the connection; the third is never tried', async () => {
    // An unclaimed name's +status is readable by no key: every offered key fails.
    const r = await server.ssh('nobody+status', keys[0]!, ['true'], { sshArgs: ['-i', keys[1]!, '-i', keys[2]!] });
    assert.equal(r.code, 255, r.stderr);
    assert.doesNotMatch(r.stderr, /Permission denied/, 'disconnected before the client ran out of keys');
    const tries = limitLines(server, 'auth-tries');
    assert.equal(tries.length, 1);
    assert.equal(tries[0]!.attempts, 2);
    assert.equal(tries[0]!.source, '127.0.0.1');
  });

  it('failed auths per source: refused once 4 are spent in the window, then recovers', async () => {
    // From 127.0.0.3 (loopback, but its own source): the failures above were 127.0.0.1's.
    const from = ['-b', '127.0.0.3'];
    const fail = () => server.ssh('nobody+status', keys[0]!, ['true'], { sshArgs: from });
    for (let i = 0; i < 3; i++) {
      const r = await fail();
      assert.match(r.stderr, /Permission denied \(publickey\)/, `failure ${i + 1}`);
    }
    // The fourth failure spends the bucket: the connection is closed with it (its client had no other key anyway).
    assert.equal((await fail()).code, 255);
    const refused = await fail();
    assert.equal(refused.code, 255);
    assert.match(refused.stderr, /too many failed authentications|Connection closed|kex_exchange_identification/, refused.stderr);
    const rate = limitLines(server, 'auth-rate');
    assert.equal(rate.length, 1, 'one line for the episode, however many connections it refuses');
    assert.equal(rate[0]!.source, '127.0.0.3');
    // A working key is refused too while the source is out of failures; other sources are not.
    assert.equal((await server.ssh('Nobody', owner, ['true'], { sshArgs: from })).code, 255);
    assert.equal((await server.ssh('Nobody', owner, ['true'])).code, 1, '127.0.0.1 is not held back');
    await sleep(16_000); // one failure back (4 per 60 s)
    const back = await server.ssh('Nobody', owner, ['true'], { sshArgs: from });
    assert.equal(back.code, 1, back.stderr);
    assert.match(back.stderr, /has uppercase letters/);
  });
});

type Conn = InstanceType<typeof ssh2.Client>;

function connectSsh(port: number, username: string, privateKey: Buffer): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    c.once('ready', () => resolve(c));
    c.once('error', reject);
    c.connect({ host: '127.0.0.1', port, username, privateKey, readyTimeout: 30_000 });
  });
}

/**
 * A shell channel on a +watch login: it stays open without booting anything.
 * Resolves the first line it gets, on stdout (the watch notice) or stderr (a refusal).
 */
function openWatch(c: Conn): Promise<{ ch: ClientChannel; first: string }> {
  return new Promise((resolve, reject) => {
    c.shell(false, (err, ch) => {
      if (err) return reject(err);
      let text = '';
      const got = (d: Buffer, prefix: string): void => {
        text += prefix + d.toString();
        if (text.includes('\n')) resolve({ ch, first: text.split(/\r?\n/)[0]! });
      };
      ch.on('data', (d: Buffer) => got(d, ''));
      ch.stderr.on('data', (d: Buffer) => got(d, ''));
      ch.on('close', () => resolve({ ch, first: text.split(/\r?\n/)[0]! }));
    });
  });
}

describe('session limits per connection and per user', { timeout: 120_000 }, () => {
  let server: SshvisorServer;
  let key: Buffer;
  const conns: Conn[] = [];
  before(async () => {
    server = new SshvisorServer(['--auth', 'open', '--max-sessions', '2', '--max-user-sessions', '3']);
    key = readFileSync(server.makeKey('w'));
    await server.start();
  });
  after(async () => {
    for (const c of conns) c.end();
    await server?.stop();
  });

  it('a third session on one connection, and a fourth for the user, are refused with the reason', async () => {
    const a = await connectSsh(server.port, 'alice+watch', key);
    const b = await connectSsh(server.port, 'alice+watch', key);
    conns.push(a, b);
    const a1 = await openWatch(a);
    const a2 = await openWatch(a);
    assert.match(a1.first, /watching alice's console/, a1.first);
    assert.match(a2.first, /watching alice's console/);
    for (let i = 0; i < 3; i++) {
      const over = await openWatch(a).catch((err: Error) => ({ first: `open failed: ${err.message}` }));
      // Refused like sshd past MaxSessions: the channel open fails, with the reason as its description.
      assert.match(over.first, /^open failed: .*too many sessions open on this connection \(at most 2\)/, over.first);
    }
    const b1 = await openWatch(b);
    assert.match(b1.first, /watching alice's console/);
    const b2 = await openWatch(b).catch((err: Error) => ({ first: `open failed: ${err.message}` }));
    assert.match(b2.first, /^open failed: .*alice has too many sessions open \(at most 3\); close one first$/, b2.first);
    // Closing one of alice's sessions frees a slot for her other connection.
    a1.ch.close();
    await once(a1.ch, 'close');
    await server.waitForEvent('console-detach'); // logged after the server let go of the session
    const b3 = await openWatch(b);
    assert.match(b3.first, /watching alice's console/);
    // A different user is not held back by alice.
    const c = await connectSsh(server.port, 'bob+watch', key);
    conns.push(c);
    assert.match((await openWatch(c)).first, /watching bob's console/);

    const perConn = limitLines(server, 'sessions-per-connection');
    assert.equal(perConn.length, 1, 'logged once for the connection, though refused 3 times');
    assert.equal(perConn[0]!.source, '127.0.0.1');
    assert.equal(perConn[0]!.user, 'alice');
    assert.equal(limitLines(server, 'sessions-per-user').length, 1);
  });
});
