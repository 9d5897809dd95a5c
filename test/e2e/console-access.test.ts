import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SshvisorServer } from '../helpers/sshvisor-server.js';
import { TmuxTerminal } from '../helpers/tmux.js';

/** Console history and access over SSH, with a real VM and the real OpenSSH client. */
describe('console history over SSH', () => {
  let server: SshvisorServer;
  let owner: string;
  let customer: string;

  before(async () => {
    server = await new SshvisorServer(['--console-replay', '50']).start();
    owner = server.makeKey('owner');
    customer = server.makeKey('customer');
  });
  after(() => server.stop());

  it('captures the console from the first byte, with marker lines, into the ring and console.log', async () => {
    const r = await server.ssh('alice', owner, ['echo "marker-$((40+2))" > /dev/ttyS0']);
    assert.equal(r.code, 0, r.stderr);
    const logs = await server.ssh('alice+logs', owner);
    assert.equal(logs.code, 0);
    assert.match(logs.stdout, /^\[sshvisor \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\] VM started\r\n/, 'starts with the start marker');
    assert.match(logs.stdout, /Linux version \d/, "the kernel's first lines are there");
    assert.match(logs.stdout, /marker-42/);
    const onDisk = readFileSync(join(server.dataDir, 'vms', 'alice', 'console.log'), 'utf8');
    assert.ok(onDisk.includes('marker-42') && onDisk.includes('Linux version'), 'console.log has the same history');
  });

  it('+console is interactive: replay, then live; keystrokes reach the guest', async () => {
    const term = new TmuxTerminal(`ssh -t ${server.sshOptions(owner).join(' ')} -p ${server.port} alice+console@127.0.0.1`, 120, 40);
    try {
      await term.waitFor(/alice's console: keystrokes go to the VM/);
      await term.waitFor(/marker-42/);
      term.type('echo "typed-$((6*7))-in-console"');
      await term.waitFor(/^typed-42-in-console/m);
    } finally {
      term.close();
    }
  });

  it('~B on +console is a serial break: Magic SysRq t dumps the tasks into the console history', async () => {
    const term = new TmuxTerminal(`ssh -t ${server.sshOptions(owner).join(' ')} -p ${server.port} alice+console@127.0.0.1`, 120, 40);
    try {
      await term.waitFor(/alice's console: keystrokes go to the VM/);
      // OpenSSH's escape: right after a newline, ~B sends a break request (RFC 4335). The shell must not
      // print a prompt meanwhile: busybox asks the terminal for the cursor position, and the answer would
      // be the key after the break. So a command that prints nothing runs while the break goes.
      // OpenSSH sends a break request at once but the input it read with it later, so the Enter goes first.
      term.literal('sleep 3');
      term.keys('Enter');
      await new Promise((r) => setTimeout(r, 300));
      term.keys('~', 'B');
      await new Promise((r) => setTimeout(r, 500));
      term.keys('t');
      // The end of the task dump (its first line has scrolled off a 40-row terminal by then).
      await term.waitFor(/Showing busy workqueues and worker pools/);
    } finally {
      term.close();
    }
    const logs = await server.ssh('alice+logs', owner);
    assert.match(logs.stdout, /sysrq: Show State/);
  });

  it('+watch is read-only, for many viewers at once, identical bytes in the same order', async () => {
    const viewers = Array.from({ length: 20 }, () => {
      const p = spawn('ssh', [...server.sshOptions(owner), '-p', String(server.port), 'alice+watch@127.0.0.1'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.setEncoding('utf8');
      p.stdout.on('data', (d: string) => (out += d));
      return { p, text: () => out };
    });
    try {
      await waitUntil(() => viewers.every((v) => v.text().includes('read-only')), 60_000, 'all 20 watchers attached');
      // A watcher's keystrokes go nowhere.
      viewers[0]!.p.stdin.write('echo "from-a-watcher"\n');
      const r = await server.ssh('alice', owner, ['for i in $(seq 1 200); do echo "live-$i"; done > /dev/ttyS0']);
      assert.equal(r.code, 0);
      await waitUntil(() => viewers.every((v) => v.text().includes('live-200')), 60_000, 'all watchers saw live-200');
      const live = (t: string) => t.slice(t.indexOf('live-1\r\n'));
      const first = live(viewers[0]!.text());
      assert.match(first, /live-1\r\nlive-2\r\n[\s\S]*live-200/);
      for (const v of viewers) assert.equal(live(v.text()).slice(0, first.length), first, 'identical bytes, same order');
      const history = (await server.ssh('alice+logs', owner)).stdout;
      assert.ok(!history.includes('from-a-watcher'), 'watcher input never reached the guest');
    } finally {
      for (const v of viewers) v.p.kill();
    }
  });

  it('a viewer that stops reading never blocks the guest or the other viewers', async () => {
    const stalled = spawn('ssh', [...server.sshOptions(owner), '-p', String(server.port), 'alice+watch@127.0.0.1'], { stdio: ['pipe', 'pipe', 'pipe'] });
    try {
      let seen = '';
      stalled.stdout.on('data', (d: Buffer) => (seen += d.toString()));
      await waitUntil(() => seen.includes('read-only'), 30_000, 'stalled watcher attached');
      stalled.kill('SIGSTOP');
      // About 3 MiB of console output: more than the ring and any socket buffer between.
      const flood = await server.ssh('alice', owner, ['i=0; while [ $i -lt 3000 ]; do printf "%01000d\\n" $i; i=$((i+1)); done > /dev/ttyS0; echo flooded'], { timeoutMs: 300_000 });
      assert.equal(flood.stdout, 'flooded\n', flood.stderr);
      const fresh = await server.ssh('alice', owner, ['echo still-responsive']);
      assert.equal(fresh.stdout, 'still-responsive\n');
      const tail = await server.ssh('alice+logs', owner);
      assert.match(tail.stdout, /0{996}2999\r?\n/, 'the newest output is in the history');
    } finally {
      stalled.kill('SIGCONT');
      stalled.kill();
    }
  });

  it('+logs works for granted keys and after the VM is gone, without starting it', async () => {
    assert.equal((await server.ssh('alice+logs', customer)).code, 255, 'no grant yet');
    assert.equal((await server.ssh('alice', owner, ['echo for-the-customer > /dev/ttyS0'])).code, 0);
    const pub = readFileSync(`${customer}.pub`, 'utf8').trim();
    const granted = spawnSync(process.execPath, [join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.js'), 'grant', 'alice', 'logs', '--key', pub, '--data-dir', server.dataDir], { encoding: 'utf8' });
    assert.equal(granted.status, 0, granted.stderr);
    const logs = await server.ssh('alice+logs', customer);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /for-the-customer/);
    assert.equal((await server.ssh('alice+watch', customer)).code, 255, 'logs is not watch');
    assert.equal((await server.ssh('alice', customer, ['true'])).code, 255, 'a grant is not a shell');

    const boots = server.events('vm-boot').length;
    const off = await server.ssh('alice', owner, ['poweroff']);
    assert.ok(off.code === 0 || off.code === 255, 'session ends as the VM powers off');
    await server.waitForEvent('vm-exit');
    const after = await server.ssh('alice+logs', owner);
    assert.equal(after.code, 0);
    assert.match(after.stdout, /\[sshvisor [^\]]+\] VM exited: guest powered off\r\n$/, 'ends with the exit marker');
    assert.equal(server.events('vm-boot').length, boots, '+logs started no VM');
  });
});

async function waitUntil(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

