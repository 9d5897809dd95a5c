import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SshvisorServer, runProgram, type RunResult } from '../helpers/sshvisor-server.js';
import { makeBusyboxExt4, makeOciLayout, ociArchive } from '../helpers/image-fixtures.js';
import { TmuxTerminal } from '../helpers/tmux.js';
import { isAlive } from '../../src/vm/qemu/qemu-process.js';
import { freeLoopbackPort } from '../../src/vm/qemu/free-port.js';

/**
 * Real guest images (issue 12), with real VMs and real OpenSSH clients: a
 * Debian system built with mmdebstrap, a busybox ext4 rootfs with no SSH
 * daemon, a two-layer OCI archive, several images on one server, templates
 * per image, and `serve --rootfs FILE`. Every root filesystem here is made
 * by the test (test/helpers/image-fixtures.ts) or built by sshvisor itself.
 */

const MAIN = resolve(import.meta.dirname, '..', '..', 'src', 'cli', 'main.js');
const MiB = 1024 * 1024;

/** `sshvisor ARGS --data-dir DIR` (image commands, and the operator's commands through the control socket). */
const cli = (dataDir: string, args: string[], timeoutMs = 120_000): Promise<RunResult> =>
  runProgram(process.execPath, [MAIN, ...args, '--data-dir', dataDir], { timeoutMs });

/** The command succeeded; its stdout. */
async function ok(p: Promise<RunResult>, what: string): Promise<string> {
  const r = await p;
  assert.equal(r.code, 0, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** `status NAME --json` of the running server. */
async function statusOf(server: SshvisorServer, name: string): Promise<Record<string, unknown>> {
  return JSON.parse(await ok(cli(server.dataDir, ['status', name, '--json']), `status ${name}`)) as Record<string, unknown>;
}

/** Bytes a file takes on the host's disk (allocated blocks, not its length). */
const hostBytes = (path: string): number => statSync(path).blocks * 512;

/** Events of one VM in the server's log (since its last start). */
const eventsOf = (server: SshvisorServer, event: string, vm: string): Array<Record<string, unknown>> => server.events(event).filter((e) => e.vm === vm);

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The bytes of `ssh -o SetEnv=SSHVISOR_IMAGE=NAME`. */
const pickImage = (name: string): string[] => ['-o', `SetEnv=SSHVISOR_IMAGE=${name}`];

/**
 * Unmount anything still mounted under `dir` (deepest first), so that
 * removing the temp dir can never reach through a mount a killed build
 * left behind (mmdebstrap mounts /proc, /sys and /dev in its tree).
 */
function unmountUnder(dir: string): void {
  const mounts = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1]?.replace(/\\040/g, ' '))
    .filter((m): m is string => !!m && (m === dir || m.startsWith(dir + '/')))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
}

/** A busybox ext4 image with `marker` in /etc/marker, imported as `name` into the server's data dir (before it starts). */
async function importBusybox(server: SshvisorServer, name: string, marker: string): Promise<string> {
  mkdirSync(server.dataDir, { recursive: true });
  const file = makeBusyboxExt4(server.dir, join(server.dir, `${name}.ext4`), { files: { 'etc/marker': `${marker}\n` } });
  await ok(cli(server.dataDir, ['image', 'import', file, '--name', name]), `image import ${name}`);
  return file;
}

const OCI_ENV = 'FOO=bar from the image config';
const OCI_PATH = '/opt/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const OCI_WORKDIR = '/srv/app';

/** The fixtures' two-layer OCI archive (a whiteout of /etc/doomed, /etc/upper added, Env and WorkingDir), imported with --oci as `name`. */
async function importOci(server: SshvisorServer, name: string): Promise<void> {
  mkdirSync(server.dataDir, { recursive: true });
  const layout = makeOciLayout(join(server.dir, `oci-${name}`), { env: [OCI_ENV, `PATH=${OCI_PATH}`], workingDir: OCI_WORKDIR, lowerFiles: { 'srv/app/README': 'the working dir\n', 'etc/marker': 'oci\n' } });
  const archive = ociArchive(layout, join(server.dir, `${name}.tar`));
  await ok(cli(server.dataDir, ['image', 'import', '--oci', archive, '--name', name]), `image import --oci ${name}`);
}

describe('a Debian image built with mmdebstrap', () => {
  let server: SshvisorServer;
  let alice: string;
  let bob: string;
  const token = randomBytes(8).toString('hex');
  const WRITE = `echo ${token} > /etc/e2e-marker && mkdir -p /usr/local/e2e && echo ${token} > /usr/local/e2e/marker && echo ${token} > /var/e2e-marker`;
  const READ = 'cat /etc/e2e-marker /usr/local/e2e/marker /var/e2e-marker';
  const written = `${token}\n${token}\n${token}\n`;
  let rootfs: { mtimeMs: number; size: number; blocks: number };
  let sleeper = '';
  let buildLine = '';

  before(async () => {
    server = new SshvisorServer(['--image', 'debian', '--idle-timeout', '0']);
    mkdirSync(server.dataDir, { recursive: true });
    const built = await cli(server.dataDir, ['image', 'build', '--debian', '--name', 'debian'], 400_000);
    assert.equal(built.code, 0, `image build --debian: ${built.stdout}${built.stderr}`);
    buildLine = built.stdout.trim();
    const st = statSync(join(server.dataDir, 'images', 'debian', 'rootfs.ext4'));
    rootfs = { mtimeMs: st.mtimeMs, size: st.size, blocks: st.blocks };
    await server.start();
    alice = server.makeKey('alice');
    bob = server.makeKey('bob');
  });
  after(async () => {
    if (!server) return;
    unmountUnder(server.dir);
    await server.stop();
  });

  it('a VM of it has apt, python3 and git, and its own disk starts at a few MiB over the image', async (t) => {
    t.diagnostic(buildLine);
    const r = await server.ssh('alice', alice, ["apt-get --version | head -n1; python3 -c 'print(6*7)'; git --version; hostname"]);
    assert.equal(r.code, 0, r.stderr);
    const [apt, py, git, host] = r.stdout.trim().split('\n');
    assert.match(apt ?? '', /^apt \d+\.\d+/);
    assert.equal(py, '42');
    assert.match(git ?? '', /^git version \d+\.\d+/);
    assert.equal(host, 'alice');
    assert.equal(eventsOf(server, 'vm-boot', 'alice').length, 1);

    const disk = join(server.dataDir, 'vms', 'alice', 'disk.qcow2');
    t.diagnostic(`alice's disk.qcow2 after her first login: ${(hostBytes(disk) / MiB).toFixed(1)} MiB on the host`);
    assert.ok(hostBytes(disk) < 16 * MiB, `a fresh VM's disk.qcow2 takes ${(hostBytes(disk) / MiB).toFixed(1)} MiB on the host`);
    const info = JSON.parse(await ok(runProgram('qemu-img', ['info', '-U', '--output=json', disk]), 'qemu-img info')) as Record<string, unknown>;
    assert.equal(info.format, 'qcow2');
    assert.equal(info['backing-filename'], join(server.dataDir, 'images', 'debian', 'rootfs.ext4'), 'copy-on-write over the stored image');

    const status = await statusOf(server, 'alice');
    assert.equal(status.image, 'debian');
    assert.match(String(status.kernel), /^Linux \d/);
  });

  it('an interactive login is the image\'s own bash, with root\'s HOME', async () => {
    const term = new TmuxTerminal(`ssh ${server.sshOptions(alice).join(' ')} -p ${server.port} alice@127.0.0.1`, 100, 30);
    try {
      await term.waitFor(/root@alice:~# ?$/m);
      term.type('echo "shell=$(readlink /proc/$$/exe) home=$HOME tty=$(tty)"');
      await term.waitFor(/^shell=\/(usr\/)?bin\/bash home=\/root tty=\/dev\/pts\/\d+$/m);
      term.type('exit');
    } finally {
      term.close();
    }
  });

  it('files in /etc, /usr/local and /var survive stop + boot, suspend + resume and a gateway kill -9 + restart', async () => {
    const w = await server.ssh('alice', alice, [WRITE]);
    assert.equal(w.code, 0, w.stderr);

    // stop: powered off; the next login boots it from its disk.
    assert.match(await ok(cli(server.dataDir, ['stop', 'alice']), 'stop alice'), /^alice stopped/);
    let r = await server.ssh('alice', alice, [READ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, written, 'after stop + boot');
    assert.equal(eventsOf(server, 'vm-boot', 'alice').length, 2, 'booted again');

    // suspend: the next login resumes it, processes and all.
    r = await server.ssh('alice', alice, ['setsid sleep 100000 </dev/null >/dev/null 2>&1 & echo $!']);
    sleeper = r.stdout.trim();
    assert.match(sleeper, /^\d+$/);
    const booted = server.qemuPid('alice');
    assert.ok(booted && isAlive(booted), 'alice runs');
    assert.match(await ok(cli(server.dataDir, ['suspend', 'alice']), 'suspend alice'), /^alice suspended to disk/);
    assert.equal(isAlive(booted), false, 'no QEMU while suspended');
    r = await server.ssh('alice', alice, [`${READ}; kill -0 ${sleeper} && echo same-process`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${written}same-process\n`, 'after suspend + resume');
    assert.equal(eventsOf(server, 'vm-resume', 'alice').length, 1, 'resumed');
    assert.equal(eventsOf(server, 'vm-boot', 'alice').length, 2, 'not booted');

    // kill -9 of the gateway: the VM keeps running; the next serve takes it over.
    const qemu = server.qemuPid('alice');
    assert.ok(qemu && isAlive(qemu), 'alice runs');
    await server.kill9();
    assert.ok(isAlive(qemu), 'QEMU outlives the gateway');
    await server.start();
    await server.waitForEvent('vm-reattached');
    r = await server.ssh('alice', alice, [`${READ}; kill -0 ${sleeper} && echo same-process`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${written}same-process\n`, 'after a gateway restart');
    assert.equal(server.qemuPid('alice'), qemu, 'the same QEMU');
    assert.equal(eventsOf(server, 'vm-boot', 'alice').length, 0, 'not booted by the new gateway');
  });

  it('a second VM of the image sees none of the first one\'s changes, and the image itself is never written', async (t) => {
    const r = await server.ssh('bob', bob, ['for f in /etc/e2e-marker /usr/local/e2e/marker /var/e2e-marker; do test -e $f && echo "$f seen"; done; echo bob-only > /etc/bob-marker; hostname']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'bob\n', 'none of alice\'s files');
    const a = await server.ssh('alice', alice, ['test -e /etc/bob-marker && echo seen || echo absent']);
    assert.equal(a.stdout, 'absent\n', 'and alice does not see bob\'s');

    const disk = join(server.dataDir, 'vms', 'bob', 'disk.qcow2');
    t.diagnostic(`bob's disk.qcow2 after his first login: ${(hostBytes(disk) / MiB).toFixed(1)} MiB on the host`);
    assert.ok(hostBytes(disk) < 16 * MiB, `bob's fresh disk.qcow2 takes ${(hostBytes(disk) / MiB).toFixed(1)} MiB on the host`);
    const st = statSync(join(server.dataDir, 'images', 'debian', 'rootfs.ext4'));
    assert.deepEqual({ mtimeMs: st.mtimeMs, size: st.size, blocks: st.blocks }, rootfs, 'rootfs.ext4 unchanged by two VMs');
    const inspect = JSON.parse(await ok(cli(server.dataDir, ['image', 'inspect', 'debian', '--json']), 'image inspect')) as { usedBy: string[] };
    assert.deepEqual([...inspect.usedBy].sort(), ['alice', 'bob']);
  });
});

describe('a busybox ext4 rootfs with no SSH daemon', () => {
  let server: SshvisorServer;
  let key: string;
  const alice = (cmd: string[], opts?: Parameters<SshvisorServer['ssh']>[3]): Promise<RunResult> => server.ssh('alice', key, cmd, opts);

  before(async () => {
    server = new SshvisorServer(['--image', 'bb', '--idle-timeout', '0']);
    await importBusybox(server, 'bb', 'busybox-rootfs');
    await server.start();
    key = server.makeKey('alice');
  });
  after(() => server?.stop());

  it('exec: its own root, exit codes, stdout and stderr apart; no sshd, and nothing written into the image for access', async () => {
    const r = await alice(['cat /etc/marker; echo to-stderr >&2; exit 7']);
    assert.equal(r.stdout, 'busybox-rootfs\n');
    assert.equal(r.stderr, 'to-stderr\n');
    assert.equal(r.code, 7);
    assert.equal((await alice(['exit 0'])).code, 0);
    const look = await alice(['for f in /usr/sbin/sshd /usr/sbin/dropbear /root/.ssh /etc/ssh; do test -e $f && echo "$f exists"; done; echo "home=$HOME pwd=$(pwd)"']);
    assert.equal(look.code, 0, look.stderr);
    assert.equal(look.stdout, 'home=/root pwd=/root\n');
    assert.equal((await statusOf(server, 'alice')).image, 'bb');
  });

  it('-L reaches a server listening inside the VM', async () => {
    const start = await alice(['mkdir -p /root/www && echo "served from $(cat /etc/marker)" > /root/www/index.html && busybox httpd -p 127.0.0.1:8080 -h /root/www && echo up']);
    assert.equal(start.stdout, 'up\n', start.stderr);
    const port = await freeLoopbackPort();
    const fwd = spawn('ssh', [...server.sshOptions(key), '-p', String(server.port), '-N', '-o', 'ExitOnForwardFailure=yes', '-L', `127.0.0.1:${port}:localhost:8080`, 'alice@127.0.0.1'], { stdio: 'ignore' });
    try {
      let body = '';
      const deadline = Date.now() + 30_000;
      while (body === '' && Date.now() < deadline) {
        body = await fetch(`http://127.0.0.1:${port}/index.html`).then((res) => res.text(), () => '');
        if (body === '') await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(body, 'served from busybox-rootfs\n');
    } finally {
      fwd.kill();
    }
  });

  it('pty: ssh -tt gets a /dev/pts terminal', async () => {
    const r = await alice(['tty'], { sshArgs: ['-tt'] });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\/dev\/pts\/\d+\r\n$/);
  });

  it('scp (-O and SFTP mode) both ways, sftp -b and rsync, byte for byte', async () => {
    const payload = randomBytes(1024 * 1024 + 17);
    const local = join(server.dir, 'upload.bin');
    writeFileSync(local, payload);
    const base = [...server.sshOptions(key), '-P', String(server.port)];
    for (const mode of [['-O'], []]) {
      const name = mode.length ? 'legacy' : 'sftp-mode';
      const up = await runProgram('scp', [...mode, ...base, local, `alice@127.0.0.1:/root/${name}.bin`]);
      assert.equal(up.code, 0, `scp ${name} up: ${up.stderr}`);
      const back = join(server.dir, `${name}-back.bin`);
      const down = await runProgram('scp', [...mode, ...base, `alice@127.0.0.1:/root/${name}.bin`, back]);
      assert.equal(down.code, 0, `scp ${name} down: ${down.stderr}`);
      assert.ok(readFileSync(back).equals(payload), `scp ${name}: the bytes came back the same`);
    }
    const sums = await alice(['cmp /root/legacy.bin /root/sftp-mode.bin && wc -c < /root/legacy.bin']);
    assert.equal(sums.stdout.trim(), String(payload.length), sums.stderr);

    const sftpBack = join(server.dir, 'sftp-back.bin');
    const batch = `put ${local} /root/via-sftp.bin\nls -l /root/via-sftp.bin\nget /root/via-sftp.bin ${sftpBack}\n`;
    const sftp = await runProgram('sftp', [...base, '-b', '-', 'alice@127.0.0.1'], { input: batch });
    assert.equal(sftp.code, 0, sftp.stderr);
    assert.match(sftp.stdout, new RegExp(`${payload.length} .*via-sftp\\.bin`));
    assert.ok(readFileSync(sftpBack).equals(payload), 'sftp: the bytes came back the same');

    const sshCmd = ['ssh', ...server.sshOptions(key), '-p', String(server.port)].join(' ');
    const rs = await runProgram('rsync', ['-a', '-e', sshCmd, local, 'alice@127.0.0.1:/root/via-rsync.bin']);
    assert.equal(rs.code, 0, rs.stderr);
    const check = await alice(['cmp /root/via-rsync.bin /root/legacy.bin && echo same']);
    assert.equal(check.stdout, 'same\n', check.stderr);
  });
});

describe('an OCI archive with two layers, a whiteout, Env and WorkingDir', () => {
  let server: SshvisorServer;
  let key: string;

  before(async () => {
    server = new SshvisorServer(['--image', 'app', '--idle-timeout', '0']);
    await importOci(server, 'app');
    await server.start();
    key = server.makeKey('alice');
  });
  after(() => server?.stop());

  it('the whited-out file is absent, the upper layer\'s file present, Env and WorkingDir in exec and pty sessions', async () => {
    const r = await server.ssh('alice', key, ['test -e /etc/doomed && echo doomed-present || echo doomed-absent; cat /etc/upper; echo "FOO=$FOO"; pwd; echo "$PATH"']);
    assert.equal(r.code, 0, r.stderr);
    const [doomed, upper, foo, pwd, path] = r.stdout.trim().split('\n');
    assert.deepEqual([doomed, upper, foo, pwd], ['doomed-absent', 'upper', OCI_ENV, OCI_WORKDIR]);
    assert.ok(path?.startsWith(OCI_PATH), `the image's PATH first: ${path}`);
    const pty = await server.ssh('alice', key, ['echo "FOO=$FOO"; pwd'], { sshArgs: ['-tt'] });
    assert.equal(pty.code, 0, pty.stderr);
    assert.equal(pty.stdout, `${OCI_ENV}\r\n${OCI_WORKDIR}\r\n`);
    assert.equal((await statusOf(server, 'alice')).image, 'app');
  });
});

describe('several images and shapes on one server', () => {
  const args = ['--image', 'bb', '--user-images', 'app', '--max-memory', '768', '--max-cpus', '2', '--idle-timeout', '0'];
  let server: SshvisorServer;
  const keys: Record<string, string> = {};
  const key = (name: string): string => (keys[name] ??= server.makeKey(name));

  before(async () => {
    server = new SshvisorServer(args, { http: true });
    await importBusybox(server, 'bb', 'bb-root');
    await importBusybox(server, 'hidden', 'hidden-root');
    await importOci(server, 'app');
    args.push('--admin-keys', `${key('admin')}.pub`);
    await server.start();
  });
  after(() => server?.stop());

  it('a user who names an image not offered gets the list, and no VM is made', async () => {
    for (const wanted of ['hidden', 'nosuch']) {
      const r = await server.ssh('frank', key('frank'), ['echo should-not-run'], { sshArgs: pickImage(wanted) });
      assert.notEqual(r.code, 0);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, new RegExp(`image "${wanted}" is not offered here; SSHVISOR_IMAGE may name: bb, app\\b`), r.stderr);
    }
    assert.equal(existsSync(join(server.dataDir, 'vms', 'frank')), false, 'no DATA_DIR/vms/frank');
    assert.equal(server.events('vm-boot').length, 0, 'nothing booted');
    // The key claimed the name at authentication, so the name is known; it has no image and never ran.
    const st = await statusOf(server, 'frank');
    assert.deepEqual([st.state, st.image, st.pid, st.boots], ['stopped', '-', null, 0], JSON.stringify(st));
  });

  it('two VMs with different images run at once, each on its own root; SSHVISOR_IMAGE picks an allowed image', async () => {
    const probe = 'cat /etc/marker; test -e /etc/upper && echo has-upper || echo no-upper; hostname';
    const [dan, erin] = await Promise.all([
      server.ssh('dan', key('dan'), [probe]),
      server.ssh('erin', key('erin'), [probe], { sshArgs: pickImage('app') }),
    ]);
    assert.equal(dan.code, 0, dan.stderr);
    assert.equal(erin.code, 0, erin.stderr);
    assert.equal(dan.stdout, 'bb-root\nno-upper\ndan\n');
    assert.equal(erin.stdout, 'oci\nhas-upper\nerin\n');
    const [d, e] = [server.qemuPid('dan'), server.qemuPid('erin')];
    assert.ok(d && e && d !== e && isAlive(d) && isAlive(e), 'both QEMUs run at once');
    const [sd, se] = await Promise.all([statusOf(server, 'dan'), statusOf(server, 'erin')]);
    assert.deepEqual([sd.state, sd.image, se.state, se.image], ['running', 'bb', 'running', 'app']);

    // SSHVISOR_IMAGE only chooses the image of a new VM: erin stays on app.
    const later = await server.ssh('erin', key('erin'), ['cat /etc/marker'], { sshArgs: pickImage('bb') });
    assert.equal(later.code, 0, later.stderr);
    assert.equal(later.stdout, 'oci\n');
    assert.match(later.stderr, /VM erin already exists with image app; SSHVISOR_IMAGE only chooses the image of a new VM/);
  });

  it('an operator-created VM has its own image and memory (free -m in the guest agrees); ls and status show image and shape', async () => {
    const out = await ok(cli(server.dataDir, ['create', 'carol', '--image', 'app', '--memory', '512', '--cpus', '2', '--disk-size', '2048']), 'create carol');
    assert.equal(out, 'carol created: image app, 512 MiB, 2 vCPUs, 2048 MiB disk; its first login boots it\n');
    assert.equal(existsSync(join(server.dataDir, 'vms', 'carol', 'disk.qcow2')), false, 'nothing booted yet');
    const r = await server.ssh('carol', key('carol'), ["free -m | awk '/^Mem:/ {print $2}'; nproc; cat /etc/upper"]);
    assert.equal(r.code, 0, r.stderr);
    const [total, cpus, upper] = r.stdout.trim().split('\n');
    assert.ok(Number(total) >= 400 && Number(total) <= 512, `free -m says ${total} MiB in a 512 MiB VM`);
    assert.equal(cpus, '2');
    assert.equal(upper, 'upper');

    const status = await statusOf(server, 'carol');
    assert.deepEqual([status.state, status.image, status.memoryMiB, status.vcpus, status.diskMiB], ['running', 'app', 512, 2, 2048]);
    const own = JSON.parse((await server.ssh('carol+status', key('carol'), ['json'])).stdout) as Record<string, unknown>;
    assert.deepEqual([own.image, own.memoryMiB, own.vcpus, own.diskMiB], ['app', 512, 2, 2048], '+status shows the user the same');
    const ls = JSON.parse(await ok(cli(server.dataDir, ['ls', '--json']), 'ls --json')) as Array<Record<string, unknown>>;
    const row = (n: string) => ls.find((v) => v.name === n);
    assert.deepEqual([row('carol')?.image, row('carol')?.memoryMiB, row('carol')?.vcpus, row('carol')?.diskMiB], ['app', 512, 2, 2048]);
    assert.deepEqual([row('dan')?.image, row('dan')?.memoryMiB, row('dan')?.vcpus, row('dan')?.diskMiB], ['bb', 256, 1, 1024]);
    assert.equal(row('erin')?.image, 'app');
  });

  it('a shape above the server\'s maximums is refused with the limit, over the CLI, admin SSH and the HTTP API; nothing is made', async () => {
    const big = await cli(server.dataDir, ['create', 'big', '--memory', '1024']);
    assert.equal(big.code, 1);
    assert.equal(big.stderr, 'sshvisor: create big: memory 1024 MiB is outside what this server allows (64 MiB to 768 MiB)\n');
    const cpus = await cli(server.dataDir, ['create', 'big', '--cpus', '3']);
    assert.equal(cpus.code, 1);
    assert.match(cpus.stderr, /cpus 3 is outside what this server allows \(1 to 2\)/);

    const viaSsh = await server.ssh('admin', key('admin'), ['create', 'big', '--image', 'app', '--memory', '4096']);
    assert.notEqual(viaSsh.code, 0);
    assert.match(viaSsh.stderr, /memory 4096 MiB is outside what this server allows \(64 MiB to 768 MiB\)/);

    const res = await fetch(`${server.httpUrl}/api/vms`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken()}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'big', image: 'app', memoryMiB: 2048 }),
    });
    const text = await res.text();
    assert.equal(res.status, 400, text);
    assert.match(text, /memory 2048 MiB is outside what this server allows \(64 MiB to 768 MiB\)/);

    // Within the limits, the API creates a VM with its shape (it boots at its first login).
    const made = await fetch(`${server.httpUrl}/api/vms`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken()}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'gina', image: 'hidden', memoryMiB: 384, cpus: 2 }),
    });
    const body = (await made.json()) as Record<string, unknown>;
    assert.equal(made.status, 201, JSON.stringify(body));
    assert.deepEqual([body.image, body.memoryMiB, body.vcpus], ['hidden', 384, 2]);

    assert.equal(existsSync(join(server.dataDir, 'vms', 'big')), false);
    assert.match((await cli(server.dataDir, ['status', 'big'])).stderr, /no VM named/);
  });

  it('an image whose file system the guest cannot mount: sessions are refused with the reason, never run in the initramfs', async () => {
    // An image damaged after its import (its checks passed then): the ext4 superblock zeroed in place.
    const from = join(server.dataDir, 'images', 'hidden');
    const to = join(server.dataDir, 'images', 'damaged');
    mkdirSync(to);
    writeFileSync(join(to, 'manifest.json'), readFileSync(join(from, 'manifest.json')));
    spawnSync('cp', ['--sparse=always', join(from, 'rootfs.ext4'), join(to, 'rootfs.ext4')]);
    const fd = openSync(join(to, 'rootfs.ext4'), 'r+');
    writeSync(fd, Buffer.alloc(1024), 0, 1024, 1024);
    closeSync(fd);
    await ok(cli(server.dataDir, ['create', 'zed', '--image', 'damaged']), 'create zed');
    const r = await server.ssh('zed', key('zed'), ['echo should-not-run']);
    assert.notEqual(r.code, 0);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /root filesystem image is not mounted/, r.stderr);
    const log = await ok(cli(server.dataDir, ['logs', 'zed']), 'logs zed');
    assert.match(log, /could not mount the root filesystem image/);
    await ok(cli(server.dataDir, ['rm', 'zed', '--yes']), 'rm zed');
  });

  it('image rm of an image VMs use is refused, naming them', async () => {
    const r = await cli(server.dataDir, ['image', 'rm', 'app']);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /^sshvisor: image app is used by 2 VMs \((carol, erin|erin, carol)\); it stays\n$/);
    // gina was created over the API and has never run: her image is hers all the same.
    const hidden = await cli(server.dataDir, ['image', 'rm', 'hidden']);
    assert.equal(hidden.code, 1, hidden.stdout);
    assert.equal(hidden.stderr, 'sshvisor: image hidden is used by VM gina; it stays\n');
    assert.ok(existsSync(join(server.dataDir, 'images', 'app', 'rootfs.ext4')), 'app is still there');
    const ls = await ok(cli(server.dataDir, ['image', 'ls']), 'image ls');
    assert.match(ls, /^app +oci +\S+ \S+ +2 /m, ls);
    assert.match(ls, /^bb +ext4 +\S+ \S+ +1 /m, ls);
  });
});

describe('templates per image', () => {
  // The default image's template is built at start; bb's only once a bb VM exists.
  let server: SshvisorServer;
  const readyFor = (image: string): Array<Record<string, unknown>> => server.events('template-ready').filter((e) => String(e.dir).includes(`/templates/${image}-`));

  before(async () => {
    server = new SshvisorServer(['--templates', '--user-images', 'bb', '--idle-timeout', '0']);
    await importBusybox(server, 'bb', 'bb-template');
    await server.start();
  });
  after(() => server?.stop());

  it('the first VM of an image boots and its template is built after it; the next VM is a working clone with its own hostname', async () => {
    assert.equal(readyFor('bb').length, 0, 'no bb template before a bb VM');
    const first = await server.ssh('first', server.makeKey('first'), ['cat /etc/marker; hostname; echo first-only > /etc/first'], { sshArgs: pickImage('bb') });
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout, 'bb-template\nfirst\n');
    assert.equal(eventsOf(server, 'vm-boot', 'first').length, 1, 'the first bb VM boots');

    await until('bb\'s template is ready', () => readyFor('bb').length === 1, 180_000);
    const second = await server.ssh('second', server.makeKey('second'), ['cat /etc/marker; hostname; test -e /etc/first && echo sees-first || echo own-disk; echo 6*7=$((6*7))'], { sshArgs: pickImage('bb') });
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout, 'bb-template\nsecond\nown-disk\n6*7=42\n');
    assert.equal(eventsOf(server, 'vm-clone', 'second').length, 1, 'a clone of bb\'s template');
    assert.equal(eventsOf(server, 'vm-boot', 'second').length, 0, 'not booted');
    assert.equal((await statusOf(server, 'second')).image, 'bb');
    const disk = join(server.dataDir, 'vms', 'second', 'disk.qcow2');
    assert.ok(hostBytes(disk) < 16 * MiB, `the clone's disk.qcow2 takes ${(hostBytes(disk) / MiB).toFixed(1)} MiB`);
  });
});

describe('serve --rootfs FILE', () => {
  const args = ['--idle-timeout', '0'];
  let server: SshvisorServer;
  let key: string;

  before(async () => {
    server = new SshvisorServer(args);
    const file = makeBusyboxExt4(server.dir, join(server.dir, 'seed-rootfs.ext4'), { files: { 'etc/marker': 'from --rootfs\n' } });
    args.push('--rootfs', file);
    await server.start();
    key = server.makeKey('alice');
  });
  after(() => server?.stop());

  it('imports FILE as image rootfs once and the first login lands in it', async () => {
    assert.equal(server.events('rootfs-imported').length, 1);
    const r = await server.ssh('alice', key, ['cat /etc/marker']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'from --rootfs\n');
    assert.equal((await statusOf(server, 'alice')).image, 'rootfs');

    // The same FILE on the next start: not imported again, and alice is still on it.
    await server.stop({ keepFiles: true });
    await server.start();
    assert.equal(server.events('rootfs-imported').length, 0, 'not imported twice');
    const again = await server.ssh('alice', key, ['cat /etc/marker']);
    assert.equal(again.stdout, 'from --rootfs\n', again.stderr);
  });
});
