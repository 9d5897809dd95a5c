import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SshvisorServer, runProgram, type RunResult } from '../helpers/sshvisor-server.js';
import { HostListener, qemuProcesses, readFirstLine } from '../helpers/host-listener.js';

/**
 * Who gets in, as what, and what a guest can reach: a real `sshvisor serve`,
 * real TCG microVMs and the real OpenSSH client. Boots are the cost here, so
 * each server is shared by the tests of its describe and VMs are reused
 * (five boots in all).
 */

const VM_TEST = { timeout: 180_000 };

/** The one line sshvisor writes on stderr when it refuses a session. */
function refusalLine(r: RunResult): string {
  const lines = r.stderr.split(/\r?\n/).filter((l) => l !== '');
  assert.equal(lines.length, 1, `exactly one stderr line, got: ${JSON.stringify(r.stderr)}`);
  assert.ok(lines[0]!.startsWith('sshvisor: '), `starts with "sshvisor: ": ${JSON.stringify(lines[0])}`);
  return lines[0]!;
}

function assertOk(r: RunResult, what: string): void {
  assert.equal(r.code, 0, `${what}: exit ${r.code}, stderr: ${r.stderr}`);
}

function assertPublickeyDenied(r: RunResult, what: string): void {
  assert.equal(r.code, 255, `${what}: exit ${r.code}, stderr: ${r.stderr}`);
  assert.match(r.stderr, /Permission denied \(publickey\)/, what);
  assert.equal(r.stdout, '', what);
}

function vmDirs(server: SshvisorServer): string[] {
  const dir = join(server.dataDir, 'vms');
  return existsSync(dir) ? readdirSync(dir) : [];
}

function bootsOf(server: SshvisorServer, vm: string): number {
  return server.events('vm-boot').filter((e) => e.vm === vm).length;
}

/** `NAME rc=N output` lines printed by the probe script below, by NAME. */
function parseProbes(stdout: string): Map<string, { rc: number; out: string }> {
  const probes = new Map<string, { rc: number; out: string }>();
  for (const m of stdout.matchAll(/^probe (\S+) rc=(\d+) ?(.*)$/gm)) probes.set(m[1]!, { rc: Number(m[2]), out: m[3]! });
  return probes;
}

/**
 * A guest-side shell script: try a TCP connection to the host (10.0.2.2 in
 * QEMU's user network) on each port and print how it went. `timeout` kills an
 * nc that connected and then hung, so rc 1 means "could not connect".
 */
function probeScript(targets: Record<string, number>): string {
  return Object.entries(targets)
    .map(([name, port]) => `out=$(timeout 8 nc -w 3 10.0.2.2 ${port} </dev/null 2>&1); echo "probe ${name} rc=$? $(echo $out | head -c 200)"`)
    .join('\n');
}

describe('ssh access: claim mode, names, isolation and --max-vms 2', () => {
  let server: SshvisorServer;
  let listener: HostListener | undefined;
  let keyA: string;
  let keyB: string;
  let keyC: string;

  before(async () => {
    server = new SshvisorServer(['--max-vms', '2']);
    keyA = server.makeKey('a');
    keyB = server.makeKey('b');
    keyC = server.makeKey('c');
    listener = await HostListener.start();
    await server.start();
  });
  after(async () => {
    await listener?.close();
    await server.stop();
  });

  it('refuses invalid and reserved names with one line saying why, and boots nothing', async () => {
    const cases: Array<[string, RegExp]> = [
      ['Bad_Name', /name "Bad_Name" must start with a lowercase letter/],
      ['9lives', /name "9lives" must start with a lowercase letter, not "9"/],
      ['a'.repeat(40), /name "a{40}" is too long \(40 characters, at most 32\)/],
      ['alice+nope', /unknown suffix "\+nope"/],
      ['al.ice', /name "al\.ice" contains "\."/],
      ['admin+x', /"admin" is reserved and takes no "\+" suffix/],
      ['tokenless+token', /the HTTP API is not enabled on this server \(sshvisor serve --http\)/],
    ];
    for (const [name, why] of cases) {
      const r = await server.ssh(name, keyA, ['echo', 'should-not-run']);
      assert.notEqual(r.code, 0, `${name}: exit code`);
      assert.equal(r.stdout, '', `${name}: nothing ran`);
      assert.match(refusalLine(r), why, name);
    }
    assert.deepEqual(server.events('vm-boot'), [], 'no VM booted');
    assert.deepEqual(vmDirs(server), [], 'no VM directory was made');
    assert.deepEqual(qemuProcesses(server.dataDir), [], 'no QEMU is running');
  });

  it('refuses password authentication, without ever prompting', async () => {
    const batch = await server.ssh('alice', keyA, ['echo', 'should-not-run'], {
      sshArgs: ['-o', 'PreferredAuthentications=password', '-o', 'PasswordAuthentication=yes'],
    });
    assertPublickeyDenied(batch, 'password with BatchMode');
    assert.doesNotMatch(batch.stderr, /password/i);

    // Without BatchMode, with an askpass program that records being asked:
    // the server never offers password, so the client has nothing to prompt for.
    const asked = join(server.dir, 'askpass-was-called');
    const askpass = join(server.dir, 'askpass.sh');
    writeFileSync(askpass, `#!/bin/sh\ntouch '${asked}'\necho not-a-password\n`, { mode: 0o755 });
    const prompted = await runProgram(
      'ssh',
      [
        '-F', '/dev/null',
        '-o', 'StrictHostKeyChecking=accept-new',
        '-o', `UserKnownHostsFile=${join(server.dir, 'known_hosts')}`,
        '-o', 'PreferredAuthentications=password,keyboard-interactive',
        '-o', 'PasswordAuthentication=yes',
        '-o', 'KbdInteractiveAuthentication=yes',
        '-o', 'PubkeyAuthentication=no',
        '-o', 'NumberOfPasswordPrompts=1',
        '-p', String(server.port),
        'alice@127.0.0.1', 'echo', 'should-not-run',
      ],
      { env: { ...process.env, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: 'force', DISPLAY: '' }, timeoutMs: 30_000 },
    );
    assertPublickeyDenied(prompted, 'password without BatchMode');
    assert.ok(!existsSync(asked), 'ssh never asked for a password');
    assert.deepEqual(server.events('vm-boot'), [], 'no VM booted');
  });

  it('gives a name to the first key that logs in as it, and refuses every other key', VM_TEST, async () => {
    const first = await server.ssh('alice', keyA, ['echo', 'ok']);
    assertOk(first, 'key A as alice (claims it)');
    assert.equal(first.stdout, 'ok\n');

    const again = await server.ssh('alice', keyA, ['echo', 'ok']);
    assertOk(again, 'key A as alice again');
    assert.equal(again.stdout, 'ok\n');

    assertPublickeyDenied(await server.ssh('alice', keyB, ['echo', 'ok']), 'key B as alice');

    const bob = await server.ssh('bob', keyB, ['echo', 'ok']);
    assertOk(bob, 'key B as bob (claims it)');
    assert.equal(bob.stdout, 'ok\n');

    assertPublickeyDenied(await server.ssh('bob', keyA, ['echo', 'ok']), 'key A as bob');
    assert.equal(bootsOf(server, 'alice'), 1, 'alice booted once and was reused');
    assert.equal(bootsOf(server, 'bob'), 1, 'bob booted once');
  });

  it("keeps a guest off the host's loopback, the gateway and other guests: no network device at all", VM_TEST, async () => {
    assert.ok(listener);
    const qemus = qemuProcesses(server.dataDir);
    const alice = qemus.find((p) => p.vm === 'alice');
    const bob = qemus.find((p) => p.vm === 'bob');
    assert.ok(alice && bob, `QEMU processes of alice and bob: ${JSON.stringify(qemus.map((q) => q.vm))}`);
    for (const q of [alice, bob]) {
      assert.equal(q.netdev, undefined, `${q.vm} has no network backend`);
      assert.ok(!q.args.some((a) => a.includes('hostfwd')), `no port of ${q.vm} is forwarded to the host`);
    }
    // Each target is reachable from the host itself, so a failure from the guest is isolation, not a dead port.
    assert.match(await readFirstLine(server.port), /^SSH-2\.0-/, 'the gateway answers on the host');
    assert.equal(await readFirstLine(listener.port), HostListener.GREETING, 'the listener answers on the host');
    const seenBefore = listener.connections.length;

    const script = ['ls /sys/class/net', 'ip route', probeScript({ host: listener.port, gateway: server.port })].join('\n');
    const r = await server.ssh('alice', keyA, [script]);
    assertOk(r, 'probe script in alice');
    assert.equal(r.stdout.split('\n')[0], 'lo', `only a loopback interface:\n${r.stdout}`);
    assert.doesNotMatch(r.stdout, /default via/, 'no route out');
    const probes = parseProbes(r.stdout);
    for (const target of ['host', 'gateway']) {
      const p = probes.get(target);
      assert.ok(p, `probe ${target} ran:\n${r.stdout}`);
      assert.equal(p.rc, 1, `alice could not connect to ${target}: ${JSON.stringify(p)}`);
    }
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(listener.connections.length, seenBefore, 'the host listener saw no connection from the guest');
  });

  it('refuses a VM over --max-vms with a clear reason; running VMs keep working', VM_TEST, async () => {
    assert.equal(qemuProcesses(server.dataDir).length, 2, 'alice and bob are up');
    const carol = await server.ssh('carol', keyC, ['echo', 'ok']);
    assert.notEqual(carol.code, 0);
    assert.equal(carol.stdout, '');
    assert.equal(refusalLine(carol), 'sshvisor: capacity reached (2 VMs running); try again later');
    // Also with a pty: the refusal is the same and nothing is left behind.
    const carolTty = await server.ssh('carol', keyC, [], { sshArgs: ['-tt'] });
    assert.notEqual(carolTty.code, 0);
    assert.match(carolTty.stdout + carolTty.stderr, /sshvisor: capacity reached \(2 VMs running\); try again later/);
    assert.equal(bootsOf(server, 'carol'), 0, 'carol never booted');
    assert.ok(!vmDirs(server).includes('carol'), 'no directory for carol');

    const alice = await server.ssh('alice', keyA, ['echo', 'still-ok']);
    assertOk(alice, 'alice after the refusal');
    assert.equal(alice.stdout, 'still-ok\n');
    const bob = await server.ssh('bob', keyB, ['echo', 'still-ok']);
    assertOk(bob, 'bob after the refusal');
    assert.equal(server.events('vm-boot').length, 2, 'no VM was rebooted');
  });
});

describe('ssh access: /root survives a VM stop', () => {
  let server: SshvisorServer;
  let key: string;

  before(async () => {
    // Idle VMs are suspended, not stopped; this test stops the guest itself, with no idle timer in the way.
    server = new SshvisorServer(['--idle-timeout', '0']);
    key = server.makeKey('a');
    await server.start();
  });
  after(() => server.stop());

  it('boots a stopped VM again with the same disk', VM_TEST, async () => {
    const token = randomUUID();
    const first = await server.ssh('alice', key, [
      `echo ${token} > /root/keep.txt && sync && cat /proc/sys/kernel/random/boot_id && (setsid sh -c 'sleep 1; poweroff' > /dev/null 2>&1 < /dev/null &)`,
    ]);
    assertOk(first, 'first login');
    const bootId1 = first.stdout.trim();
    assert.match(bootId1, /^[0-9a-f-]{36}$/);

    await server.waitForEvent('vm-exit', 1, 60_000);
    const exit = server.events('vm-exit')[0]!;
    assert.equal(exit.vm, 'alice');
    assert.equal(exit.reason, 'poweroff', `powered off: ${JSON.stringify(exit)}`);
    assert.deepEqual(qemuProcesses(server.dataDir), [], 'QEMU is gone');

    const second = await server.ssh('alice', key, ['cat /root/keep.txt; cat /proc/sys/kernel/random/boot_id']);
    assertOk(second, 'second login');
    const [kept, bootId2] = second.stdout.trim().split('\n');
    assert.equal(kept, token, '/root/keep.txt survived');
    assert.match(bootId2 ?? '', /^[0-9a-f-]{36}$/);
    assert.notEqual(bootId2, bootId1, 'it is a new boot');
    assert.equal(bootsOf(server, 'alice'), 2);
  });
});

describe('ssh access: --auth keys (and, as a control, --allow-internet)', () => {
  let server: SshvisorServer;
  let listener: HostListener | undefined;
  let keysDir: string;
  let keyA: string;
  let keyB: string;

  before(async () => {
    keysDir = mkdtempSync(join(tmpdir(), 'sshvisor-keys-'));
    server = new SshvisorServer(['--auth', 'keys', '--keys-dir', keysDir, '--allow-internet']);
    keyA = server.makeKey('a');
    keyB = server.makeKey('b');
    writeFileSync(join(keysDir, 'alice'), `# alice's keys\n${readFileSync(`${keyA}.pub`, 'utf8')}`);
    listener = await HostListener.start();
    await server.start();
  });
  after(async () => {
    await listener?.close();
    await server.stop();
    rmSync(keysDir, { recursive: true, force: true });
  });

  it('lets in only the keys listed in KEYS_DIR/NAME', VM_TEST, async () => {
    assertPublickeyDenied(await server.ssh('alice', keyB, ['echo', 'ok']), 'key B as alice (not listed)');
    assertPublickeyDenied(await server.ssh('bob', keyA, ['echo', 'ok']), 'key A as bob (no keys file)');
    assertPublickeyDenied(await server.ssh('bob', keyB, ['echo', 'ok']), 'key B as bob (no keys file)');
    assert.deepEqual(server.events('vm-boot'), [], 'no VM booted for a refused key');

    const a = await server.ssh('alice', keyA, ['echo', 'ok']);
    assertOk(a, 'key A as alice (listed)');
    assert.equal(a.stdout, 'ok\n');

    // Still refused after a successful login: nothing was claimed.
    assertPublickeyDenied(await server.ssh('alice', keyB, ['echo', 'ok']), 'key B as alice, again');

    // The file is re-read when it changes: no restart needed.
    appendFileSync(join(keysDir, 'alice'), readFileSync(`${keyB}.pub`, 'utf8'));
    const b = await server.ssh('alice', keyB, ['echo', 'ok']);
    assertOk(b, 'key B as alice once listed');
    assert.equal(b.stdout, 'ok\n');
    assert.equal(bootsOf(server, 'alice'), 1);
  });

  it('with --allow-internet, the same probe does reach the host (so the isolation test can fail)', VM_TEST, async () => {
    assert.ok(listener);
    const [alice] = qemuProcesses(server.dataDir);
    assert.equal(alice?.netdev, 'user,id=net0', 'a user-mode network with nothing forwarded');
    const r = await server.ssh('alice', keyA, [probeScript({ host: listener.port })]);
    assertOk(r, 'probe script in alice');
    const probe = parseProbes(r.stdout).get('host');
    assert.deepEqual(probe, { rc: 0, out: HostListener.GREETING }, r.stdout);
    assert.equal(listener.connections.length, 1, 'the host listener saw the guest');
  });
});
