import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { SshvisorServer } from '../helpers/sshvisor-server.js';

const IDENTITY = 'echo "$(hostname) $(cat /proc/sys/kernel/random/boot_id) $(head -c 16 /dev/urandom | od -An -tx1 | tr -d \' \\n\') $(date +%s)"';

/** New VMs start as clones of a booted template, each with its own identity. */
describe('new VMs from a template', () => {
  let server: SshvisorServer;
  before(async () => {
    server = await new SshvisorServer(['--templates', '--idle-timeout', '2']).start();
    await server.waitForEvent('template-ready', 1, 120_000);
  });
  after(() => server.stop());

  it('two clones have their own hostname, boot_id, RNG output and the right clock', async () => {
    const keys = { alice: server.makeKey('alice'), bob: server.makeKey('bob') };
    const before = Date.now() / 1000;
    const [a, b] = await Promise.all([server.ssh('alice', keys.alice, [IDENTITY]), server.ssh('bob', keys.bob, [IDENTITY])]);
    const after = Date.now() / 1000;
    // Each guest read its clock somewhere between `before` and `after`; `date +%s` drops the fraction.
    const clockOk = (t: number): boolean => t + 1 >= before - 2 && t <= after + 2;
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const [hostA, bootA, randA, clockA] = a.stdout.trim().split(' ');
    const [hostB, bootB, randB, clockB] = b.stdout.trim().split(' ');
    assert.equal(hostA, 'alice');
    assert.equal(hostB, 'bob');
    assert.match(bootA!, /^[0-9a-f-]{36}$/);
    assert.notEqual(bootA, bootB, 'different boot_id');
    assert.match(randA!, /^[0-9a-f]{32}$/);
    assert.notEqual(randA, randB, 'different /dev/urandom bytes');
    assert.ok(clockOk(Number(clockA)) && clockOk(Number(clockB)), `clocks ${clockA} ${clockB} within 2 s of the host's (${before}..${after})`);
    assert.equal(server.events('vm-clone').length, 2, 'both started from the template');
    assert.equal(server.events('vm-boot').length, 0, 'none booted');

    const tdir = readdirSync(join(server.dataDir, 'templates'));
    assert.equal(tdir.length, 1);
    assert.equal(statSync(join(server.dataDir, 'templates', tdir[0]!, 'ram')).mode & 0o777, 0o600, 'the template RAM is the server user\'s alone');
  });

  it('a clone keeps its files and processes across a suspend and resume', async () => {
    const key = server.makeKey('carol');
    const start = await server.ssh('carol', key, [
      'setsid sh -c "i=0; while :; do i=\\$((i+1)); echo \\$i > /root/count; sleep 0.1; done" > /dev/null 2>&1 < /dev/null & echo $!; echo carol-data > /root/data.txt; sync',
    ]);
    assert.equal(start.code, 0, start.stderr);
    const pid = start.stdout.trim();
    const suspends = () => server.events('vm-suspend').filter((e) => e.vm === 'carol').length;
    const deadline = Date.now() + 60_000;
    while (suspends() < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.equal(suspends(), 1, 'carol was suspended');
    const r = await server.ssh('carol', key, [`cat /root/data.txt; kill -0 ${pid} && echo same-process; cat /root/count`]);
    assert.equal(r.code, 0, r.stderr);
    const [data, same, count] = r.stdout.trim().split('\n');
    assert.equal(data, 'carol-data');
    assert.equal(same, 'same-process');
    assert.ok(Number(count) > 5, `the counter went on (${count})`);
  });
});
