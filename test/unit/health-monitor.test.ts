import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { pino } from 'pino';
import { HealthMonitor, type HungInfo, type WatchedVm } from '../../src/manager/health-monitor.js';
import type { Vm, VmStatus } from '../../src/vm/driver.js';

/** A VM whose QMP answers with `runState` (or never, when undefined). */
class FakeVm extends EventEmitter {
  state = 'running';
  runState: string | undefined = 'running';
  continued = 0;
  resume(): Promise<void> {
    this.continued++;
    this.runState = 'running';
    return Promise.resolve();
  }
  status(): Promise<VmStatus> {
    if (this.runState === undefined) return new Promise(() => undefined);
    return Promise.resolve({ state: 'running', hypervisorState: this.runState });
  }
}

/** A guest agent connection that answers a ping at once, or holds it while `hung`. */
class FakeGuest {
  hung = false;
  held: Array<() => void> = [];
  ping(_timeoutMs: number): Promise<void> {
    return new Promise((answer) => (this.hung ? this.held.push(answer) : answer()));
  }
  wake(): void {
    this.hung = false;
    for (const f of this.held.splice(0)) f();
  }
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

function setup(guest?: FakeGuest, room = { again: false }) {
  let now = 0;
  const vm = new FakeVm();
  const changes: Array<[string, HungInfo | undefined]> = [];
  const watched: WatchedVm = { name: 'bob', vm: vm as unknown as Vm, agent: guest };
  const monitor = new HealthMonitor({
    hungTimeoutSec: 10,
    logger: pino({ level: 'silent' }),
    vms: () => [watched],
    onChange: (name, info) => void changes.push([name, info]),
    roomAgain: () => room.again,
    now: () => now,
  });
  const step = async (ms: number): Promise<void> => {
    now += ms;
    // A probe started in one round is answered before the next; the one after judges what it said.
    for (let i = 0; i < 2; i++) {
      monitor.round();
      await flush();
    }
    monitor.round();
  };
  return { vm, monitor, changes, step, watched };
}

describe('health monitor', () => {
  test('a guest that stops answering is hung after the timeout, and running when it answers again', async () => {
    const guest = new FakeGuest();
    const { monitor, changes, step } = setup(guest);
    await step(0);
    await flush(); // the last round's answer lands now, not in the first round after the hang
    guest.hung = true;
    for (let i = 0; i < 4; i++) await step(2500);
    assert.equal(monitor.hung('bob'), undefined, 'not before the timeout');
    await step(2500);
    assert.match(monitor.hung('bob')?.reason ?? '', /^the guest's agent has not answered for 1\d s \(no console output since it started\)$/);
    assert.equal(changes.length, 1);
    guest.wake();
    await step(1000);
    assert.equal(monitor.hung('bob'), undefined);
    assert.deepEqual(changes.map(([, i]) => i === undefined), [false, true]);
    monitor.close();
  });

  test('QEMU not answering QMP, or pausing the guest on a disk error, is hung; a pause on purpose is not', async () => {
    const { vm, monitor, step } = setup(new FakeGuest());
    vm.runState = 'paused';
    await step(20_000);
    assert.equal(monitor.hung('bob'), undefined);
    vm.runState = 'io-error';
    await step(1000);
    assert.match(monitor.hung('bob')?.reason ?? '', /disk write failed/);
    vm.runState = undefined;
    await step(11_000);
    assert.match(monitor.hung('bob')?.reason ?? '', /^QEMU has not answered on QMP for 1\d s$/);
    monitor.close();
  });

  test('a guest paused on a full disk is continued once there is room again', async () => {
    const room = { again: false };
    const { vm, monitor, step } = setup(new FakeGuest(), room);
    vm.runState = 'io-error';
    await step(5000);
    await step(5000);
    assert.equal(vm.continued, 0, 'no cont while the disk is full');
    assert.match(monitor.hung('bob')?.reason ?? '', /disk write failed/);
    room.again = true;
    await step(5000);
    assert.equal(vm.continued, 1);
    await step(5000);
    assert.equal(monitor.hung('bob'), undefined);
    monitor.close();
  });

  test('no SSH connection (a console-only image, or not connected yet): only QEMU is asked', async () => {
    const { monitor, step } = setup(undefined);
    for (let i = 0; i < 10; i++) await step(5000);
    assert.equal(monitor.hung('bob'), undefined);
    monitor.close();
  });
});
