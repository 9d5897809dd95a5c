import { after, afterEach, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentConnection, type AgentStream } from '../../src/guest/agent-connection.js';
import { encodeFrame, FrameType, STREAM_WINDOW } from '../../src/guest/agent-frames.js';
import { FakeAgent, type FakeAgentOptions } from '../helpers/fake-agent.js';

let dir: string;
const servers: Server[] = [];
const conns: AgentConnection[] = [];
const sockets: Socket[] = [];

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'agent-conn-'));
});
afterEach(async () => {
  for (const c of conns.splice(0)) c.close();
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function serve(opts: FakeAgentOptions = {}, path = join(dir, `a${n++}.sock`)) {
  const agents: FakeAgent[] = [];
  let onAgent: (a: FakeAgent) => void = () => {};
  const server = createServer((sock) => {
    sockets.push(sock);
    const a = new FakeAgent(sock, opts);
    agents.push(a);
    onAgent(a);
  });
  servers.push(server);
  const listening = new Promise<void>((r) => server.listen(path, r));
  const nextAgent = () => new Promise<FakeAgent>((r) => (agents.length ? r(agents[agents.length - 1]!) : (onAgent = r)));
  return { path, server, listening, nextAgent };
}

const warns: string[] = [];
const log = { warn: (_o: object, msg: string) => void warns.push(msg) };

async function setup(opts: FakeAgentOptions = {}) {
  const s = serve(opts);
  await s.listening;
  const conn = await AgentConnection.connect(s.path, { deadline: Date.now() + 3000, log });
  conns.push(conn);
  return { conn, agent: await s.nextAgent() };
}

const collect = (r: NodeJS.ReadableStream) => {
  const chunks: Buffer[] = [];
  r.on('data', (c: Buffer) => chunks.push(c));
  return () => Buffer.concat(chunks).toString();
};
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

it('handshakes behind junk and answers control requests', async () => {
  const { conn, agent } = await setup({ junkBefore: Buffer.from('\x00\x00\x00\x40\x02\x00\x00\x00garbage from before') });
  assert.deepEqual(conn.hello, { version: 1, agent: 'fake-agent 0.0.1', bootId: 'boot-1' });
  assert.equal(conn.isOpen, true);
  assert.deepEqual(await conn.request('info', {}, 1000), { echo: 'info' });
  await conn.ping(1000);
  await conn.identity({ hostname: 'alice', unixMs: 5, seed: Buffer.alloc(32, 7) }, 1000);
  const req = FakeAgent.json(await agent.waitFor((f) => f.type === FrameType.REQUEST && FakeAgent.json(f).op === 'identity'));
  assert.equal(req.hostname, 'alice');
  assert.equal(req.seed, Buffer.alloc(32, 7).toString('base64'));
  await assert.rejects(conn.identity({ hostname: 'a', unixMs: 1, seed: Buffer.alloc(8) }, 100), RangeError);
});

it('rejects on ok:false, on timeout, and when the connection ends', async () => {
  const { conn, agent } = await setup({ auto: false });
  const failing = conn.request('sync', {}, 1000);
  const f = await agent.waitFor((x) => x.type === FrameType.REQUEST);
  agent.sendJson(FrameType.RESPONSE, 0, { id: FakeAgent.json(f).id, ok: false, error: 'unknown op sync' });
  await assert.rejects(failing, /unknown op sync/);
  await assert.rejects(conn.ping(50), /did not answer ping within 50 ms/);
  const pending = conn.setClock(1, 5000);
  const opening = conn.connectTcp('127.0.0.1', 1);
  conn.close();
  await assert.rejects(pending, /closed by the gateway/);
  await assert.rejects(opening, /closed by the gateway/);
  assert.equal(await conn.closed, 'closed by the gateway');
  assert.equal(conn.isOpen, false);
  await assert.rejects(conn.ping(10), /closed/);
});

it('runs a command: stdout and stderr apart, exit code, CLOSE answered', async () => {
  const { conn, agent } = await setup();
  const p = await conn.exec({
    command: Buffer.from('echo hi'),
    env: [{ name: 'LANG', value: Buffer.from('C.UTF-8') }],
    pty: { term: 'xterm', cols: 80, rows: 24, width: 0, height: 0, modes: Buffer.from([0]) },
  });
  assert.equal(p.pid, 42);
  const open = await agent.waitFor((f) => f.type === FrameType.OPEN);
  assert.deepEqual(FakeAgent.json(open), {
    kind: 'exec',
    command: Buffer.from('echo hi').toString('base64'),
    subsystem: null,
    env: [{ name: 'LANG', value: Buffer.from('C.UTF-8').toString('base64') }],
    pty: { term: 'xterm', cols: 80, rows: 24, width: 0, height: 0, modes: 'AA==' },
    agentForward: false,
  });
  const id = open.stream;
  assert.ok(id >= 1 && id < 0x8000_0000);
  const out = collect(p.stdout);
  const err = collect(p.stderr);
  agent.send(FrameType.DATA, id, Buffer.from('out1 '));
  agent.send(FrameType.STDERR, id, Buffer.from('err1'));
  agent.send(FrameType.DATA, id, Buffer.from('out2'));
  agent.send(FrameType.EOF, id);
  agent.sendJson(FrameType.EXIT, id, { code: 3 });
  agent.send(FrameType.CLOSE, id);
  assert.deepEqual(await p.exit, { code: 3 });
  await p.closed;
  assert.equal(out(), 'out1 out2');
  assert.equal(err(), 'err1');
  await agent.waitFor((f) => f.type === FrameType.CLOSE && f.stream === id);
  assert.equal(conn.stats().streams, 0);
});

it('reports a signal exit, sends stdin and its EOF, and stream requests', async () => {
  const { conn, agent } = await setup();
  const p = await conn.exec({ subsystem: 'sftp' });
  const id = (await agent.waitFor((f) => f.type === FrameType.OPEN)).stream;
  p.stdin.write('abc');
  p.stdin.end('def');
  p.resize({ cols: 100, rows: 40, width: 1, height: 2 });
  p.signal('INT');
  p.signal('BOGUS');
  p.sendBreak(300);
  p.outputClosed();
  await agent.waitFor((f) => f.type === FrameType.EOF && f.stream === id);
  const data = agent.frames.filter((f) => f.type === FrameType.DATA && f.stream === id);
  assert.equal(Buffer.concat(data.map((f) => f.payload)).toString(), 'abcdef');
  await agent.waitFor((f) => f.type === FrameType.STREAM_REQUEST && FakeAgent.json(f).op === 'eow');
  const reqs = agent.frames.filter((f) => f.type === FrameType.STREAM_REQUEST).map(FakeAgent.json);
  assert.deepEqual(reqs, [
    { op: 'window-change', cols: 100, rows: 40, width: 1, height: 2 },
    { op: 'signal', name: 'INT' },
    { op: 'break', ms: 300 },
    { op: 'eow' },
  ]);
  agent.sendJson(FrameType.EXIT, id, { signal: 'SEGV', core: true, extra: 1 });
  agent.send(FrameType.EOF, id);
  agent.send(FrameType.CLOSE, id);
  p.stdout.resume();
  p.stderr.resume();
  assert.deepEqual(await p.exit, { signal: 'SEGV', core: true });
  await p.closed;
});

it('EXIT before the output still delivers all output before closed; hang-up answers', async () => {
  const { conn, agent } = await setup();
  const p = await conn.exec({});
  const id = (await agent.waitFor((f) => f.type === FrameType.OPEN)).stream;
  agent.sendJson(FrameType.EXIT, id, { code: 0 });
  const big = Buffer.alloc(200_000, 'x');
  for (let i = 0; i < big.length; i += 65536) agent.send(FrameType.DATA, id, big.subarray(i, i + 65536));
  agent.send(FrameType.EOF, id);
  agent.send(FrameType.CLOSE, id);
  assert.deepEqual(await p.exit, { code: 0 });
  const out = collect(p.stdout);
  p.stderr.resume();
  await p.closed;
  assert.equal(out().length, 200_000);

  const q = await conn.exec({});
  const qid = (await agent.waitFor((f) => f.type === FrameType.OPEN && f.stream !== id)).stream;
  q.hangUp();
  await agent.waitFor((f) => f.type === FrameType.CLOSE && f.stream === qid);
  agent.send(FrameType.DATA, qid, Buffer.from('late, discarded'));
  agent.send(FrameType.CLOSE, qid);
  q.stdout.resume();
  q.stderr.resume();
  assert.equal(await q.exit, undefined);
  await q.closed;
});

it('windows: an unread stream gets no WINDOW, another stream flows; the gateway waits for its own window', async () => {
  const { conn, agent } = await setup();
  const a = await conn.exec({});
  const b = await conn.exec({});
  const [oa, ob] = agent.frames.filter((f) => f.type === FrameType.OPEN).map((f) => f.stream) as [number, number];
  const chunk = Buffer.alloc(65536, 1);
  for (let i = 0; i < 4; i++) agent.send(FrameType.DATA, oa, chunk); // a's whole window, nobody reads
  // b: the fake sends only what its window allows, and more as WINDOWs come
  let credit = STREAM_WINDOW;
  let sent = 0;
  const total = 1_000_000;
  const pumpB = () => {
    while (credit > 0 && sent < total) {
      const k = Math.min(credit, 65536, total - sent);
      agent.send(FrameType.DATA, ob, chunk.subarray(0, k));
      credit -= k;
      sent += k;
    }
  };
  agent.on('frame', (f) => {
    if (f.type === FrameType.WINDOW && f.stream === ob) {
      credit += f.payload.readUInt32BE(0);
      pumpB();
    }
  });
  pumpB();
  let got = 0;
  await new Promise<void>((resolve) => b.stdout.on('data', (c: Buffer) => (got += c.length) >= total && resolve()));
  assert.equal(got, total);
  assert.equal(agent.frames.filter((f) => f.type === FrameType.WINDOW && f.stream === oa).length, 0);
  assert.equal(conn.stats().maxStreamBufferedBytes, STREAM_WINDOW);
  // reading a grants its window again
  a.stdout.resume();
  const granted = () => agent.frames.filter((f) => f.type === FrameType.WINDOW && f.stream === oa).reduce((s, f) => s + f.payload.readUInt32BE(0), 0);
  for (let i = 0; i < 100 && granted() < STREAM_WINDOW; i++) await tick(10);
  assert.equal(granted(), STREAM_WINDOW);

  // gateway → agent: stdin stops at the agent's window, in chunks of ≤ 32 KiB
  const big = Buffer.alloc(STREAM_WINDOW + 100_000, 2);
  assert.equal(a.stdin.write(big), false);
  await tick(50);
  const stdinFrames = () => agent.frames.filter((f) => f.type === FrameType.DATA && f.stream === oa);
  assert.equal(stdinFrames().reduce((s, f) => s + f.payload.length, 0), STREAM_WINDOW);
  assert.ok(stdinFrames().every((f) => f.payload.length <= 32768));
  const drained = new Promise((r) => a.stdin.once('drain', r));
  agent.window(oa, 100_000);
  await drained;
  const sentBytes = () => stdinFrames().reduce((s, f) => s + f.payload.length, 0);
  for (let i = 0; i < 100 && sentBytes() < big.length; i++) await tick(10);
  assert.equal(sentBytes(), big.length);

  // one byte past a's window breaks the protocol
  a.stdout.pause();
  for (let i = 0; i < 4; i++) agent.send(FrameType.DATA, oa, chunk);
  agent.send(FrameType.DATA, oa, Buffer.from('!'));
  assert.match(await conn.closed, /^protocol error: window exceeded on stream/);
  assert.equal(await a.exit, undefined);
});

it('tcp-connect relays both ways with half-closes; OPEN_FAIL gives the reason', async () => {
  const { conn, agent } = await setup({ auto: false });
  const failing = conn.connectTcp('127.0.0.1', 1);
  const f1 = await agent.waitFor((f) => f.type === FrameType.OPEN);
  assert.deepEqual(FakeAgent.json(f1), { kind: 'tcp-connect', host: '127.0.0.1', port: 1 });
  agent.sendJson(FrameType.OPEN_FAIL, f1.stream, { error: 'connection refused' });
  await assert.rejects(failing, /^Error: connection refused$/);

  const opening = conn.connectTcp('127.0.0.1', 8000);
  const f2 = await agent.waitFor((f) => f.type === FrameType.OPEN && f.stream !== f1.stream);
  agent.sendJson(FrameType.OPEN_OK, f2.stream, {});
  const s = await opening;
  const got = collect(s);
  const ended = new Promise((r) => s.once('end', r));
  s.end('ping');
  await agent.waitFor((f) => f.type === FrameType.EOF && f.stream === f2.stream);
  agent.send(FrameType.DATA, f2.stream, Buffer.from('pong'));
  agent.send(FrameType.EOF, f2.stream);
  await ended;
  assert.equal(got(), 'pong');
  await agent.waitFor((f) => f.type === FrameType.CLOSE && f.stream === f2.stream); // both ends done: the Duplex closes
  agent.send(FrameType.CLOSE, f2.stream);
  await tick();
  assert.equal(conn.stats().streams, 0);
});

it('tcp-listen: accepted streams reach the callback; unknown listeners are refused', async () => {
  const { conn, agent } = await setup();
  const accepted: Array<[AgentStream, { host: string; port: number }]> = [];
  const l = await conn.listenTcp('127.0.0.1', 0, (s, origin) => accepted.push([s, origin]));
  assert.equal(l.port, 9001);
  const lid = (await agent.waitFor((f) => f.type === FrameType.OPEN)).stream;
  agent.sendJson(FrameType.OPEN, 0x8000_0001, { kind: 'tcp-accepted', listener: lid, originHost: '10.0.0.2', originPort: 40000 });
  agent.send(FrameType.DATA, 0x8000_0001, Buffer.from('hello'));
  await agent.waitFor((f) => f.type === FrameType.OPEN_OK && f.stream === 0x8000_0001);
  await tick();
  assert.equal(accepted.length, 1);
  assert.deepEqual(accepted[0]![1], { host: '10.0.0.2', port: 40000 });
  assert.equal(String(accepted[0]![0].read()), 'hello');
  accepted[0]![0].write('back');
  await agent.waitFor((f) => f.type === FrameType.DATA && f.stream === 0x8000_0001);
  agent.sendJson(FrameType.OPEN, 0x8000_0002, { kind: 'tcp-accepted', listener: 999, originHost: 'x', originPort: 1 });
  const fail = await agent.waitFor((f) => f.type === FrameType.OPEN_FAIL && f.stream === 0x8000_0002);
  assert.match(String(FakeAgent.json(fail).error), /no such listener/);
  l.close();
  await agent.waitFor((f) => f.type === FrameType.CLOSE && f.stream === lid);
  assert.equal(conn.stats().agentStreams, 1);
  agent.send(FrameType.CLOSE, 0x8000_0001);
  await agent.waitFor((f) => f.type === FrameType.CLOSE && f.stream === 0x8000_0001);
  assert.equal(conn.stats().agentStreams, 0);
  assert.equal(conn.isOpen, true);
});

it('auth-agent streams reach the session that forwards the agent, and only that one', async () => {
  const { conn, agent } = await setup();
  const streams: AgentStream[] = [];
  await conn.exec({ onAuthAgent: (s) => streams.push(s) });
  await conn.exec({});
  const [fwd, plain] = agent.frames.filter((f) => f.type === FrameType.OPEN) as [(typeof agent.frames)[0], (typeof agent.frames)[0]];
  assert.equal(FakeAgent.json(fwd).agentForward, true);
  assert.equal(FakeAgent.json(plain).agentForward, false);
  agent.sendJson(FrameType.OPEN, 0x9000_0000, { kind: 'auth-agent', session: fwd.stream });
  agent.sendJson(FrameType.OPEN, 0x9000_0001, { kind: 'auth-agent', session: plain.stream });
  await agent.waitFor((f) => f.type === FrameType.OPEN_OK && f.stream === 0x9000_0000);
  await agent.waitFor((f) => f.type === FrameType.OPEN_FAIL && f.stream === 0x9000_0001);
  assert.equal(streams.length, 1);
  assert.equal(streams[0]!.kind, 'auth-agent');
});

it('ends the connection on protocol errors, logging each once', async () => {
  const cases: Array<[(a: FakeAgent) => void, RegExp]> = [
    [(a) => a.send(FrameType.DATA, 77, Buffer.from('x')), /DATA on unknown stream 77/],
    [(a) => a.raw(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x30, 0, 0, 0, 0, 0, 0, 1])), /over the 65536-byte limit/],
    [(a) => a.raw(Buffer.from([0, 0, 0, 0, 0x30, 0, 1, 0, 0, 0, 0, 1])), /reserved/],
    [(a) => a.raw(encodeFrame(FrameType.RESPONSE, 0, Buffer.from('{not json'))), /RESPONSE payload is not JSON/],
    [(a) => a.sendJson(FrameType.OPEN, 5, { kind: 'auth-agent', session: 1 }), /gateway's half/],
    [(a) => a.sendJson(FrameType.OPEN, 0x8000_0000, { kind: 'exec' }), /OPEN invalid payload/],
    [
      (a) => {
        for (let i = 0; i < 257; i++) a.sendJson(FrameType.OPEN, 0x8000_0000 + i, { kind: 'auth-agent', session: 1 });
      },
      /more than 256 streams/,
    ],
    [(a) => a.raw(Buffer.alloc(64, 0xee)), /unexpected frame type|reserved/],
  ];
  for (const [act, re] of cases) {
    warns.length = 0;
    const { conn, agent } = await setup();
    if (re.source.includes('256')) {
      // auth-agent opens for a forwarding session are accepted up to the limit
      await conn.exec({ onAuthAgent: () => {} });
      const sid = (await agent.waitFor((f) => f.type === FrameType.OPEN)).stream;
      for (let i = 0; i < 257; i++) agent.sendJson(FrameType.OPEN, 0x8000_0000 + i, { kind: 'auth-agent', session: sid });
    } else act(agent);
    const reason = await conn.closed;
    assert.match(reason, /^protocol error: /);
    assert.match(reason, re);
    assert.equal(warns.length, 1, reason);
    await new Promise((r) => (agent.closed ? r(null) : agent.once('closed', r)));
  }
});

it('refuses an agent with no version in common, naming both ranges', async () => {
  const s = serve({ version: 0, ackJson: { agent: 'future', minVersion: 2, maxVersion: 3 } });
  await s.listening;
  await assert.rejects(
    AgentConnection.connect(s.path, { deadline: Date.now() + 2000 }),
    /speaks protocol versions 2\.\.3, the gateway 1\.\.1/,
  );
});

it('connect retries until the socket appears, and gives up at the deadline or on abort', async () => {
  const path = join(dir, 'late.sock');
  const connecting = AgentConnection.connect(path, { deadline: Date.now() + 3000 });
  await tick(150);
  const s = serve({}, path);
  const conn = await connecting;
  conns.push(conn);
  assert.equal(conn.hello.agent, 'fake-agent 0.0.1');
  await s.nextAgent();

  const t0 = Date.now();
  await assert.rejects(AgentConnection.connect(join(dir, 'never.sock'), { deadline: Date.now() + 200 }), /did not answer in time \(ENOENT\)/);
  assert.ok(Date.now() - t0 < 1000);
  const silent = serve({ silent: true });
  await silent.listening;
  await assert.rejects(AgentConnection.connect(silent.path, { deadline: Date.now() + 200 }), /no HELLO_ACK/);
  let abort!: () => void;
  const aborting = AgentConnection.connect(silent.path, { deadline: Date.now() + 5000, abort: new Promise<void>((r) => (abort = r)) });
  await tick(50);
  abort();
  await assert.rejects(aborting, /went away/);
});

it('the connection ends when the agent hangs up: streams end, exit is undefined', async () => {
  const { conn, agent } = await setup();
  const p = await conn.exec({});
  p.stdout.resume();
  p.stderr.resume();
  agent.sock.destroy();
  assert.equal(await conn.closed, 'socket closed');
  assert.equal(await p.exit, undefined);
  await p.closed;
});

it('stops reading an agent that leaves its answers unread, and goes on once it reads', async () => {
  const { conn, agent } = await setup();
  agent.sock.pause();
  const open = Buffer.concat(
    Array.from({ length: 1000 }, (_, i) => encodeFrame(FrameType.OPEN, 0x8000_0000 + i, Buffer.from('{"kind":"auth-agent","session":1}'))),
  );
  let sent = 0;
  await new Promise<void>((resolve) => {
    const go = () => {
      while (sent < 400) {
        sent++;
        if (!agent.sock.write(open)) return void agent.sock.once('drain', go);
      }
      resolve();
    };
    go();
    setTimeout(resolve, 1500); // the gateway stopped reading: our writes stall too
  });
  await tick(100);
  const s = conn.stats();
  assert.ok(s.writeBufferBytes < 5 * 1024 * 1024, `${s.writeBufferBytes}`);
  assert.equal(conn.isOpen, true);
  agent.sock.resume();
  await conn.ping(5000);
  assert.equal(conn.isOpen, true);
});
