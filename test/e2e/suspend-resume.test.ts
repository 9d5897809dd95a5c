import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { SshvisorServer } from '../helpers/sshvisor-server.js';
import { AGENT_CHILDREN } from '../helpers/guest-probes.js';

const COUNTER = 'setsid sh -c "i=0; while :; do i=\\$((i+1)); echo \\$i > /root/count; sleep 0.1; done" > /dev/null 2>&1 < /dev/null & echo $!';

function qemuRunning(dataDir: string): boolean {
  return spawnSync('pgrep', ['-f', `qemu-system-x86_64.*${dataDir}`]).status === 0;
}

/** Idle VMs are suspended to disk and resumed on the next login, with real VMs and OpenSSH. */
describe('suspend to disk and resume', () => {
  let server: SshvisorServer;
  let restarted: SshvisorServer | undefined;
  let key: string;
  const vmDir = () => join(server.dataDir, 'vms', 'alice');

  before(async () => {
    server = await new SshvisorServer(['--idle-timeout', '2']).start();
    key = server.makeKey('alice');
  });
  after(async () => {
    await restarted?.stop();
    await server.stop();
  });

  it('suspends an idle VM (QEMU gone) and resumes it: the counter continues, same PID, clock right', async () => {
    const start = await server.ssh('alice', key, [`${COUNTER}; echo keep-me > /root/file.txt`]);
    assert.equal(start.code, 0, start.stderr);
    const pid = start.stdout.trim();
    assert.match(pid, /^\d+$/);
    await server.waitForEvent('vm-suspend', 1, 60_000);
    assert.equal(qemuRunning(server.dataDir), false, 'no QEMU while suspended');
    assert.ok(existsSync(join(vmDir(), 'snapshot.state')) && existsSync(join(vmDir(), 'snapshot.json')));

    await new Promise((r) => setTimeout(r, 3000));
    const before = Date.now() / 1000;
    const r = await server.ssh('alice', key, [`a=$(cat /root/count); sleep 0.5; b=$(cat /root/count); echo "$a $b $(kill -0 ${pid} && echo alive) $(date +%s)"; cat /root/file.txt`]);
    const after = Date.now() / 1000;
    assert.equal(r.code, 0, r.stderr);
    const [line, file] = r.stdout.trim().split('\n');
    const [a, b, alive, guestNow] = line!.split(' ');
    assert.ok(Number(a) >= 5, `the counter kept its value (${a})`);
    assert.ok(Number(b) > Number(a), 'and keeps counting');
    assert.equal(alive, 'alive', `PID ${pid} is the same process`);
    // Bracketed by the host's clock around the login (a busy host makes the login itself slow).
    assert.ok(Number(guestNow) >= Math.floor(before) - 1 && Number(guestNow) <= after + 1, `guest clock ${guestNow} within [${before}, ${after}] ±1 s`);
    assert.equal(file, 'keep-me');
    assert.equal(server.events('vm-resume').length, 1);
    assert.equal(server.events('vm-boot').length, 1, 'resumed, not booted');
    const logs = await server.ssh('alice+logs', key);
    assert.match(logs.stdout, /VM exited: suspended to disk\r\n\[sshvisor [^\]]+\] VM resumed from the snapshot taken at \d{4}-\d\d-\d\dT[\d:]+Z\r\n/);

    // Nothing of the sessions from before the snapshot is left in the guest: the agent's one child is this session's shell.
    const ps = await server.ssh('alice', key, [AGENT_CHILDREN]);
    assert.equal(ps.stdout.trim(), '1', `session processes in the guest after a resume:\n${ps.stderr}`);
  });

  it('a login that arrives while the idle VM is being suspended waits and gets it back resumed', async () => {
    const idleBefore = server.events('vm-idle').length;
    const resumesBefore = server.events('vm-resume').length;
    await server.waitForEvent('vm-idle', idleBefore + 1, 60_000);
    const r = await server.ssh('alice', key, ['echo started; sleep 2; echo survived']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'started\nsurvived\n');
    assert.equal(server.events('vm-resume').length, resumesBefore + 1, 'resumed');
    assert.equal(server.events('vm-boot').length, 1, 'not booted again');
  });

  it('a truncated snapshot is detected: one line to the user, moved aside, cold boot with the files intact', async () => {
    const before = server.events('vm-suspend').length;
    await server.waitForEvent('vm-suspend', before + 1, 60_000);
    truncateSync(join(vmDir(), 'snapshot.state'), 1000);
    const r = await server.ssh('alice', key, ['cat /root/file.txt']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'keep-me\n');
    assert.equal(r.stderr, 'sshvisor: the saved state of alice could not be used (its device state is truncated or damaged); booting it from its disk instead\r\n');
    assert.ok(readdirSync(vmDir()).some((f) => f.startsWith('snapshot.unusable-')), 'the bad snapshot was moved aside');
    assert.ok(!existsSync(join(vmDir(), 'snapshot.state')));
  });

  it('SIGTERM suspends every VM; after a restart each resumes on its next login', async () => {
    const start = await server.ssh('alice', key, [`${COUNTER}; echo written-before-sigterm > /root/sig.txt`]);
    const pid = start.stdout.trim();
    await server.stop({ keepFiles: true });
    assert.match(server.log, /"event":"vm-suspend"/);
    assert.equal(qemuRunning(server.dataDir), false);
    restarted = await new SshvisorServer(['--data-dir', server.dataDir, '--idle-timeout', '2']).start();
    const r = await restarted.ssh('alice', key, [`cat /root/sig.txt; kill -0 ${pid} && echo counter-alive`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'written-before-sigterm\ncounter-alive\n');
    assert.equal(restarted.events('vm-resume').length, 1);
  });
});

describe('snapshot retention', () => {
  let server: SshvisorServer;
  let key: string;
  before(async () => {
    server = await new SshvisorServer(['--idle-timeout', '1', '--snapshot-retention', '2']).start();
    key = server.makeKey('bob');
  });
  after(() => server.stop());

  it('deletes an expired snapshot but keeps the disk: the next login cold-boots with the files', async () => {
    assert.equal((await server.ssh('bob', key, ['echo still-here > /root/f.txt'])).code, 0);
    await server.waitForEvent('vm-suspend', 1, 60_000);
    await server.waitForEvent('snapshot-expired', 1, 30_000);
    const dir = join(server.dataDir, 'vms', 'bob');
    assert.ok(!existsSync(join(dir, 'snapshot.state')) && !existsSync(join(dir, 'ram')), 'snapshot and RAM deleted');
    const r = await server.ssh('bob', key, ['cat /root/f.txt']);
    assert.equal(r.stdout, 'still-here\n');
    assert.equal(r.stderr, '', 'an expired snapshot is not an error');
    assert.equal(server.events('vm-boot').length, 2, 'cold boot');
  });
});
