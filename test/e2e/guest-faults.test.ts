import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { runProgram, SshvisorServer, type RunResult } from '../helpers/sshvisor-server.js';
import { rtSpinner } from '../helpers/rt-spinner.js';

const MAIN = resolve(import.meta.dirname, '..', '..', 'src', 'cli', 'main.js');
const HUNG_TIMEOUT_SEC = 8;
/** How long bob's guest stays hung: long enough to be seen, short of the gateway's SSH keepalive giving up (~60 s). */
const HANG_SEC = 35;
const TICKS = 100;

/**
 * Three users on one server. Bob's guest hangs for real (a SCHED_FIFO task
 * spins on its only vCPU with RT throttling off), carol's floods its serial
 * console and then panics; alice's interactive session (real OpenSSH) goes on
 * producing exactly what it should throughout, new logins of hers work, and
 * the gateway keeps answering +status. Bob's status says hung within 3x the
 * timeout, and running again once the spinner ends.
 */
describe('a guest that hangs, floods or panics affects no one else', () => {
  let server: SshvisorServer;
  const keys: Record<string, string> = {};
  let ticker: ChildProcess | undefined;

  const ssh = (user: string, command: string[] = [], opts: { input?: Buffer | string; timeoutMs?: number } = {}): Promise<RunResult> =>
    server.ssh(user, keys[user.split('+')[0]!]!, command, opts);
  const cli = (...args: string[]): Promise<RunResult> => runProgram(process.execPath, [MAIN, ...args, '--data-dir', server.dataDir]);
  const field = (report: string, name: string): string => new RegExp(`^  ${name} +(.*)$`, 'm').exec(report)?.[1] ?? `(no ${name} line)`;
  const state = async (user: string): Promise<string> => {
    const r = await ssh(`${user}+status`);
    assert.equal(r.code, 0, `the gateway answers ${user}+status: ${r.stderr}`);
    return field(r.stdout, 'state');
  };
  const waitForState = async (user: string, want: string, timeoutMs: number): Promise<number> => {
    const started = Date.now();
    for (;;) {
      if ((await state(user)) === want) return Date.now() - started;
      if (Date.now() - started > timeoutMs) {
        const log = server.log.split('\n').filter((l) => l.includes(`"vm":"${user}"`)).slice(-15).join('\n');
        assert.fail(`${user} is not ${want} after ${timeoutMs} ms: ${await state(user)}\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  };

  before(async () => {
    server = new SshvisorServer(['--hung-timeout', String(HUNG_TIMEOUT_SEC), '--idle-timeout', '0']);
    for (const u of ['alice', 'bob', 'carol']) keys[u] = server.makeKey(u);
    await server.start();
  });
  after(async () => {
    ticker?.kill('SIGKILL');
    await server.stop();
  });

  it('boots three VMs', async () => {
    const ups = await Promise.all(['alice', 'bob', 'carol'].map((u) => ssh(u, [`echo up-${u}`], { timeoutMs: 240_000 })));
    for (const [i, u] of ['alice', 'bob', 'carol'].entries()) assert.deepEqual([ups[i]!.code, ups[i]!.stdout], [0, `up-${u}\n`], ups[i]!.stderr);
  });

  it('bob hangs and carol floods and panics: alice sees nothing of it; bob is hung, then running again', async () => {
    // Alice's long-running session: one line a second, from start to end.
    let ticks = '';
    ticker = spawn('ssh', [...server.sshOptions(keys.alice!), '-p', String(server.port), 'alice@127.0.0.1', `for i in $(seq 1 ${TICKS}); do echo tick-$i; sleep 1; done`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    ticker.stdout!.setEncoding('utf8').on('data', (s: string) => (ticks += s));
    const tickerDone = new Promise<number | null>((r) => ticker!.once('exit', (code) => r(code)));

    // Bob: a real hang of the guest (no SSH, no getty), not a paused QEMU.
    const spin = await ssh('bob', ['cat > /tmp/rt-spin && chmod +x /tmp/rt-spin && echo -1 > /proc/sys/kernel/sched_rt_runtime_us && ' +
      `{ setsid /tmp/rt-spin ${HANG_SEC} < /dev/null > /dev/null 2>&1 & } && echo spinning`], { input: rtSpinner() });
    assert.deepEqual([spin.code, spin.stdout], [0, 'spinning\n'], spin.stderr);
    const hungAfterMs = await waitForState('bob', 'hung', 3 * HUNG_TIMEOUT_SEC * 1000 + 1000);
    const report = (await ssh('bob+status')).stdout;
    assert.match(field(report, 'health'), /^hung: the guest's agent has not answered for \d+ s/);
    assert.equal(server.events('vm-hung').filter((e) => e.vm === 'bob').length, 1);
    const ls = await cli('ls');
    assert.match(ls.stdout, /\nbob +\S+ +hung /, ls.stdout);

    // Carol: a console flood, while bob is hung.
    const flood = await ssh('carol', ['setsid sh -c "yes FLOOD-FLOOD-FLOOD-FLOOD > /dev/ttyS0" < /dev/null > /dev/null 2>&1 & echo flooding']);
    assert.deepEqual([flood.code, flood.stdout], [0, 'flooding\n'], flood.stderr);

    // Meanwhile alice logs in again and again, and the gateway answers status.
    for (let i = 0; i < 5; i++) {
      const r = await ssh('alice', [`echo ping-${i}`]);
      assert.deepEqual([r.code, r.stdout], [0, `ping-${i}\n`], r.stderr);
      assert.equal(await state('alice'), 'running');
      await new Promise((r) => setTimeout(r, 1000));
    }
    const tail = await ssh('carol+logs', [], { timeoutMs: 60_000 });
    assert.match(tail.stdout, /FLOOD-FLOOD-FLOOD-FLOOD/, 'the flood reaches the console log');

    // Carol panics in the middle of her flood.
    const exits = server.events('vm-exit').length;
    await ssh('carol', ['echo c > /proc/sysrq-trigger'], { timeoutMs: 60_000 });
    await server.waitForEvent('vm-exit', exits + 1, 120_000);
    assert.equal(await state('carol'), 'crashed');
    const after = await ssh('alice', ['echo after-panic']);
    assert.deepEqual([after.code, after.stdout], [0, 'after-panic\n'], after.stderr);

    // Bob's spinner ends: his guest answers again and he is running.
    await waitForState('bob', 'running', (HANG_SEC + 3 * HUNG_TIMEOUT_SEC) * 1000);
    assert.equal(server.events('vm-answers').filter((e) => e.vm === 'bob').length, 1);
    const back = await ssh('bob', ['echo bob-is-back']);
    assert.deepEqual([back.code, back.stdout], [0, 'bob-is-back\n'], back.stderr);
    const bobLog = (await ssh('bob+logs', [], { timeoutMs: 60_000 })).stdout;
    assert.match(bobLog, /\[sshvisor [^\]]+\] VM not answering: the guest's agent has not answered/);
    assert.match(bobLog, /\[sshvisor [^\]]+\] VM answers again/);

    // Alice's session saw every tick, in order, and nothing else.
    assert.equal(await tickerDone, 0);
    const expected = Array.from({ length: TICKS }, (_, i) => `tick-${i + 1}\n`).join('');
    assert.equal(ticks, expected);
    assert.equal(await state('alice'), 'running');
    assert.deepEqual(server.events('vm-hung').filter((e) => e.vm === 'alice'), [], 'alice was never hung');
    console.log(`bob reported hung ${hungAfterMs} ms after the spinner started (timeout ${HUNG_TIMEOUT_SEC} s)`);
  });
});
