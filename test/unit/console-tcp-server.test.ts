import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ConsoleHub } from '../../src/console/console-hub.js';
import {
  isLoopbackHost,
  parseHostPort,
  startConsoleTcpServer,
  type ConsoleTcpServer,
  type ConsoleTcpServerOptions,
} from '../../src/console/console-tcp-server.js';
import { UserError } from '../../src/util/errors.js';
import { FakeVm } from '../helpers/fake-vm.js';

const root = mkdtempSync(join(tmpdir(), 'sshvisor-console-tcp-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDataDir = (): string => join(root, `data${n++}`);

const T = new Date('2026-11-22T10:00:00Z');
const STARTED = '[sshvisor 2026-11-22T10:00:00Z] VM started\r\n';


type LogLine = { level: number; msg: string; [k: string]: unknown };

interface Rig {
  hub: ConsoleHub;
  server: ConsoleTcpServer;
  logs: LogLine[];
  vm(name: string): FakeVm;
  client(name?: string): Promise<Client>;
  done(): Promise<void>;
}

async function rig(opts: Partial<ConsoleTcpServerOptions> & { capacity?: number } = {}): Promise<Rig> {
  const hub = new ConsoleHub({ dataDir: freshDataDir(), now: () => T, capacity: opts.capacity });
  const logs: LogLine[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) });
  const server = await startConsoleTcpServer({
    address: '127.0.0.1:0',
    allowPublic: false,
    hub,
    replayLines: 100,
    logger,
    ...opts,
  });
  return {
    hub,
    server,
    logs,
    vm(name) {
      const vm = new FakeVm(name);
      hub.attach(vm);
      return vm;
    },
    async client(name) {
      const c = await Client.connect(server.port);
      if (name !== undefined) c.socket.write(`${name}\n`);
      return c;
    },
    async done() {
      await server.close();
      await hub.close();
    },
  };
}

class Client {
  private chunks: Buffer[] = [];
  private waiters: Array<() => void> = [];
  isClosed = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on('data', (b: Buffer) => {
      this.chunks.push(b);
      this.wake();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.isClosed = true;
        this.wake();
        resolve();
      }),
    );
  }

  static connect(port: number): Promise<Client> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => {
        s.off('error', reject);
        resolve(new Client(s));
      });
      s.once('error', reject);
    });
  }

  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }

  text(): string {
    return this.bytes().toString('latin1');
  }

  /** Wait until the received bytes satisfy `ok` (or the socket closes, or time runs out). */
  async until(ok: (c: Client) => boolean, what: string, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!ok(this)) {
      const left = deadline - Date.now();
      if (left <= 0 || this.isClosed) {
        throw new Error(`client never got ${what}; got ${JSON.stringify(this.text().slice(-300))} (closed: ${this.isClosed})`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  waitFor(s: string, timeoutMs?: number): Promise<void> {
    return this.until((c) => c.text().includes(s), JSON.stringify(s), timeoutMs);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

async function eventually(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms).unref())]);
}

describe('console tcp server: address checks', () => {
  test('parseHostPort', () => {
    assert.deepEqual(parseHostPort('127.0.0.1:7022'), { host: '127.0.0.1', port: 7022 });
    assert.deepEqual(parseHostPort('[::1]:0'), { host: '::1', port: 0 });
    assert.deepEqual(parseHostPort('localhost:65535'), { host: 'localhost', port: 65535 });
    for (const bad of ['127.0.0.1', ':7022', '127.0.0.1:70000', '::1:7022', '[nope]:1', 'a b:1', '']) {
      assert.throws(() => parseHostPort(bad), UserError, bad);
    }
  });

  test('isLoopbackHost', () => {
    for (const h of ['127.0.0.1', '127.255.0.9', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', 'localhost', 'LOCALHOST']) {
      assert.equal(isLoopbackHost(h), true, h);
    }
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', '192.168.1.1', 'example.com', 'localhost.example.com']) {
      assert.equal(isLoopbackHost(h), false, h);
    }
  });

  test('a non-loopback address is refused without allowPublic, in one line', async () => {
    const hub = new ConsoleHub();
    const logs: LogLine[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) });
    for (const address of ['0.0.0.0:0', '[::]:0', '10.1.2.3:0', 'example.com:0']) {
      await assert.rejects(
        startConsoleTcpServer({ address, allowPublic: false, hub, replayLines: 10, logger }),
        (err: unknown) => {
          assert.ok(err instanceof UserError);
          assert.match(err.message, /not a loopback address/);
          assert.match(err.message, /--console-tcp-public/);
          assert.doesNotMatch(err.message, /\n/);
          return true;
        },
        address,
      );
    }
    assert.equal(logs.length, 0, 'nothing logged for a refused start');
    // allowPublic lets it bind.
    const server = await startConsoleTcpServer({ address: '0.0.0.0:0', allowPublic: true, hub, replayLines: 10, logger });
    assert.ok(server.port > 0);
    await server.close();
    await hub.close();
  });

  test('a port in use is a one-line UserError', async () => {
    const r = await rig();
    try {
      await assert.rejects(
        startConsoleTcpServer({ address: `127.0.0.1:${r.server.port}`, allowPublic: false, hub: r.hub, replayLines: 1, logger: pino({ level: 'silent' }) }),
        (err: unknown) => err instanceof UserError && /EADDRINUSE/.test(err.message) && !err.message.includes('\n'),
      );
    } finally {
      await r.done();
    }
  });

  test('warns once at start that the stream is unauthenticated plaintext', async () => {
    const r = await rig();
    try {
      const warnings = r.logs.filter((l) => l.level === 40);
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!.msg, /unauthenticated plaintext/);
      (await r.client('alice')).socket.destroy();
      await eventually(() => r.logs.some((l) => l.vm === 'alice'), 'connection log');
      assert.equal(r.logs.filter((l) => l.level === 40).length, 1);
    } finally {
      await r.done();
    }
  });
});

describe('console tcp server: streaming', () => {
  test('replay of the last replayLines lines, then live bytes; logged once with remote and name', async () => {
    const r = await rig({ replayLines: 2 });
    try {
      const vm = r.vm('alice');
      vm.out('one\r\ntwo\r\nthree\r\n');
      const c = await r.client('alice');
      await c.waitFor('three\r\n');
      assert.equal(c.text(), 'two\r\nthree\r\n');
      vm.out('four\r\nfi');
      vm.out('ve\r\n');
      await c.waitFor('five\r\n');
      assert.equal(c.text(), 'two\r\nthree\r\nfour\r\nfive\r\n');
      const conn = r.logs.filter((l) => l.vm === 'alice');
      assert.equal(conn.length, 1);
      assert.match(String(conn[0]!.remote), /^127\.0\.0\.1:\d+$/);
      c.socket.destroy();
    } finally {
      await r.done();
    }
  });

  test('replay includes the markers and history seeded from console.log; a name not booted yet waits for its boot', async () => {
    const r = await rig({ replayLines: 100 });
    try {
      const c = await r.client('later');
      await eventually(() => r.hub.get('later')?.viewerCount === 1, 'viewer');
      assert.equal(c.text(), '');
      const vm = r.vm('later');
      vm.out('hello\r\n');
      await c.waitFor('hello\r\n');
      assert.equal(c.text(), `${STARTED}hello\r\n`);
      c.socket.destroy();
    } finally {
      await r.done();
    }
  });

  test('two clients see identical bytes', async () => {
    const r = await rig({ replayLines: 3 });
    try {
      const vm = r.vm('bob');
      vm.out('old line\r\n');
      const [a, b] = [await r.client('bob'), await r.client('bob')];
      await eventually(() => r.hub.get('bob')?.viewerCount === 2, 'two viewers');
      const sent: Buffer[] = [];
      for (let i = 0; i < 300; i++) {
        const chunk = Buffer.alloc(1 + ((i * 7919) % 3000), i & 0xff);
        chunk.write(`\r\nline ${i}\r\n`, 0, 'latin1');
        sent.push(chunk);
        vm.out(chunk);
        if (i % 50 === 0) await new Promise((res) => setImmediate(res));
      }
      vm.out('END\n');
      const want = Buffer.concat([Buffer.from(`${STARTED}old line\r\n`), ...sent, Buffer.from('END\n')]);
      await a.until((c) => c.bytes().length >= want.length, `${want.length} bytes`);
      await b.until((c) => c.bytes().length >= want.length, `${want.length} bytes`);
      assert.ok(a.bytes().equals(want), 'client a got the stream');
      assert.ok(b.bytes().equals(a.bytes()), 'clients got the same bytes');
      a.socket.destroy();
      b.socket.destroy();
    } finally {
      await r.done();
    }
  });

  test('input after the name is discarded and the stream carries on', async () => {
    const r = await rig({ replayLines: 0 });
    try {
      const vm = r.vm('carol');
      const c = await r.client();
      c.socket.write('carol\nls -la\r\n');
      await eventually(() => r.hub.get('carol')?.viewerCount === 1, 'viewer');
      c.socket.write('reboot\n\x03\x04');
      c.socket.write(Buffer.alloc(100_000, 0x71));
      await new Promise((res) => setTimeout(res, 30));
      vm.out('still here\r\n');
      await c.waitFor('still here\r\n');
      assert.equal(c.text(), 'still here\r\n');
      assert.deepEqual(vm.typed, []);
      assert.equal(c.isClosed, false);
      c.socket.destroy();
    } finally {
      await r.done();
    }
  });

  test('client close closes its viewer; a channel brought up only for it is released', async () => {
    const r = await rig();
    try {
      r.vm('dave');
      const c1 = await r.client('dave');
      const c2 = await r.client('nobody');
      await eventually(() => r.hub.get('dave')?.viewerCount === 1 && r.hub.get('nobody')?.viewerCount === 1, 'viewers');
      c1.socket.destroy();
      c2.socket.end(); // FIN alone counts as gone: a quiet console would never notice otherwise
      await eventually(() => r.hub.get('dave')?.viewerCount === 0, 'dave viewer closed');
      await eventually(() => r.hub.get('nobody') === undefined, 'unused channel released');
      assert.ok(r.hub.get('dave'), 'a channel in use by a VM stays');
    } finally {
      await r.done();
    }
  });

  test('a client that stops reading is skipped forward; the VM and other clients never wait', async () => {
    const r = await rig({ capacity: 64 * 1024, replayLines: 0, maxQueueBytes: 32 * 1024 });
    try {
      const vm = r.vm('erin');
      const slow = await r.client('erin');
      const fast = await r.client('erin');
      await eventually(() => r.hub.get('erin')?.viewerCount === 2, 'viewers');
      slow.socket.pause();
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      const total = 512 * chunk.length; // 32 MiB: well past any socket buffers
      for (let i = 0; i < 512; i++) {
        vm.out(chunk);
        if (i % 8 === 0) await new Promise((res) => setImmediate(res));
      }
      vm.out('\r\nEND\r\n');
      await fast.waitFor('END\r\n', 20_000);
      slow.socket.resume();
      await slow.waitFor('END\r\n', 20_000);
      assert.match(slow.text(), /\[sshvisor: \d+ bytes skipped\]\r\n/);
      assert.ok(slow.bytes().length < total, 'the slow client did not get everything');
      assert.ok(r.hub.get('erin')!.bytesSkipped > 0);
      slow.socket.destroy();
      fast.socket.destroy();
    } finally {
      await r.done();
    }
  });
});

describe('console tcp server: refusals', () => {
  test('an invalid name gets one error line and a close, and no channel', async () => {
    const r = await rig();
    try {
      for (const bad of ['Bad_Name', '../etc', '']) {
        const c = await r.client(bad);
        await withTimeout(c.closed, 3000, 'close');
        assert.match(c.text(), /^sshvisor: invalid VM name .*\n$/);
        assert.equal(c.text().indexOf('\n'), c.text().length - 1, 'one line');
      }
      assert.deepEqual(r.hub.names, []);
      assert.ok(r.logs.some((l) => l.msg.includes('refused') && l.vm === 'Bad_Name'));
    } finally {
      await r.done();
    }
  });

  test('a \\r\\n line ending and surrounding spaces are fine', async () => {
    const r = await rig();
    try {
      r.vm('frank').out('hi\r\n');
      const c = await r.client();
      c.socket.write(' frank \r\n');
      await c.waitFor('hi\r\n');
      c.socket.destroy();
    } finally {
      await r.done();
    }
  });

  test('no newline within 64 bytes: error line and close', async () => {
    const r = await rig();
    try {
      const c = await r.client();
      c.socket.write('a'.repeat(100));
      await withTimeout(c.closed, 3000, 'close');
      assert.match(c.text(), /^sshvisor: expected a VM name and a newline within 64 bytes\n$/);
    } finally {
      await r.done();
    }
  });

  test('a client that leaves without a name is logged once', async () => {
    const r = await rig();
    try {
      const c = await r.client();
      c.socket.end('ali');
      await withTimeout(c.closed, 3000, 'close');
      await eventually(() => r.logs.some((l) => l.msg.includes('before sending a VM name')), 'log');
      assert.equal(r.logs.filter((l) => typeof l.remote === 'string').length, 1);
      assert.deepEqual(r.hub.names, []);
    } finally {
      await r.done();
    }
  });

  test('no name within the timeout: error line and close', async () => {
    const r = await rig({ nameTimeoutMs: 100 });
    try {
      const started = Date.now();
      const c = await r.client();
      c.socket.write('slo');
      await withTimeout(c.closed, 3000, 'close');
      assert.ok(Date.now() - started >= 90);
      assert.match(c.text(), /^sshvisor: no VM name received within 100ms.*\n$/);
      assert.ok(r.logs.some((l) => l.msg.includes('refused') && String(l.reason).includes('no VM name')));
    } finally {
      await r.done();
    }
  });
});

describe('console tcp server: close', () => {
  test('close() ends every client and stops listening', async () => {
    const r = await rig();
    const vm = r.vm('gina');
    vm.out('x\r\n');
    const viewing = await r.client('gina');
    await viewing.waitFor('x\r\n');
    const naming = await r.client(); // has not sent a name yet
    await withTimeout(r.server.close(), 3000, 'close()');
    await withTimeout(Promise.all([viewing.closed, naming.closed]), 3000, 'clients closing');
    assert.equal(r.hub.get('gina')?.viewerCount, 0);
    await assert.rejects(Client.connect(r.server.port), /ECONNREFUSED/);
    await r.server.close(); // idempotent
    await r.hub.close();
  });

  test('the hub closing ends its viewers', async () => {
    const r = await rig();
    try {
      r.vm('hal');
      const c = await r.client('hal');
      await eventually(() => r.hub.get('hal')?.viewerCount === 1, 'viewer');
      await r.hub.close();
      await withTimeout(c.closed, 3000, 'client close');
    } finally {
      await r.done();
    }
  });
});
