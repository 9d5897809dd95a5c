import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { SshvisorServer, runProgram } from '../helpers/sshvisor-server.js';
import { HostListener, qemuProcesses } from '../helpers/host-listener.js';
import { DEFAULT_VM_USER, resolveVmUser } from '../../src/vm/qemu/vm-user.js';

/**
 * What a compromised QEMU (or guest) could get at, checked on a real server
 * and a real VM: the seccomp sandbox, the privilege drop and chroot under a
 * root server, the modes of the VM's files, the control socket. That a guest
 * cannot reach the host's loopback, the gateway or another guest over the
 * network is proven in ssh-access.test.ts (with two guests); this file adds
 * the same probe once, from the sandboxed QEMU's guest.
 */

const VM_TEST = { timeout: 180_000 };
const isRoot = process.getuid?.() === 0;

/** The fields of /proc/PID/status we look at. */
function procStatus(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const m = /^(\w+):\s*(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!.trim().replace(/\s+/g, ' ');
  }
  return out;
}

/** Run `args` as the VM user, with no supplementary groups, and return how it went. */
function asVmUser(uid: number, gid: number, args: string[]) {
  return runProgram('setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--', ...args], { timeoutMs: 20_000 });
}

describe('VM isolation: sandbox, privilege drop, file modes', () => {
  let server: SshvisorServer;
  let listener: HostListener | undefined;
  let key: string;
  const vmDir = () => join(server.dataDir, 'vms', 'alice');

  before(async () => {
    listener = await HostListener.start();
    server = await new SshvisorServer().start();
    key = server.makeKey('alice');
    const r = await server.ssh('alice', key, ['echo', 'up']);
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await listener?.close();
    await server.stop();
  });

  it('QEMU runs under seccomp; as root, as the VM user with no other groups, chrooted in an empty jail', VM_TEST, () => {
    const [qemu] = qemuProcesses(server.dataDir);
    assert.ok(qemu, 'alice has a QEMU process');
    const status = procStatus(qemu.pid);
    assert.equal(status.Seccomp, '2', 'seccomp filter mode');
    assert.equal(status.NoNewPrivs, '1');
    assert.match(qemu.args[qemu.args.indexOf('-sandbox') + 1]!, /^on,.*spawn=deny/);
    assert.ok(!qemu.args.some((a) => a.includes('disk.img')), 'the disk is passed as descriptors, not by path');
    if (!isRoot) {
      assert.equal(status.Uid!.split(' ')[0], String(process.getuid!()), 'not root: QEMU runs as the server user');
      return;
    }
    const user = resolveVmUser()!;
    assert.equal(status.Uid, `${user.uid} ${user.uid} ${user.uid} ${user.uid}`, 'real, effective, saved and fs uid');
    assert.equal(status.Gid, `${user.gid} ${user.gid} ${user.gid} ${user.gid}`);
    assert.equal(status.Groups, String(user.gid), 'no supplementary groups');
    assert.equal(status.CapEff, '0000000000000000', 'no capabilities');
    assert.equal(readlinkSync(`/proc/${qemu.pid}/root`), join(vmDir(), 'jail'), 'chrooted into the jail');
    assert.deepEqual(readdirSync(join(vmDir(), 'jail')), [], 'the jail is empty while no suspend is under way');
  });

  it('another process of the VM user cannot look into a QEMU (it switched uid, so it is not dumpable)', VM_TEST, async (t) => {
    if (!isRoot) return t.skip('no privilege drop when not root');
    const [qemu] = qemuProcesses(server.dataDir);
    assert.ok(qemu);
    const user = resolveVmUser()!;
    for (const f of ['environ', 'mem']) {
      const r = await asVmUser(user.uid, user.gid, ['head', '-c', '1', `/proc/${qemu.pid}/${f}`]);
      assert.notEqual(r.code, 0, `${DEFAULT_VM_USER} cannot read /proc/PID/${f}`);
      assert.match(r.stderr, /Permission denied/, f);
    }
  });

  it("the VM's files are root's and private: the VM user can open none of them", VM_TEST, async () => {
    const dirStat = statSync(vmDir());
    assert.equal(dirStat.mode & 0o777, 0o700, 'VM dir mode');
    for (const f of readdirSync(vmDir())) {
      const st = statSync(join(vmDir(), f));
      if (f === 'jail') {
        assert.equal(st.mode & 0o777, 0o711, 'the jail can be entered, not listed or written');
        continue;
      }
      assert.equal(st.mode & 0o077, 0, `${f} (${(st.mode & 0o777).toString(8)}) is for its owner only`);
      if (isRoot) assert.equal(st.uid, 0, `${f} belongs to root, not to the VM user`);
    }
    if (!isRoot) return;
    const user = resolveVmUser()!;
    for (const f of ['disk.img', 'ram', 'console.log']) {
      const r = await asVmUser(user.uid, user.gid, ['cat', join(vmDir(), f)]);
      assert.notEqual(r.code, 0, `${DEFAULT_VM_USER} cannot read ${f}`);
      assert.match(r.stderr, /Permission denied/, f);
    }
  });

  it("the VM user cannot connect to the gateway's control socket", VM_TEST, async (t) => {
    if (!isRoot) return t.skip('needs root to act as the VM user');
    const sock = join(server.dataDir, 'control.sock');
    const st = statSync(sock);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal(st.uid, 0);
    const user = resolveVmUser()!;
    const probe = `require('net').connect(${JSON.stringify(sock)}).on('connect',()=>{console.log('connected');process.exit(0)}).on('error',(e)=>{console.log(e.code);process.exit(1)})`;
    const r = await asVmUser(user.uid, user.gid, [process.execPath, '-e', probe]);
    assert.equal(r.stdout.trim(), 'EACCES', r.stderr);
    // Control: root can.
    const ok = await runProgram(process.execPath, ['-e', probe]);
    assert.equal(ok.stdout.trim(), 'connected', ok.stderr);
  });

  it("the guest cannot reach a service on the host's loopback or the gateway", VM_TEST, async () => {
    assert.ok(listener);
    const seen = listener.connections.length;
    const probe = (port: number) => `out=$(timeout 8 nc -w 3 10.0.2.2 ${port} </dev/null 2>&1); echo "rc=$? $out"`;
    const r = await server.ssh('alice', key, [`${probe(listener.port)}; ${probe(server.port)}`]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 2, r.stdout);
    for (const line of lines) assert.match(line, /^rc=1 .*(can't connect|refused|timed out)/i);
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(listener.connections.length, seen, 'the host listener saw no connection');
  });

  it('a suspend under the sandbox writes the state through the gateway, root-owned and private', VM_TEST, async () => {
    const r = await server.ssh('alice', key, ['echo', 'before']);
    assert.equal(r.code, 0, r.stderr);
    await runProgram(process.execPath, [join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.js'), 'suspend', 'alice', '--data-dir', server.dataDir]);
    await server.waitForEvent('vm-suspend', 1, 60_000);
    for (const f of ['snapshot.state', 'snapshot.json', 'ram']) {
      const st = statSync(join(vmDir(), f));
      assert.equal(st.mode & 0o077, 0, `${f} is private`);
      if (isRoot) assert.equal(st.uid, 0, `${f} is root's`);
    }
    assert.deepEqual(readdirSync(vmDir()).filter((f) => f === 'jail' || f.endsWith('.sock')), [], 'no jail or socket left');
    const again = await server.ssh('alice', key, ['echo', 'after']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(server.events('vm-resume').length, 1, 'resumed from the snapshot');
    // The disk is one descriptor QEMU never reopens: no stale lock complaints on the way back.
    assert.doesNotMatch(readFileSync(join(vmDir(), 'qemu.stderr.log'), 'utf8'), /lock/i);
  });
});
