import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QmpClient, QmpError, type QmpEvent } from '../../src/vm/qemu/qmp-client.js';
import { requireTool } from '../../src/util/tools.js';

/** The QMP client against a real QEMU (a microvm that never leaves its paused start). */
describe('QmpClient', () => {
  let dir: string;
  let qemu: ChildProcess;
  let qmp: QmpClient;
  const sock = () => join(dir, 'qmp.sock');

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sshvisor-qmp-'));
    qemu = spawn(requireTool('qemu-system-x86_64'), [
      '-M', 'microvm', '-accel', 'tcg', '-nodefaults', '-no-user-config', '-display', 'none', '-S',
      '-qmp', `unix:${sock()},server=on,wait=off`,
    ], { stdio: 'ignore' });
    const deadline = Date.now() + 10_000;
    while (!existsSync(sock())) {
      if (Date.now() > deadline) throw new Error('QEMU made no QMP socket');
      await new Promise((r) => setTimeout(r, 10));
    }
    qmp = await QmpClient.connect(sock());
  });

  after(() => {
    qmp?.close();
    qemu?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads the greeting and negotiates capabilities', () => {
    assert.ok(qmp.version && qmp.version.major >= 7, `QEMU version from the greeting: ${JSON.stringify(qmp.version)}`);
  });

  it('runs typed commands', async () => {
    const status = await qmp.execute('query-status');
    assert.equal(status.running, false);
    assert.equal(status.status, 'prelaunch');
    const v = await qmp.execute('query-version');
    assert.equal(v.qemu.major, qmp.version?.major);
  });

  it('answers concurrent commands to the right caller', async () => {
    const [a, b, c] = await Promise.all([qmp.execute('query-status'), qmp.execute('query-version'), qmp.execute('query-status')]);
    assert.equal(a.status, 'prelaunch');
    assert.ok(b.qemu);
    assert.equal(c.status, 'prelaunch');
  });

  it('turns a QMP error into a QmpError with its class', async () => {
    const raw = qmp as unknown as { execute(c: string): Promise<unknown> };
    await assert.rejects(raw.execute('no-such-command'), (err: QmpError) => {
      assert.equal(err.errorClass, 'CommandNotFound');
      return true;
    });
  });

  it('delivers events', async () => {
    const events: QmpEvent[] = [];
    qmp.on('event', (e) => events.push(e));
    await qmp.execute('cont');
    await qmp.execute('stop');
    const deadline = Date.now() + 5000;
    while (!events.some((e) => e.event === 'STOP') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(events.some((e) => e.event === 'RESUME'), 'RESUME event');
    assert.ok(events.some((e) => e.event === 'STOP'), 'STOP event');
  });

  it('rejects pending and later commands once QEMU is gone', async () => {
    const closed = new Promise<void>((resolve) => qmp.once('close', resolve));
    await qmp.execute('quit').catch(() => undefined);
    await closed;
    assert.equal(qmp.isClosed, true);
    await assert.rejects(qmp.execute('query-status'), /connection closed/);
  });
});
