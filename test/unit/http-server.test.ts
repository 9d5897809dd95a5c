import { UserError } from '../../src/util/errors.js';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { WebSocket } from 'ws';
import { ConsoleHub } from '../../src/console/console-hub.js';
import { startHttpServer, checkHttpAddress, type HttpServer } from '../../src/http/http-server.js';
import type { Principal } from '../../src/http/tokens.js';
import type { VmStatusReport } from '../../src/ops/vm-status.js';
import { createLogger } from '../../src/util/log.js';
import { FakeVm } from '../helpers/fake-vm.js';

const report = (name: string, state: VmStatusReport['state'] = 'running'): VmStatusReport => ({
  name, state, image: 'default', kernel: 'Linux test', vcpus: 1, memoryMiB: 256, diskMiB: 1024, pid: null, startedAt: null, uptimeSeconds: null, resumedThisRun: false,
  cpuSeconds: null, sessions: 0, consoleViewers: 0, suspendedSince: null, owners: [], boots: 1, lastBootAt: null, suspends: 0,
  lastSuspendAt: null, resumes: 0, lastResumeAt: null, lastExit: null, console: [], hung: null, restart: null,
});

const TOKENS: Record<string, Principal> = {
  admin: { kind: 'admin' },
  'alice-read': { kind: 'vm', vm: 'alice', access: 'read' },
  'alice-owner': { kind: 'vm', vm: 'alice', access: 'owner' },
};

/** The HTTP front door with fake ops and a memory-only console hub fed by a FakeVm. */
describe('HTTP server with fakes', () => {
  let server: HttpServer;
  const hub = new ConsoleHub();
  const vm = new FakeVm('alice');
  const stops: string[] = [];
  const url = (path: string): string => `http://127.0.0.1:${server.port}${path}`;
  const get = (path: string, token?: string) => fetch(url(path), { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const socket = (name: string, token: string): Promise<{ ws: WebSocket; frames: Buffer[]; hello: { readOnly: boolean } }> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${server.port}/api/vms/${name}/console/ws`, ['sshvisor.console', `bearer.${token}`]);
      const frames: Buffer[] = [];
      ws.on('message', (data, binary) => {
        if (!binary) return resolve({ ws, frames, hello: JSON.parse(String(data)) as { readOnly: boolean } });
        frames.push(data as Buffer);
      });
      ws.once('unexpected-response', (_r, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.once('error', reject);
    });
  const waitFor = async (cond: () => boolean): Promise<void> => {
    for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(cond());
  };

  before(async () => {
    hub.attach(vm);
    vm.out('early line\r\n');
    server = await startHttpServer({
      address: '127.0.0.1:0',
      allowPublic: false,
      ops: {
        names: () => ['alice', 'bob'],
        isKnown: (n) => n === 'alice' || n === 'bob',
        report: (n) => report(n),
        stop: async (n) => (stops.push(n), { kind: 'not-running' }),
        suspend: async () => ({ kind: 'not-running' }),
        resume: async (n) => ({ already: true, report: report(n) }),
        create: () => {
          throw new UserError('no image "nope"; images: default');
        },
      },
      history: (n, o) => hub.history(n, o),
      channel: (n) => hub.channel(n),
      isKnown: (n) => n === 'alice' || n === 'bob',
      replayLines: 10,
      auth: { resolve: (t) => (t === undefined ? undefined : TOKENS[t]) },
      metrics: { contentType: 'text/plain; version=0.0.4; charset=utf-8', render: async () => 'm 1\n' },
      logger: createLogger('silent'),
    });
  });
  after(async () => {
    await server.close();
    await hub.close();
  });

  test('refuses non-loopback addresses unless allowed, and malformed ones', () => {
    assert.throws(() => checkHttpAddress('0.0.0.0:8080', false), /not a loopback address.*--http-public/);
    assert.deepEqual(checkHttpAddress('0.0.0.0:8080', true), { host: '0.0.0.0', port: 8080 });
    assert.deepEqual(checkHttpAddress('[::1]:8080', false), { host: '::1', port: 8080 });
    assert.throws(() => checkHttpAddress('localhost', false), /is not HOST:PORT/);
    assert.throws(() => checkHttpAddress('127.0.0.1:99999', false), /is not HOST:PORT/);
  });

  test('a list filtered by token; metrics for admin only', async () => {
    assert.equal((await get('/api/vms')).status, 401);
    const all = (await (await get('/api/vms', 'admin')).json()) as { vms: { name: string }[] };
    assert.deepEqual(all.vms.map((v) => v.name), ['alice', 'bob']);
    const mine = (await (await get('/api/vms', 'alice-read')).json()) as { vms: { name: string }[] };
    assert.deepEqual(mine.vms.map((v) => v.name), ['alice']);
    assert.equal(await (await get('/metrics', 'admin')).text(), 'm 1\n');
    assert.equal((await get('/metrics', 'alice-owner')).status, 403);
  });

  test('console lines come from the hub', async () => {
    const r = (await (await get('/api/vms/alice/console?lines=5', 'alice-read')).json()) as { lines: string[] };
    assert.ok(r.lines.includes('early line'), JSON.stringify(r.lines));
  });

  test('an owner token may stop its VM, a read token may not', async () => {
    const denied = await fetch(url('/api/vms/alice/stop'), { method: 'POST', headers: { authorization: 'Bearer alice-read' } });
    assert.equal(denied.status, 403);
    const other = await fetch(url('/api/vms/bob/stop'), { method: 'POST', headers: { authorization: 'Bearer alice-owner' } });
    assert.equal(other.status, 403);
    assert.deepEqual(stops, []);
    const ok = await fetch(url('/api/vms/alice/stop'), { method: 'POST', headers: { authorization: 'Bearer alice-owner' } });
    assert.equal(ok.status, 200);
    assert.equal(((await ok.json()) as { result: string }).result, 'not-running');
    assert.deepEqual(stops, ['alice']);
  });

  test('the console socket replays, follows, and takes keystrokes from owners only', async () => {
    const reader = await socket('alice', 'alice-read');
    const owner = await socket('alice', 'alice-owner');
    assert.equal(reader.hello.readOnly, true);
    assert.equal(owner.hello.readOnly, false);
    const text = (c: { frames: Buffer[] }): string => Buffer.concat(c.frames).toString();
    await waitFor(() => text(reader).includes('early line') && text(owner).includes('early line'));
    vm.out('live line\r\n');
    await waitFor(() => text(reader).includes('live line') && text(owner).includes('live line'));
    reader.ws.send(Buffer.from('from-reader'));
    owner.ws.send(Buffer.from('from-owner'));
    await waitFor(() => vm.typed.join('').includes('from-owner'));
    assert.ok(!vm.typed.join('').includes('from-reader'));
    assert.equal(hub.viewerCount, 2);
    reader.ws.close();
    owner.ws.close();
    await waitFor(() => hub.viewerCount === 0);
  });

  test('a chunked body past the limit gets 413 without being read to the end', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(url('/api/vms/alice/stop'), { method: 'POST', headers: { authorization: 'Bearer alice-owner', 'transfer-encoding': 'chunked' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      // 20 KiB now, and more that is never needed.
      req.write('x'.repeat(20 * 1024));
    });
    assert.equal(status, 413);
    assert.deepEqual(stops, ['alice'], 'nothing more was stopped');
  });

  test('console socket refusals: no token, other VM, cross-origin', async () => {
    await assert.rejects(socket('alice', 'nope'), /HTTP 401/);
    await assert.rejects(socket('bob', 'alice-read'), /HTTP 403/);
    await assert.rejects(
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${server.port}/api/vms/alice/console/ws`, ['sshvisor.console', 'bearer.admin'], { origin: 'http://evil.example' });
        ws.once('open', resolve);
        ws.once('unexpected-response', (_r, res) => reject(new Error(`HTTP ${res.statusCode}`)));
        ws.once('error', reject);
      }),
      /HTTP 403/,
    );
  });
});
