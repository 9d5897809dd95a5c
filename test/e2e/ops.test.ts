import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { runProgram, SshvisorServer, type RunResult } from '../helpers/sshvisor-server.js';
import { testImage } from '../helpers/test-image.js';

const MAIN = resolve(import.meta.dirname, '..', '..', 'src', 'cli', 'main.js');
const ESC = '\x1b[';

/**
 * What every VM is doing, over SSH and from the host's shell: NAME+status,
 * the admin account, and the control-socket CLI, with a real server, real VMs
 * and the OpenSSH client. One VM goes through running, suspended, resumed,
 * stopped, crashed and removed; two cold boots in all.
 */
describe('status and operator commands', () => {
  let server: SshvisorServer;
  let owner: string;
  let customer: string;
  let admin: string;
  let release: string;
  let holder: ChildProcess | undefined;

  const cli = (...args: string[]): Promise<RunResult> => runProgram(process.execPath, [MAIN, ...args, '--data-dir', server.dataDir]);
  const asAdmin = (command: string[], sshArgs: string[] = []): Promise<RunResult> => server.ssh('admin', admin, command, { sshArgs });
  const status = async (key = owner): Promise<string> => {
    const r = await server.ssh('alice+status', key);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };
  const statusJson = async (): Promise<Record<string, unknown>> => {
    const r = await server.ssh('alice+status', owner, ['json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim().split('\n').length, 1, 'one line of JSON');
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };
  const field = (report: string, name: string): string => new RegExp(`^  ${name} +(.*)$`, 'm').exec(report)?.[1] ?? `(no ${name} line)`;

  before(async () => {
    const args = ['--idle-timeout', '5'];
    server = new SshvisorServer(args);
    owner = server.makeKey('owner');
    customer = server.makeKey('customer');
    admin = server.makeKey('admin');
    // The key files live in the server's temp dir, so the flag is added once they exist.
    args.push('--admin-keys', `${admin}.pub`);
    await server.start();
    release = (await testImage()).manifest!.kernel.release;
  });
  after(async () => {
    holder?.kill();
    await server.stop();
  });

  it('+status of a running VM: state, image, uptime, size, CPU time, sessions, console tail; JSON alike', async () => {
    // A session that holds the VM up while we look at it.
    holder = spawn('ssh', [...server.sshOptions(owner), '-p', String(server.port), 'alice@127.0.0.1', 'echo "status-marker-$((6*7))" > /dev/ttyS0; echo ready; exec sleep 600'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const h = holder;
    await new Promise<void>((ready, fail) => {
      let out = '';
      h.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('ready')) ready();
      });
      h.once('exit', (code) => fail(new Error(`holding session ended early (${code})`)));
    });

    const report = await status();
    assert.match(report, /^alice\n/);
    assert.equal(field(report, 'state'), 'running');
    assert.equal(field(report, 'image'), `default (Linux ${release})`);
    assert.match(field(report, 'uptime'), /^\d+s \(started \d{4}-\d\d-\d\dT[\d:]+Z\)$/);
    assert.equal(field(report, 'vCPUs'), '1');
    assert.equal(field(report, 'memory'), '256 MiB');
    assert.match(field(report, 'CPU time'), /^\d+\.\d\d s$/);
    assert.ok(parseFloat(field(report, 'CPU time')) > 0.5, 'a boot costs CPU time');
    assert.equal(field(report, 'sessions'), '1');
    assert.match(field(report, 'booted'), /ago; 1 boot\)$/);
    assert.equal(field(report, 'suspended'), 'never');
    assert.equal(field(report, 'last exit'), 'none');
    const tail = report.slice(report.indexOf('  last 10 console lines:\n')).split('\n').slice(1, -1);
    assert.equal(tail.length, 10, report);
    assert.ok(tail.some((l) => l.includes('status-marker-42')), report);
    assert.ok(!report.includes(ESC), 'plain when piped');

    const json = await statusJson();
    assert.equal(json.state, 'running');
    assert.equal(json.image, 'default');
    assert.equal(json.kernel, `Linux ${release}`);
    assert.deepEqual([json.memoryMiB, json.vcpus, json.diskMiB], [256, 1, 1024]);
    assert.equal(json.vcpus, 1);
    assert.equal(json.memoryMiB, 256);
    assert.equal(json.sessions, 1);
    assert.ok(typeof json.pid === 'number' && typeof json.cpuSeconds === 'number' && json.cpuSeconds > 0);
    assert.ok(typeof json.uptimeSeconds === 'number');
    assert.equal((json.console as string[]).length, 10);
    // Kernel messages may land on the same line as the marker: look for it inside lines.
    assert.ok((json.console as string[]).some((l) => l.includes('status-marker-42')), JSON.stringify(json.console));

    const bad = await server.ssh('alice+status', owner, ['reboot']);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, 'sshvisor: alice+status takes no command, or "json" for JSON; not "reboot"\r\n');
    // Not the owner, not granted: no status. Granted watch (or logs): yes.
    assert.equal((await server.ssh('alice+status', customer)).code, 255);
    const pub = readFileSync(`${customer}.pub`, 'utf8').trim();
    assert.equal(spawnSync(process.execPath, [MAIN, 'grant', 'alice', 'watch', '--key', pub, '--data-dir', server.dataDir]).status, 0);
    assert.equal(field(await status(customer), 'state'), 'running');
    assert.equal(server.events('vm-boot').length, 1);
  });

  it('admin: ls (plain when piped, coloured on a pty), status, logs, watch; bad commands get status 2', async () => {
    const ls = await asAdmin(['ls']);
    assert.equal(ls.code, 0, ls.stderr);
    const [header, row, ...rest] = ls.stdout.trimEnd().split('\n');
    assert.match(header!, /^NAME +OWNER +STATE +IMAGE +SHAPE +UPTIME +SESSIONS +LAST CONSOLE LINE$/);
    assert.match(row!, /^alice +SHA256:\S{8} +running +default +1cpu\/256M\/1024M +\d+s +1 +/);
    assert.equal(row!.indexOf('running'), header!.indexOf('STATE'), 'aligned');
    assert.deepEqual(rest, []);
    assert.ok(!ls.stdout.includes(ESC));
    const tty = await asAdmin(['ls'], ['-tt']);
    assert.equal(tty.code, 0);
    assert.ok(tty.stdout.includes(`${ESC}32mrunning${ESC}0m`), JSON.stringify(tty.stdout));

    assert.equal(JSON.parse((await asAdmin(['status', 'alice', '--json'])).stdout).state, 'running');
    assert.match((await asAdmin(['logs', 'alice'])).stdout, /status-marker-42/);

    const watcher = spawn('ssh', [...server.sshOptions(admin), '-p', String(server.port), 'admin@127.0.0.1', 'watch', 'alice'], { stdio: ['pipe', 'pipe', 'pipe'] });
    try {
      let seen = '';
      watcher.stdout.on('data', (d: Buffer) => (seen += d.toString()));
      await waitUntil(() => seen.includes('read-only'), 30_000, 'watch attached');
      assert.equal((await server.ssh('alice', owner, ['echo "watched-$((6*7))" > /dev/ttyS0'])).code, 0);
      await waitUntil(() => seen.includes('watched-42'), 30_000, 'the watcher sees new output');
    } finally {
      watcher.kill();
    }

    const cases: [string[], RegExp][] = [
      [['frob'], /^sshvisor: unknown command "frob"; commands: ls, status, stop/],
      [['stop'], /^sshvisor: stop needs a VM name: stop NAME\r\n$/],
      [['stop', 'nosuch'], /^sshvisor: no VM named "nosuch" \(ls lists them\)\r\n$/],
      [['stop', 'Alice'], /^sshvisor: name "Alice" has uppercase letters/],
      [['suspend', 'alice', '--now'], /^sshvisor: suspend: unknown option "--now"\r\n$/],
      [['rm', 'alice'], /^sshvisor: rm deletes alice for good .*; to do it: rm alice --yes\r\n$/],
    ];
    for (const [command, message] of cases) {
      const r = await asAdmin(command);
      assert.equal(r.code, 2, `${command.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.split('\r\n').length, 2, 'one line');
    }
    assert.ok(existsSync(join(server.dataDir, 'vms', 'alice', 'disk.img')), 'rm without --yes removed nothing');
  });

  it('a key that is not an admin key is refused as admin, with the reason', async () => {
    const r = await server.ssh('admin', owner, ['ls']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^sshvisor: key SHA256:\S+ is not an admin key on this server/);
    assert.equal(r.stdout, '');
  });

  it('+status of a suspended VM, without resuming it', async () => {
    holder?.kill();
    await server.waitForEvent('vm-suspend', 1, 60_000);
    const report = await status();
    assert.match(field(report, 'state'), /^suspended since \d{4}-\d\d-\d\dT[\d:]+Z \(\d+s ago\)$/);
    assert.equal(field(report, 'uptime'), '-');
    assert.equal(field(report, 'CPU time'), '-');
    assert.equal(field(report, 'sessions'), '0');
    assert.match(field(report, 'suspended'), /^\d{4}-\d\d-\d\dT[\d:]+Z \(\d+s ago; 1 time\)$/);
    assert.equal(field(report, 'resumed'), 'never');
    assert.match(field(report, 'last exit'), /^suspended to disk, /);
    assert.match(report, /VM exited: suspended to disk\n$/, 'the console tail ends with the exit marker');
    const json = await statusJson();
    assert.equal(json.state, 'suspended');
    assert.equal(json.cpuSeconds, null);
    assert.equal(json.suspends, 1);
    assert.equal(typeof json.suspendedSince, 'string');
    assert.equal(server.events('vm-resume').length, 0, 'status resumed nothing');
    assert.equal(server.events('vm-boot').length, 1);
  });

  it('the control socket CLI: ls, resume, suspend, stop, status; no server, no answer', async () => {
    assert.equal(statSync(join(server.dataDir, 'control.sock')).mode & 0o777, 0o600);
    const row = async (): Promise<string> => {
      const r = await cli('ls');
      assert.equal(r.code, 0, r.stderr);
      assert.ok(!r.stdout.includes(ESC), 'plain when piped');
      return r.stdout.split('\n').find((l) => l.startsWith('alice ')) ?? r.stdout;
    };
    assert.match(await row(), /^alice +SHA256:\S{8} +suspended +default +1cpu\/256M\/1024M +- +0 +\[sshvisor [^\]]+\] VM exited: suspended to disk$/);

    const resumed = await cli('resume', 'alice');
    assert.deepEqual([resumed.code, resumed.stdout, resumed.stderr], [0, 'alice is running (resumed from its snapshot)\n', '']);
    assert.equal(server.events('vm-resume').length, 1);
    assert.match(await row(), /^alice +\S+ +running +default +\S+ +\d+s +0 /);
    assert.match(field(await status(), 'resumed'), /; 1 time\)$/);

    const suspended = await cli('suspend', 'alice');
    assert.deepEqual([suspended.code, suspended.stdout], [0, 'alice suspended to disk\n']);
    assert.match(await row(), / suspended /);
    assert.equal((await cli('resume', 'alice')).code, 0);
    const stopped = await cli('stop', 'alice');
    assert.deepEqual([stopped.code, stopped.stdout], [0, 'alice stopped: guest powered off on request\n'], stopped.stderr);
    assert.match(await row(), / stopped /);
    const json = JSON.parse((await cli('status', 'alice', '--json')).stdout) as { state: string; lastExit: { reason: string } };
    assert.equal(json.state, 'stopped');
    assert.equal(json.lastExit.reason, 'stopped');
    assert.deepEqual(
      await cli('stop', 'nosuch').then((r) => [r.code, r.stderr]),
      [2, 'sshvisor: no VM named "nosuch" (ls lists them)\n'],
    );
    assert.equal(server.events('vm-boot').length, 1, 'resumes, never a boot');

    const nobody = await runProgram(process.execPath, [MAIN, 'ls', '--data-dir', join(server.dir, 'elsewhere')]);
    assert.equal(nobody.code, 1);
    assert.match(nobody.stderr, /^sshvisor: no sshvisor server is running with data dir \S+elsewhere \(no answer on \S+control\.sock\); start one with/);
    assert.equal(nobody.stderr.split('\n').length, 2, 'one line');
  });

  it('+status of a crashed VM: crashed, the panic as the last exit, the console up to it', async () => {
    const exits = server.events('vm-exit').length;
    const crash = await server.ssh('alice', owner, ['echo c > /proc/sysrq-trigger']);
    assert.notEqual(crash.code, 0, 'the session ends with the VM');
    await server.waitForEvent('vm-exit', exits + 1, 120_000);
    const report = await status();
    assert.equal(field(report, 'state'), 'crashed');
    assert.match(field(report, 'last exit'), /^guest (kernel )?panic, \d{4}-/);
    assert.match(field(report, 'booted'), /; 2 boots\)$/);
    assert.match(report, /VM exited: guest (kernel )?panic\n$/);
    const json = await statusJson();
    assert.equal(json.state, 'crashed');
    assert.equal((json.lastExit as { reason: string }).reason, 'panic');
    assert.match((await asAdmin(['ls'])).stdout, /\nalice +\S+ +crashed /);
  });

  it('rm needs --yes; then the VM, its files and its owners are gone', async () => {
    const refused = await cli('rm', 'alice');
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /--yes/);
    assert.ok(existsSync(join(server.dataDir, 'vms', 'alice')));
    const removed = await asAdmin(['rm', 'alice', '--yes']);
    assert.deepEqual([removed.code, removed.stdout], [0, 'alice removed\n'], removed.stderr);
    assert.ok(!existsSync(join(server.dataDir, 'vms', 'alice')), 'its directory is gone');
    assert.equal((await cli('ls')).stdout, 'no VMs yet\n');
    assert.equal((await server.ssh('alice+status', owner)).code, 255, 'its owner is forgotten');
  });
});

describe('the admin account without --admin-keys', () => {
  let server: SshvisorServer;
  before(async () => {
    server = await new SshvisorServer().start();
  });
  after(() => server.stop());

  it('is refused with the reason', async () => {
    const key = server.makeKey('someone');
    const r = await server.ssh('admin', key, ['ls']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'sshvisor: the admin account is not enabled on this server\r\n');
  });
});

async function waitUntil(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
