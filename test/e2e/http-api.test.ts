import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { SshvisorServer } from '../helpers/sshvisor-server.js';
import { parsePrometheusText, sample, type Exposition } from '../helpers/prometheus-text.js';

/**
 * The HTTP front door (--http) of a real server with a real VM: bearer-token
 * auth (admin, read-only and owner VM tokens issued over real OpenSSH),
 * the JSON API's answers and refusals, the console WebSocket's auth, and
 * /metrics as Prometheus text that moves as the VM boots, suspends, resumes.
 */
describe('HTTP API and metrics', () => {
  let server: SshvisorServer;
  let alice: string;
  let bob: string;
  let admin: string;

  const call = async (path: string, opts: { token?: string; method?: string; body?: string; headers?: Record<string, string> } = {}) => {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
    const res = await fetch(server.httpUrl + path, { method: opts.method ?? 'GET', headers, body: opts.body });
    const text = await res.text();
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // /metrics is text.
    }
    return { status: res.status, text, json, headers: res.headers };
  };
  const metrics = async (): Promise<Exposition> => {
    const r = await call('/metrics', { token: admin });
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return parsePrometheusText(r.text);
  };
  const issueToken = async (key: string, vm: string, args: string[] = []): Promise<string> => {
    const r = await server.ssh(`${vm}+token`, key, args);
    assert.equal(r.code, 0, r.stderr);
    const token = r.stdout.trim();
    assert.match(token, /^sv[ro]_[A-Za-z0-9_-]{40,}$/);
    return token;
  };
  const wsOpen = (vm: string, token: string): Promise<{ ws: WebSocket; hello: Record<string, unknown> } | { status: number }> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${server.httpPort}/api/vms/${vm}/console/ws`, ['sshvisor.console', `bearer.${token}`]);
      ws.once('unexpected-response', (_req, res) => {
        resolve({ status: res.statusCode ?? 0 });
        ws.terminate();
      });
      ws.once('message', (data, isBinary) => {
        assert.equal(isBinary, false, 'the first frame is the hello');
        resolve({ ws, hello: JSON.parse(String(data)) as Record<string, unknown> });
      });
      ws.once('error', (err) => reject(err));
    });

  before(async () => {
    server = new SshvisorServer([], { http: true });
    alice = server.makeKey('alice');
    bob = server.makeKey('bob');
    await server.start();
    admin = server.adminToken();
  });
  after(() => server.stop());

  it('makes an admin token 0600 in the data dir', () => {
    assert.equal(statSync(join(server.dataDir, 'http-admin-token')).mode & 0o777, 0o600);
    assert.match(admin, /^sva_/);
  });

  it('refuses calls without a token or with a wrong one (401, JSON error)', async () => {
    for (const path of ['/api/vms', '/api/vms/alice', '/metrics', '/api/vms/alice/stop']) {
      const none = await call(path, { method: path.endsWith('stop') ? 'POST' : 'GET' });
      assert.equal(none.status, 401, path);
      assert.match(String(none.json.error), /missing bearer token/);
      assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
    }
    const wrong = await call('/api/vms', { token: 'sva_not-the-token-at-all-0123456789' });
    assert.equal(wrong.status, 401);
    assert.match(String(wrong.json.error), /unknown or revoked token/);
    const basic = await call('/api/vms', { headers: { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` } });
    assert.equal(basic.status, 401);
  });

  it('metrics parse as Prometheus text and move when a VM boots', async (t) => {
    const before = await metrics();
    assert.equal(before.types.get('sshvisor_vm_boot_duration_seconds'), 'histogram');
    assert.equal(sample(before, 'sshvisor_vm_boots_total{how="boot"}'), 0);
    assert.equal(sample(before, 'sshvisor_vms{state="running"}'), 0);
    const r = await server.ssh('alice', alice, ['echo http-boot-$((6*7)) > /dev/ttyS0; echo up']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'up');
    const m = await metrics();
    assert.equal(sample(m, 'sshvisor_vm_boots_total{how="boot"}'), 1);
    assert.equal(sample(m, 'sshvisor_vms{state="running"}'), 1);
    assert.equal(sample(m, 'sshvisor_vm_boot_duration_seconds_count{how="boot"}'), 1);
    assert.ok(sample(m, 'sshvisor_vm_boot_duration_seconds_sum{how="boot"}') > 0);
    t.diagnostic(`boot to ready: ${sample(m, 'sshvisor_vm_boot_duration_seconds_sum{how="boot"}').toFixed(2)} s`);
    assert.ok(sample(m, 'sshvisor_console_bytes_captured_total') > sample(before, 'sshvisor_console_bytes_captured_total'));
    assert.ok(sample(m, 'sshvisor_ssh_connections_total') > sample(before, 'sshvisor_ssh_connections_total'));
  });

  it('counts SSH authentication failures', async () => {
    const before = sample(await metrics(), 'sshvisor_ssh_auth_failures_total');
    const r = await server.ssh('alice', bob, ['true']);
    assert.equal(r.code, 255, 'bob may not log in as alice');
    assert.ok(sample(await metrics(), 'sshvisor_ssh_auth_failures_total') > before);
  });

  it('a read-only VM token reads its VM and console, and nothing else', async () => {
    const token = await issueToken(alice, 'alice');
    assert.match(token, /^svr_/);
    const vm = await call('/api/vms/alice', { token });
    assert.equal(vm.status, 200, vm.text);
    assert.equal(vm.json.name, 'alice');
    assert.equal(vm.json.state, 'running');
    const list = await call('/api/vms', { token });
    assert.deepEqual((list.json.vms as { name: string }[]).map((v) => v.name), ['alice']);
    const tail = await call('/api/vms/alice/console?lines=500', { token });
    assert.equal(tail.status, 200);
    assert.ok((tail.json.lines as string[]).some((l) => l.includes('http-boot-42')), `the line the guest printed, in: ${JSON.stringify(tail.json.lines)}`);
    const stop = await call('/api/vms/alice/stop', { token, method: 'POST' });
    assert.equal(stop.status, 403);
    assert.match(String(stop.json.error), /may only read alice/);
    // bob's name exists (his key claims it) but this token is not for it.
    await issueToken(bob, 'bob');
    assert.equal((await call('/api/vms/bob', { token })).status, 403);
    assert.equal((await call('/api/vms/bob/console', { token })).status, 403);
    assert.equal((await call('/metrics', { token })).status, 403);
    assert.equal((await call('/api/vms/alice', { token: admin })).json.state, 'running', 'still running');

    const ws = await wsOpen('alice', token);
    assert.ok('ws' in ws, 'the console socket opens');
    assert.deepEqual(ws.hello, { type: 'hello', vm: 'alice', readOnly: true });
    ws.ws.close();
    const other = await wsOpen('bob', token);
    assert.deepEqual(other, { status: 403 });
    const nobody = await wsOpen('alice', 'svr_nope-nope-nope-nope-nope-nope-nope-nope-nope');
    assert.deepEqual(nobody, { status: 401 });
  });

  it('only an owner key gets a token for a name', async () => {
    const r = await server.ssh('alice+token', bob);
    assert.equal(r.code, 255);
    assert.equal(r.stdout, '');
  });

  it('an owner token suspends; the admin token resumes and stops; metrics follow', async (t) => {
    const owner = await issueToken(alice, 'alice', ['rw']);
    assert.match(owner, /^svo_/);
    const ws = await wsOpen('alice', owner);
    assert.ok('ws' in ws);
    assert.equal(ws.hello.readOnly, false);
    ws.ws.close();
    const suspended = await call('/api/vms/alice/suspend', { token: owner, method: 'POST' });
    assert.equal(suspended.status, 200, suspended.text);
    assert.equal(suspended.json.result, 'suspended');
    assert.equal((suspended.json.vm as { state: string }).state, 'suspended');
    let m = await metrics();
    assert.equal(sample(m, 'sshvisor_vm_suspends_total'), 1);
    assert.equal(sample(m, 'sshvisor_vms{state="suspended"}'), 1);
    assert.equal(sample(m, 'sshvisor_vms{state="running"}'), 0);

    const resumed = await call('/api/vms/alice/resume', { token: admin, method: 'POST' });
    assert.equal(resumed.status, 200, resumed.text);
    assert.equal(resumed.json.result, 'resumed');
    m = await metrics();
    assert.equal(sample(m, 'sshvisor_vm_resumes_total'), 1);
    assert.equal(sample(m, 'sshvisor_vm_resume_duration_seconds_count'), 1);
    t.diagnostic(`resume to running: ${sample(m, 'sshvisor_vm_resume_duration_seconds_sum').toFixed(2)} s`);
    assert.equal(sample(m, 'sshvisor_vms{state="running"}'), 1);
    assert.equal(sample(m, 'sshvisor_vm_boots_total{how="boot"}'), 1, 'a resume is not a boot');

    const stopped = await call('/api/vms/alice/stop', { token: admin, method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.equal(stopped.status, 200, stopped.text);
    assert.equal(stopped.json.result, 'stopped');
    assert.equal((stopped.json.vm as { state: string }).state, 'stopped');
    // alice, and bob, whose name is claimed but who never booted.
    assert.equal(sample(await metrics(), 'sshvisor_vms{state="stopped"}'), 2);
  });

  it('revoked tokens get 401', async () => {
    const token = await issueToken(alice, 'alice');
    assert.equal((await call('/api/vms/alice', { token })).status, 200);
    const r = await server.ssh('alice+token', alice, ['revoke']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^revoked \d+ tokens? of alice$/m);
    assert.equal((await call('/api/vms/alice', { token })).status, 401);
  });

  it('answers bad requests with a status and a JSON error', async () => {
    const expect = async (path: string, status: number, pattern: RegExp, opts: Parameters<typeof call>[1] = {}): Promise<void> => {
      const r = await call(path, { token: admin, ...opts });
      assert.equal(r.status, status, `${path}: ${r.text}`);
      assert.match(String(r.json.error), pattern, path);
    };
    await expect('/api/vms/alice/console?lines=abc', 400, /lines must be a whole number/);
    await expect('/api/vms/alice/console?lines=0', 400, /lines must be/);
    await expect('/api/vms/Alice', 400, /invalid VM name/);
    await expect('/api/vms/no-such-vm', 404, /no VM named no-such-vm/);
    await expect('/api/vms/alice/reboot', 404, /no such endpoint/);
    await expect('/api/nothing', 404, /no such endpoint/);
    await expect('/nothing', 404, /no such page/);
    await expect('/api/vms/alice/stop', 405, /use POST/);
    await expect('/api/vms/alice', 405, /use GET/, { method: 'DELETE' });
    await expect('/api/vms/alice/stop', 400, /not JSON/, { method: 'POST', body: 'stop please' });
    await expect('/api/vms/alice/stop', 413, /too large/, { method: 'POST', body: 'x'.repeat(100_000) });
    const page = await call('/');
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'/);
  });
});
