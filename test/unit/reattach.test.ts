import { fixedImageSource } from '../../src/image/image.js';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findLiveQemu, isAlive } from '../../src/vm/qemu/qemu-process.js';
import { readRuntime, writeRuntime } from '../../src/vm/qemu/qemu-runtime.js';
import { classifyExit } from '../../src/vm/qemu/qemu-exit.js';
import { processesUsing } from '../../src/util/processes.js';
import { gapMarker, reattachAll, type ReattachHooks } from '../../src/manager/reattach.js';
import type { VmManagerOptions } from '../../src/manager/manager-types.js';
import type { ExitInfo, Vm, VmEvents, VmState, VmStatus } from '../../src/vm/driver.js';
import { createLogger } from '../../src/util/log.js';

const root = mkdtempSync(join(tmpdir(), 'sshvisor-reattach-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** A process whose command line names `path`, as a QEMU's names its QMP socket; killed at the end. */
async function processNaming(path: string): Promise<number> {
  // The shell stays (a command follows sleep), with `path` in its argv; its group goes at the end.
  const child = spawn('sh', ['-c', 'sleep 60; true', 'sh', '-pidfile', path], { stdio: 'ignore', detached: true });
  after(() => process.kill(-child.pid!, 'SIGKILL'));
  await once(child, 'spawn');
  return child.pid!;
}

describe('finding a live QEMU by its pid file', () => {
  test('the pid file must name a live process whose command line names the QMP socket', async () => {
    const dir = join(root, 'find');
    mkdirSync(dir);
    const qmp = join(dir, 'qmp.sock');
    const pidFile = join(dir, 'qemu.pid');
    const pid = await processNaming(qmp);
    assert.equal(findLiveQemu(pidFile, qmp), undefined, 'no pid file');
    writeFileSync(pidFile, `${pid}\n`);
    assert.equal(findLiveQemu(pidFile, qmp), pid);
    assert.equal(findLiveQemu(pidFile, join(root, 'other', 'qmp.sock')), undefined, 'a reused pid: another process');
    writeFileSync(pidFile, `${process.pid}\n`);
    assert.equal(findLiveQemu(pidFile, qmp), undefined, 'a live process that is not this QEMU');
    writeFileSync(pidFile, 'garbage\n');
    assert.equal(findLiveQemu(pidFile, qmp), undefined);
    // (The shell's child may be caught between fork and exec, still with the shell's command line.)
    assert.ok(processesUsing(dir, { program: 'sh', flag: '-pidfile' }).includes(pid), 'found without its pid file too');
    assert.deepEqual(processesUsing(dir, { program: 'qemu', flag: '-pidfile' }), [], 'but it is no QEMU');
    assert.deepEqual(processesUsing(dir, { program: 'sh', flag: '-mem-path' }), [], 'a path after another flag does not count');
  });

  test('a zombie (an orphan no one reaps) is not alive', async () => {
    // sh execs sleep, which never reaps the background child: it stays a zombie.
    const child = spawn('sh', ['-c', 'sleep 0.05 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    after(() => child.kill('SIGKILL'));
    const [out] = (await once(child.stdout!, 'data')) as [Buffer];
    const zombie = Number(out.toString().trim());
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(isAlive(zombie), false);
    assert.equal(isAlive(child.pid!), true);
  });
});

describe('the runtime record', () => {
  test('is read back only for its own directory and in its own format', () => {
    const dir = join(root, 'rt');
    mkdirSync(dir);
    const spec = { name: 'alice', dir, image: { name: 'x', kernel: '/k', append: [], agent: true }, memoryMiB: 256, cpus: 1, accel: 'tcg' as const, network: { allowInternet: false }, kernelArgs: [] };
    writeRuntime(dir, { pid: 42, startedAt: 1, spec });
    assert.deepEqual(readRuntime(dir)?.spec, spec);
    assert.equal(readRuntime(join(root, 'elsewhere')), undefined);
    writeFileSync(join(dir, 'qemu.json'), JSON.stringify({ format: 1, pid: 42, startedAt: 1, spec: { ...spec, dir: '/other' } }));
    assert.equal(readRuntime(dir), undefined, 'a record copied from another VM');
    writeFileSync(join(dir, 'qemu.json'), '{');
    assert.equal(readRuntime(dir), undefined);
  });
});

test('an adopted QEMU that ends without a shutdown is a crash with an unknown exit status', () => {
  const facts = { panicSeen: false, guestPanicked: false, adopted: true, logTail: () => '' };
  assert.equal(classifyExit(null, null, facts).reason, 'crashed');
  assert.match(classifyExit(null, null, facts).detail, /exit status unknown/);
  assert.equal(classifyExit(null, null, { ...facts, shutdownReason: 'guest-shutdown' }).reason, 'poweroff');
  assert.equal(classifyExit(null, null, { ...facts, endRequest: 'suspend' }).reason, 'suspended');
});

test('the gap marker names both ends', () => {
  const now = new Date('2026-11-25T21:00:10Z');
  assert.equal(gapMarker(new Date('2026-11-25T21:00:00.400Z'), now), 'gateway restarted: console output between 2026-11-25T21:00:00Z and 2026-11-25T21:00:10Z was not captured');
  assert.equal(gapMarker(undefined, now), 'gateway restarted: console output before 2026-11-25T21:00:10Z was not captured');
});

/** A Vm an attach found, in the state its hypervisor was left in. */
class FoundVm extends EventEmitter<VmEvents> {
  state: VmState = 'created';
  resumed = false;
  constructor(
    readonly name: string,
    private readonly leftIn: VmState,
  ) {
    super();
  }
  async start(): Promise<void> {
    this.state = this.leftIn;
  }
  async resume(): Promise<void> {
    this.resumed = true;
    this.state = 'running';
  }
  async kill(): Promise<ExitInfo> {
    this.state = 'exited';
    const info: ExitInfo = { reason: 'killed', detail: 'killed by sshvisor', code: null, signal: 'SIGKILL', at: new Date() };
    this.emit('exit', info);
    return info;
  }
  async status(): Promise<VmStatus> {
    return { state: this.state, startedAt: new Date(1000) };
  }
  readonly pid = 1234;
}

describe('reattachAll', () => {
  test('adopts what the driver finds, resumes a guest left paused without a snapshot, ends one whose snapshot is complete, records the gone', async () => {
    const dataDir = join(root, 'data');
    const vms = { running: new FoundVm('run', 'running'), paused: new FoundVm('paused', 'paused'), saved: new FoundVm('saved', 'paused') };
    for (const n of ['run', 'paused', 'saved', 'gone', 'tidy']) {
      mkdirSync(join(dataDir, 'vms', n), { recursive: true });
      writeFileSync(join(dataDir, 'vms', n, 'qemu.pid'), '1\n');
    }
    writeFileSync(join(dataDir, 'vms', 'paused', 'snapshot.state.partial'), 'x');
    const meta = JSON.stringify({ format: 1, takenAt: 5, hypervisor: 'q', image: 'i', memoryMiB: 1, cpus: 1, stateBytes: 0, stateSha256: '' });
    writeFileSync(join(dataDir, 'vms', 'saved', 'snapshot.json'), meta);
    // Suspended completely; only the QEMU's files were left behind.
    writeFileSync(join(dataDir, 'vms', 'tidy', 'snapshot.json'), meta);
    const exits: string[] = [];
    const opts = {
      dataDir,
      logger: createLogger('silent'),
      driver: { attach: async (dir: string) => ({ run: vms.running, paused: vms.paused, saved: vms.saved })[dir.split('/').pop()!] as unknown as Vm | undefined },
      store: {
        // Running per the store, with no files: gone too.
        listVms: () => [{ name: 'ghost', lastBootAt: 10, lastResumeAt: null, lastExitAt: 5 }, { name: 'old', lastBootAt: 10, lastResumeAt: null, lastExitAt: 20 }],
        recordExit: (name: string, reason: string) => exits.push(`${name}:${reason}`),
        getVm: () => undefined,
      },
      images: fixedImageSource({ name: 'default', kernel: '/k', append: [], agent: true }),
    } as unknown as VmManagerOptions;
    const adopted: string[] = [];
    const markers: string[] = [];
    const hooks: ReattachHooks = {
      register: () => undefined,
      exited: (e, _vm, info) => exits.push(`${e.name}:${info.reason}`),
      created: (vm) => markers.push(vm.name),
      adopted: (e) => adopted.push(`${e.name}@${e.startedAt}`),
      gone: (name) => markers.push(`${name} gone`),
    };
    const out = await reattachAll(opts, hooks);
    assert.deepEqual(
      out.map((o) => `${o.name}:${o.kind}`),
      ['ghost:gone', 'gone:gone', 'paused:adopted', 'run:adopted', 'saved:ended', 'tidy:stale'],
    );
    assert.deepEqual(adopted, ['paused@1000', 'run@1000']);
    assert.equal(vms.paused.resumed, true);
    assert.equal(existsSync(join(dataDir, 'vms', 'paused', 'snapshot.state.partial')), false);
    assert.equal(vms.saved.state, 'exited');
    assert.deepEqual(exits.sort(), ['ghost:crashed', 'gone:crashed', 'saved:killed']);
    assert.deepEqual(markers.sort(), ['ghost gone', 'gone gone', 'paused', 'run', 'saved'], 'the console is attached before start');
  });
});
