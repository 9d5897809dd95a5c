import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statfsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { runProgram, SshvisorServer, type RunResult } from '../helpers/sshvisor-server.js';

const MAIN = resolve(import.meta.dirname, '..', '..', 'src', 'cli', 'main.js');
const MiB = 1024 * 1024;

/** Every file under `dir`, relative paths. */
function walk(dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? walk(join(dir, d.name), `${prefix}${d.name}/`) : [`${prefix}${d.name}`],
  );
}

/**
 * The data dir on a small tmpfs (the suite runs as root), filled up with
 * fallocate while alice's VM runs: a new VM is refused with a clear error
 * and leaves nothing behind; a suspend fails with a clear error and the VM
 * goes on running, its data intact; no half-written file remains; a guest
 * writing to its disk is paused by QEMU, shown hung, and goes on by itself
 * once there is room; then the suspend works.
 */
describe('disk full in the data dir', { skip: process.getuid?.() !== 0 && 'needs root to mount a tmpfs' }, () => {
  let server: SshvisorServer;
  let alice: string;
  let dave: string;
  let mounted = false;
  const cli = (...args: string[]): Promise<RunResult> => runProgram(process.execPath, [MAIN, ...args, '--data-dir', server.dataDir]);
  const free = (): number => Number(statfsSync(server.dataDir).bavail) * Number(statfsSync(server.dataDir).bsize);
  const fill = (file: string, leave: number): void => {
    const bytes = free() - leave;
    if (bytes <= 0) return;
    const r = spawnSync('fallocate', ['-l', String(bytes), join(server.dataDir, file)], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  };

  before(async () => {
    server = new SshvisorServer(['--memory', '128', '--disk-size', '64', '--idle-timeout', '0', '--hung-timeout', '10']);
    alice = server.makeKey('alice');
    dave = server.makeKey('dave');
    mkdirSync(server.dataDir, { recursive: true });
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=320m,mode=0700', 'tmpfs', server.dataDir], { encoding: 'utf8' });
    assert.equal(m.status, 0, `mount tmpfs: ${m.stderr}`);
    mounted = true;
    await server.start();
  });
  after(async () => {
    await server.stop({ keepFiles: true });
    if (mounted) spawnSync('umount', ['-l', server.dataDir]);
    await server.stop();
  });

  it('a running VM, then the data dir fills up: a new VM is refused, clearly, and leaves nothing', async () => {
    const up = await server.ssh('alice', alice, ['echo precious > /persist/data && sync && echo stored'], { timeoutMs: 180_000 });
    assert.deepEqual([up.code, up.stdout], [0, 'stored\n'], up.stderr);
    // A little room, as a nearly full disk has: not enough for a VM.
    fill('filler-1', 2 * MiB);
    const refused = await server.ssh('dave', dave, ['echo hi'], { timeoutMs: 60_000 });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /no space left in the data dir to create VM dave \(\d+ MiB free, needs about \d+ MiB\)/);
    assert.equal(existsSync(join(server.dataDir, 'vms', 'dave')), false, 'no half-made VM dir');
    const still = await server.ssh('alice', alice, ['cat /persist/data']);
    assert.deepEqual([still.code, still.stdout], [0, 'precious\n'], still.stderr);
  });

  it('a suspend with no room fails with a clear error; the VM keeps running; nothing half-written remains', async () => {
    fill('filler-2', 0);
    const failed = await cli('suspend', 'alice');
    assert.equal(failed.code, 1, failed.stdout);
    assert.match(failed.stderr, /alice could not be suspended: no space left in the data dir to suspend VM alice \(\d+ MiB free, needs about \d+ MiB\); it keeps running/);
    // A first login of a new name needs a write to state.db, which a full disk refuses: that login fails, nothing else.
    const erin = await server.ssh('erin', server.makeKey('erin'), ['echo hi'], { timeoutMs: 60_000 });
    assert.notEqual(erin.code, 0);
    const running = await server.ssh('alice', alice, ['cat /persist/data; echo still-here']);
    assert.deepEqual([running.code, running.stdout], [0, 'precious\nstill-here\n'], running.stderr);
    const files = walk(server.dataDir);
    assert.deepEqual(files.filter((f) => /\.partial$|\.creating$|snapshot\./.test(f)), [], files.join(' '));
    const ls = await cli('ls');
    assert.match(ls.stdout, /\nalice +\S+ +running /);
  });

  it('a guest writing to its disk is paused by QEMU and shown hung; with room again it goes on by itself', async () => {
    const statusOf = async (): Promise<string> => (await server.ssh('alice+status', alice)).stdout;
    // Its disk is sparse: new blocks need room on the host, which there is none of.
    const writing = server.ssh('alice', alice, ['dd if=/dev/zero of=/persist/big bs=1M count=8 conv=fsync 2> /dev/null && echo wrote'], { timeoutMs: 120_000 });
    const deadline = Date.now() + 30_000;
    let report = await statusOf();
    while (!/^  state +hung$/m.test(report)) {
      assert.ok(Date.now() < deadline, `not hung:\n${report}`);
      await new Promise((r) => setTimeout(r, 500));
      report = await statusOf();
    }
    assert.match(report, /^  health +hung: QEMU paused the guest after a disk write failed \(is the data dir full\?\)/m);
    rmSync(join(server.dataDir, 'filler-1'));
    rmSync(join(server.dataDir, 'filler-2'));
    const wrote = await writing;
    assert.deepEqual([wrote.code, wrote.stdout], [0, 'wrote\n'], wrote.stderr);
    assert.ok(server.events('vm-io-retry').length >= 1);
    const check = await server.ssh('alice', alice, ['stat -c %s /persist/big; cat /persist/data']);
    assert.deepEqual([check.code, check.stdout], [0, `${8 * MiB}\nprecious\n`], check.stderr);
  });

  it('with room again, the same suspend works and the VM resumes with its data', async () => {
    const ok = await cli('suspend', 'alice');
    assert.deepEqual([ok.code, ok.stdout], [0, 'alice suspended to disk\n'], ok.stderr);
    const back = await server.ssh('alice', alice, ['cat /persist/data'], { timeoutMs: 120_000 });
    assert.deepEqual([back.code, back.stdout], [0, 'precious\n'], back.stderr);
    assert.equal(server.events('vm-resume').length, 1);
  });
});
