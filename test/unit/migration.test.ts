import { it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { PassThrough } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INCOMING_FD, loadState, saveState } from '../../src/vm/qemu/migration.js';
import type { QmpClient } from '../../src/vm/qemu/qmp-client.js';

/**
 * The gateway's side of a migration, against a stand-in for QEMU's QMP that
 * does what QEMU does with the URI it is given. (The real thing is exercised
 * by the suspend and resume e2e tests.)
 */
class FakeQmp {
  calls: Array<[string, unknown]> = [];
  status = 'active';
  constructor(private readonly payload: Buffer) {}
  async execute(cmd: string, args?: { uri?: string }): Promise<unknown> {
    this.calls.push([cmd, args]);
    if (cmd === 'migrate') {
      const path = args!.uri!.replace(/^unix:/, '');
      const s = connect(path, () => s.end(this.payload, () => (this.status = 'completed')));
      s.on('error', () => (this.status = 'failed'));
    }
    if (cmd === 'migrate-incoming') this.status = 'completed';
    if (cmd === 'query-migrate') return { status: this.status };
    return {};
  }
}

it('saveState: QEMU connects to a socket the gateway listens on; the gateway writes the file, 0600; the socket goes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sshvisor-mig-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const payload = Buffer.alloc(300_000, 7);
  const qmp = new FakeQmp(payload);
  const listenPath = join(dir, 'migrate.sock');
  const file = join(dir, 'state.partial');
  await saveState(qmp as unknown as QmpClient, file, { listenPath, qemuPath: listenPath }, false);
  assert.deepEqual(readFileSync(file), payload);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(existsSync(listenPath), false, 'no socket left behind');
  assert.deepEqual(qmp.calls.map((c) => c[0]).slice(0, 2), ['migrate-set-capabilities', 'migrate']);
  assert.deepEqual(qmp.calls[1]![1], { uri: `unix:${listenPath}` });
});

it('saveState reports a failed migration and leaves no socket', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sshvisor-mig-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const qmp = new FakeQmp(Buffer.from('x'));
  const listenPath = join(dir, 'migrate.sock');
  // QEMU is told a path nobody listens on: its connect fails, as a chroot mix-up would.
  await assert.rejects(saveState(qmp as unknown as QmpClient, join(dir, 'state'), { listenPath, qemuPath: join(dir, 'elsewhere.sock') }), /saving the VM state failed/);
  assert.equal(existsSync(listenPath), false);
});

it('loadState: QEMU reads fd:3; the gateway streams the file into it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sshvisor-mig-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'snapshot.state');
  writeFileSync(file, Buffer.alloc(100_000, 3));
  const qmp = new FakeQmp(Buffer.alloc(0));
  const input = new PassThrough();
  const chunks: Buffer[] = [];
  input.on('data', (b: Buffer) => chunks.push(b));
  const ended = new Promise((r) => input.on('end', r));
  await loadState(qmp as unknown as QmpClient, file, input, true);
  await ended;
  assert.deepEqual(Buffer.concat(chunks), readFileSync(file));
  assert.deepEqual(qmp.calls[1], ['migrate-incoming', { uri: `fd:${INCOMING_FD}` }]);
  assert.deepEqual(qmp.calls[0]![1], { capabilities: [{ capability: 'x-ignore-shared', state: false }] });
});
