import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { SshvisorServer } from '../helpers/sshvisor-server.js';
import { TmuxTerminal } from '../helpers/tmux.js';
import { tinyKernel } from '../helpers/tiny-kernel.js';

/**
 * A guest like a unikernel: one freestanding kernel (test/fixtures/tiny-kernel,
 * a multiboot ELF booted with -kernel) on the serial console, no init system,
 * no SSH daemon, no network. sshvisor must still give its owner a way in (the
 * console) and say clearly what it cannot do. The kernel prints a heartbeat
 * line every 100 ms, echoes what it receives, and panics (pvpanic) on "p".
 */
describe('a console-only image (no SSH daemon, like a unikernel)', () => {
  let server: SshvisorServer;
  let key: string;

  before(async () => {
    const kernel = tinyKernel();
    server = await new SshvisorServer(['--kernel', kernel, '--console-only', '--idle-timeout', '0']).start();
    key = server.makeKey('owner');
  });
  after(() => server.stop());

  const consoleTerminal = (): TmuxTerminal =>
    new TmuxTerminal(`ssh -t ${server.sshOptions(key).join(' ')} -p ${server.port} tiny@127.0.0.1`, 120, 40);

  /** `ssh tiny+watch@host` with pipes (no tty), its output collected. */
  const watch = (): Watcher => new Watcher(spawn('ssh', [...server.sshOptions(key), '-p', String(server.port), 'tiny+watch@127.0.0.1'], { stdio: ['pipe', 'pipe', 'pipe'] }));

  it('ssh -t NAME@host opens the console, booting the VM: banner, heartbeats, and typed bytes are echoed', async () => {
    const term = consoleTerminal();
    try {
      await term.waitFor(/tiny's console: keystrokes go to the VM/);
      await term.waitFor(/^tiny-kernel: boot banner$/m);
      await term.waitFor(/^tiny-kernel: heartbeat 3$/m);
      term.type('hello unikernel');
      await term.waitFor(/^hello unikernel$/m);
    } finally {
      term.close();
    }
  });

  it('an exec request gets a clear error: the image has no shell', async () => {
    const r = await server.ssh('tiny', key, ['uname -a']);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^sshvisor: the image of tiny has no shell to run commands in; use `ssh -t tiny@host` for its console\r?\n$/);
  });

  it("+watch is read-only: a watcher's keystrokes never reach the guest (which would echo them)", async () => {
    // No "p" in either string: the guest panics on "p".
    const fromWatcher = `from-the-watcher-${Date.now()}`;
    const fromConsole = `from-the-console-${Date.now()}`;
    const watcher = watch();
    const term = consoleTerminal();
    try {
      await watcher.waitFor(/read-only/, 'watcher attached');
      await watcher.waitFor(/tiny-kernel: heartbeat \d+\r\n/, 'watcher sees live output');
      watcher.p.stdin.write(`${fromWatcher}\r`);
      await term.waitFor(/tiny's console: keystrokes go to the VM/);
      term.type(fromConsole);
      // The console's keystrokes are echoed to every viewer: the path the watcher's would have taken is live.
      await watcher.waitFor(new RegExp(`${fromConsole}\\r\\n`), "watcher sees the console's echo");
      const seen = watcher.lastHeartbeat();
      await watcher.waitFor(() => watcher.lastHeartbeat() >= seen + 10, 'a second more of output');
      assert.ok(!watcher.text().includes(fromWatcher), 'the watcher never saw its own input echoed');
      const history = await server.ssh('tiny+logs', key);
      assert.equal(history.code, 0);
      assert.ok(history.stdout.includes(fromConsole), "the console's input is in the history");
      assert.ok(!history.stdout.includes(fromWatcher), "the watcher's input is not");
    } finally {
      term.close();
      watcher.p.kill();
    }
  });

  it('a +watch viewer stopped with SIGSTOP does not slow the guest: another watcher keeps seeing ~10 heartbeats/s', async () => {
    const stalled = watch();
    const other = watch();
    try {
      await stalled.waitFor(/tiny-kernel: heartbeat \d+\r\n/, 'the soon-stalled watcher sees live output');
      await other.waitFor(/tiny-kernel: heartbeat \d+\r\n/, 'the other watcher sees live output');
      stalled.p.kill('SIGSTOP');
      const before = other.lastHeartbeat();
      await new Promise((r) => setTimeout(r, 5_000));
      const during = other.lastHeartbeat();
      assert.ok(during - before >= 25, `heartbeats ${before} -> ${during} in 5 s while a watcher was stopped (expected ~50)`);
      stalled.p.kill('SIGCONT');
      await stalled.waitFor(() => stalled.lastHeartbeat() > during, 'the stalled watcher catches up once resumed');
    } finally {
      stalled.p.kill('SIGCONT');
      stalled.p.kill();
      other.p.kill();
    }
  });

  it('"p" on the console panics the guest: vm-exit with reason panic, and +logs keeps the panic and the exit marker', async () => {
    const term = consoleTerminal();
    try {
      await term.waitFor(/tiny's console: keystrokes go to the VM/);
      await term.waitFor(/^tiny-kernel: heartbeat \d+$/m);
      term.type('p');
      await server.waitForEvent('vm-exit');
    } finally {
      term.close();
    }
    const [exit] = server.events('vm-exit');
    assert.equal(exit?.reason, 'panic', JSON.stringify(exit));
    const logs = await server.ssh('tiny+logs', key);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(
      logs.stdout,
      /tiny-kernel: PANIC: requested by 'p'\r\n.*stack trace.*\r\n {2}#0 0x[0-9a-f]+ in fake_frame_0\r\n {2}#1 0x[0-9a-f]+ in fake_frame_1\r\n(?: {2}#\d 0x[0-9a-f]+ in \w+\r\n)+/,
    );
    // The guest reported it through pvpanic (QMP GUEST_PANICKED).
    assert.equal(exit?.detail, 'guest panic');
    assert.match(logs.stdout, /\r\n\[sshvisor \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\] VM exited: guest panic\r\n$/, 'ends with the exit marker');
    assert.ok(logs.stdout.endsWith(`VM exited: ${String(exit?.detail)}\r\n`), 'the marker says what the vm-exit event says');
  });
});

/** An ssh client process whose stdout is collected as text. */
class Watcher {
  private out = '';

  constructor(readonly p: ChildProcessWithoutNullStreams) {
    p.stdout.setEncoding('utf8');
    p.stdout.on('data', (d: string) => (this.out += d));
    p.stdin.on('error', () => {});
  }

  text(): string {
    return this.out;
  }

  /** The highest heartbeat number seen so far (0 before any). */
  lastHeartbeat(): number {
    let n = 0;
    for (const m of this.out.matchAll(/tiny-kernel: heartbeat (\d+)\r\n/g)) n = Math.max(n, Number(m[1]));
    return n;
  }

  async waitFor(cond: RegExp | (() => boolean), what: string, timeoutMs = 60_000): Promise<void> {
    const test = typeof cond === 'function' ? cond : () => cond.test(this.out);
    const deadline = Date.now() + timeoutMs;
    while (!test()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}; output so far:\n${this.out.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
