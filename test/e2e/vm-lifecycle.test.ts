import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { GUEST_READY_MARKER } from '../../src/image/guest-contract.js';
import { VmFixture } from '../helpers/vm-fixture.js';
import { ConsoleReader } from '../helpers/console-reader.js';

/** Real QEMU microVMs booting the real default image under TCG. */
describe('QEMU microVM lifecycle', () => {
  let fx: VmFixture;
  before(() => {
    fx = new VmFixture();
  });
  after(() => fx.dispose());

  it('boots, runs a serial shell, keeps /root across a stop and a second boot', async () => {
    const disk = await fx.diskFor('alice');
    const spec = await fx.spec('alice', { disk });

    const first = fx.create(spec);
    const con = new ConsoleReader(first);
    await first.start();
    assert.equal(first.state, 'running');
    await con.waitFor(/Linux version \d+\.\d+/);
    await con.waitFor(GUEST_READY_MARKER);
    assert.equal(statSync(spec.dir).mode & 0o777, 0o700, 'VM dir is private');

    first.writeConsole('echo "answer=$((6*7)) host=$(hostname)"\n');
    await con.waitFor('answer=42 host=alice');
    first.writeConsole('echo persisted-$((1000+234)) > /root/note.txt && sync && echo written-ok\n');
    await con.waitFor('written-ok');

    const exit = await first.stop({ timeoutMs: 20_000 });
    assert.equal(exit.reason, 'stopped');
    assert.equal(exit.detail, 'guest powered off on request');
    assert.equal(first.state, 'exited');
    assert.ok(existsSync(join(spec.dir, 'qemu.stderr.log')), "QEMU's stderr is kept");
    assert.deepEqual(
      readdirSync(spec.dir).filter((f) => f.endsWith('.sock') || f.endsWith('.pid')),
      [],
      'no sockets or pid file outlive the VM',
    );

    const second = fx.create(spec);
    const con2 = new ConsoleReader(second);
    await second.start();
    await con2.waitFor(GUEST_READY_MARKER);
    second.writeConsole('cat /root/note.txt\n');
    await con2.waitFor('persisted-1234');
    await second.kill();
  });

  it('reports a QEMU killed with SIGKILL as crashed, within a second', async () => {
    const vm = fx.create(await fx.spec('crashy'));
    const con = new ConsoleReader(vm);
    await vm.start();
    await con.waitFor(GUEST_READY_MARKER);
    const killedAt = Date.now();
    process.kill(vm.pid!, 'SIGKILL');
    const exit = await vm.exited;
    assert.equal(exit.reason, 'crashed');
    assert.equal(exit.signal, 'SIGKILL');
    assert.match(exit.detail, /killed by SIGKILL/);
    assert.ok(exit.at.getTime() - killedAt < 1000, 'noticed within a second');
  });

  it('tells a guest poweroff, a guest panic and an ignored stop apart', async () => {
    const off = fx.create(await fx.spec('off'));
    const offCon = new ConsoleReader(off);
    await off.start();
    await offCon.waitFor(GUEST_READY_MARKER);
    off.writeConsole('poweroff\n');
    assert.equal((await off.exited).reason, 'poweroff');

    const panicky = fx.create(await fx.spec('panicky'));
    const panicCon = new ConsoleReader(panicky);
    await panicky.start();
    await panicCon.waitFor(GUEST_READY_MARKER);
    panicky.writeConsole('echo c > /proc/sysrq-trigger\n');
    const panicExit = await panicky.exited;
    assert.equal(panicExit.reason, 'panic');
    assert.match(panicCon.text, /Kernel panic/);

    // Without acpid the power button does nothing: stop must fall back to a kill.
    const stubborn = fx.create(await fx.spec('stubborn'));
    const stubbornCon = new ConsoleReader(stubborn);
    await stubborn.start();
    await stubbornCon.waitFor(GUEST_READY_MARKER);
    stubborn.writeConsole('killall acpid && echo acpid-gone\n');
    await stubbornCon.waitFor('acpid-gone');
    const started = Date.now();
    const forced = await stubborn.stop({ timeoutMs: 1500 });
    assert.equal(forced.reason, 'stopped');
    assert.match(forced.detail, /ignored the power-off request/);
    assert.ok(Date.now() - started >= 1400, 'waited for the guest before killing it');
  });

  it('pauses and resumes a running guest', async () => {
    const vm = fx.create(await fx.spec('sleepy'));
    const con = new ConsoleReader(vm);
    await vm.start();
    await con.waitFor(GUEST_READY_MARKER);
    await vm.pause();
    assert.equal((await vm.status()).hypervisorState, 'paused');
    const before = con.text.length;
    vm.writeConsole('echo still-alive\n');
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(!con.text.slice(before).includes('still-alive'), 'a paused guest runs nothing');
    await vm.resume();
    await con.waitFor('still-alive', 10_000, before);
    assert.equal((await vm.status()).hypervisorState, 'running');
    await vm.kill();
    assert.equal((await vm.exited).reason, 'killed');
  });

  it('suspends to disk and resumes with processes still running, same PIDs', async () => {
    const disk = await fx.diskFor('napper');
    const memoryFile = join(fx.dir, 'napper.ram');
    const stateFile = join(fx.dir, 'napper.state');
    const spec = await fx.spec('napper', { disk, memoryFile });
    const vm = fx.create(spec);
    const con = new ConsoleReader(vm);
    await vm.start();
    await con.waitFor(GUEST_READY_MARKER);
    vm.writeConsole('(i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done) & echo "counter-pid=$!"\n');
    // Match whole lines: console output arrives in arbitrary chunks.
    const pid = /counter-pid=(\d+)/.exec(await con.waitFor(/counter-pid=\d+\r?\n/))![1];
    await new Promise((r) => setTimeout(r, 1000));

    const qemuPid = vm.pid!;
    const exit = await vm.suspend(stateFile);
    assert.equal(exit.reason, 'suspended');
    assert.equal(vm.state, 'exited');
    assert.throws(() => process.kill(qemuPid, 0), 'the QEMU process is gone');
    assert.ok(existsSync(stateFile), 'device state written');
    assert.ok(!existsSync(`${stateFile}.partial`));

    const back = fx.create({ ...spec, restoreFrom: { stateFile } });
    const con2 = new ConsoleReader(back);
    await back.start();
    back.writeConsole(`echo "before=$(cat /tmp/count)"; sleep 0.5; echo "after=$(cat /tmp/count) alive=$(kill -0 ${pid} && echo yes)"\n`);
    const before = Number(/before=(\d+)/.exec(await con2.waitFor(/before=\d+\r?\n/))![1]);
    const after = /after=(\d+) alive=(\w+)/.exec(await con2.waitFor(/after=\d+ alive=\w+\r?\n/))!;
    assert.ok(before >= 5, `the counter kept its value across the suspend (${before})`);
    assert.ok(Number(after[1]) > before, 'and keeps counting');
    assert.equal(after[2], 'yes', `process ${pid} is the same one`);
    assert.ok(!con2.text.includes('Linux version'), 'no boot happened');
    await back.kill();
  });

  it('fails to start with a one-line reason when the kernel is missing', async () => {
    const spec = await fx.spec('nokernel');
    const vm = fx.create({ ...spec, image: { ...spec.image, kernel: join(fx.dir, 'no-such-vmlinuz') } });
    await assert.rejects(vm.start(), (err: Error) => {
      assert.equal(err.name, 'UserError');
      assert.match(err.message, /^VM nokernel failed to start: .*no-such-vmlinuz/);
      assert.ok(!err.message.includes('\n'));
      return true;
    });
    assert.equal(vm.state, 'exited');
  });
});
