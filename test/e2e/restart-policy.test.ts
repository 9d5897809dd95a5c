import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { SshvisorServer, type RunResult } from '../helpers/sshvisor-server.js';
import { testImage } from '../helpers/test-image.js';

const field = (report: string, name: string): string => new RegExp(`^  ${name} +(.*)$`, 'm').exec(report)?.[1] ?? `(no ${name} line)`;

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * --restart on-failure with real guests: a panicked guest comes back by
 * itself, from its disk, with its data; a guest that panics on every boot
 * is restarted --restart-max times and then left crashed, and says so.
 */
describe('restart policy', () => {
  describe('on-failure: a panicked guest comes back with its disk', () => {
    let server: SshvisorServer;
    let key: string;
    const ssh = (user: string, command: string[] = []): Promise<RunResult> => server.ssh(user, key, command, { timeoutMs: 180_000 });

    before(async () => {
      server = new SshvisorServer(['--restart', 'on-failure', '--restart-max', '3', '--idle-timeout', '0']);
      key = server.makeKey('alice');
      await server.start();
    });
    after(() => server.stop());

    it('panic → restarted after a backoff: console marker, restarts=1, /persist kept', async () => {
      const write = await ssh('alice', ['echo kept-across-the-crash > /persist/keep && sync && echo written']);
      assert.deepEqual([write.code, write.stdout], [0, 'written\n'], write.stderr);
      const boots = server.events('vm-boot').length;
      const crash = await ssh('alice', ['echo c > /proc/sysrq-trigger']);
      assert.notEqual(crash.code, 0, 'the session ends with the VM');
      await server.waitForEvent('vm-restart-scheduled', 1, 120_000);
      const scheduled = server.events('vm-restart-scheduled')[0]!;
      assert.deepEqual([scheduled.vm, scheduled.reason, scheduled.attempt, scheduled.delaySec], ['alice', 'panic', 1, 1]);
      // Back up without anyone logging in.
      await server.waitForEvent('vm-ready', 2, 240_000);
      assert.equal(server.events('vm-boot').length, boots + 1);
      const report = (await ssh('alice+status')).stdout;
      assert.equal(field(report, 'state'), 'running');
      assert.equal(field(report, 'restarts'), 'restarts=1 (policy on-failure)');
      const logs = (await ssh('alice+logs')).stdout;
      assert.match(logs, /\[sshvisor [^\]]+\] VM exited: guest (kernel )?panic\r?\n\[sshvisor [^\]]+\] restarting after a failure \(guest (kernel )?panic\): restart 1 of at most 3 in 10 min\r?\n\[sshvisor [^\]]+\] VM started/);
      const read = await ssh('alice', ['cat /persist/keep']);
      assert.deepEqual([read.code, read.stdout], [0, 'kept-across-the-crash\n'], read.stderr);
      assert.equal(server.events('vm-restart').length, 1, 'one restart, not one per session');
    });

    it('a guest poweroff is not a failure: no restart', async () => {
      const restarts = server.events('vm-restart-scheduled').length;
      await ssh('alice', ['poweroff']);
      await server.waitForEvent('vm-exit', 2, 120_000);
      await new Promise((r) => setTimeout(r, 3000));
      assert.equal(server.events('vm-restart-scheduled').length, restarts);
      assert.equal(field((await ssh('alice+status')).stdout, 'state'), 'stopped');
    });
  });

  describe('a crash loop is stopped by --restart-max', () => {
    let server: SshvisorServer;
    let key: string;

    before(async () => {
      const image = await testImage();
      // The image's kernel with no usable init: it panics at every boot ("VFS: Unable to mount root fs").
      server = new SshvisorServer([
        '--kernel', image.kernel, '--initrd', image.initrd!, '--append', 'rdinit=/nonexistent', '--console-only',
        '--restart', 'on-failure', '--restart-max', '2', '--restart-window', '600',
      ]);
      key = server.makeKey('loop');
      await server.start();
    });
    after(() => server.stop());

    it('restarts twice with growing backoff, then gives up and says so', async () => {
      // A console session starts the VM; the restarts need no one.
      const session = spawn('ssh', [...server.sshOptions(key), '-T', '-p', String(server.port), 'loop@127.0.0.1'], { stdio: 'ignore' });
      try {
        await server.waitForEvent('vm-crash-loop', 1, 240_000);
      } finally {
        session.kill();
      }
      const delays = server.events('vm-restart-scheduled').map((e) => e.delaySec);
      assert.deepEqual(delays, [1, 2]);
      assert.equal(server.events('vm-exit').length, 3, 'the first boot and two restarts');
      for (const e of server.events('vm-exit')) assert.equal(e.reason, 'panic', JSON.stringify(e));
      await new Promise((r) => setTimeout(r, 3000));
      assert.equal(server.events('vm-boot').length, 3, 'no fourth boot');
      const status = await server.ssh('loop+status', key);
      assert.equal(field(status.stdout, 'state'), 'crashed');
      assert.equal(field(status.stdout, 'restarts'), 'crash loop: restarted 2 times in 10 min; giving up');
      assert.match(status.stdout, /\[sshvisor [^\]]+\] crash loop: restarted 2 times in 10 min; giving up$/m);
    });
  });
});
