import { it } from 'node:test';
import assert from 'node:assert/strict';
import { buildQemuArgs } from '../../src/vm/qemu/qemu-args.js';
import type { VmSpec } from '../../src/vm/driver.js';

const spec: VmSpec = {
  name: 'alice',
  dir: '/data/vms/alice',
  image: { name: 'default', kernel: '/img/vmlinuz', initrd: '/img/initrd.img', append: [], agent: true },
  memoryMiB: 256,
  cpus: 2,
  accel: 'tcg',
  disk: '/data/vms/alice/disk.img',
  network: { allowInternet: false },
  agent: true,
  kernelArgs: ['sshvisor.name=alice'],
};
const paths = { qmpSocket: '/q.sock', consoleSocket: '/c.sock', agentSocket: '/a.sock', pidFile: '/p.pid' };
const arg = (args: string[], flag: string, nth = 0) => args.filter((_, i) => args[i - 1] === flag)[nth];

it('under TCG: legacy timers, tsc_early_khz, starts paused', () => {
  const args = buildQemuArgs(spec, paths, { tscKhz: 2596144 });
  assert.equal(arg(args, '-M'), 'microvm,pit=on,pic=on,rtc=on');
  assert.equal(arg(args, '-accel'), 'tcg');
  assert.ok(args.includes('-S'));
  assert.match(arg(args, '-append')!, /tsc_early_khz=2596144/);
  assert.match(arg(args, '-append')!, /sshvisor\.name=alice$/);
  assert.equal(arg(args, '-smp'), '2');
});

it('no NIC unless internet is allowed: the gateway reaches the guest through its agent, not a network', () => {
  const none = buildQemuArgs(spec, paths);
  assert.ok(!none.includes('-netdev'), 'no NIC at all when nothing needs one');
  assert.ok(!none.some((a) => a.includes('hostfwd')), 'no port of the guest is forwarded to the host');
  const open = buildQemuArgs({ ...spec, network: { allowInternet: true } }, paths);
  assert.equal(arg(open, '-netdev'), 'user,id=net0');
});

it("the agent's channel is a virtio-serial port named for the agent, backed by a unix socket", () => {
  const args = buildQemuArgs(spec, paths);
  assert.equal(arg(args, '-chardev', 1), 'socket,id=agent0,path=/a.sock,server=on,wait=off');
  assert.ok(args.includes('virtio-serial-device,max_ports=2'));
  assert.ok(args.includes('virtserialport,chardev=agent0,name=org.sshvisor.agent.0'));
  const consoleOnly = buildQemuArgs({ ...spec, agent: false }, paths);
  assert.ok(!consoleOnly.some((a) => a.includes('virtserialport')), 'a console-only guest gets no agent port');
});

it('under KVM: host CPU, no TSC hint', () => {
  const args = buildQemuArgs({ ...spec, accel: 'kvm' }, paths, { tscKhz: 2596144 });
  assert.equal(arg(args, '-M'), 'microvm');
  assert.equal(arg(args, '-cpu'), 'host');
  assert.doesNotMatch(arg(args, '-append')!, /tsc_early_khz/);
});

it('console and QMP are unix sockets, the disk is virtio-blk', () => {
  const args = buildQemuArgs(spec, paths);
  assert.equal(arg(args, '-qmp'), 'unix:/q.sock,server=on,wait=off');
  assert.equal(arg(args, '-chardev'), 'socket,id=console0,path=/c.sock,server=on,wait=off,telnet=on');
  assert.match(arg(args, '-drive')!, /file=\/data\/vms\/alice\/disk\.img,format=raw/);
  assert.ok(args.includes('virtio-blk-device,drive=disk0'));
});

it('always runs under the seccomp sandbox: no fork/exec, no obsolete calls, no set*id unless QEMU itself drops', () => {
  const args = buildQemuArgs(spec, paths);
  assert.equal(arg(args, '-sandbox'), 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny');
  assert.ok(!args.includes('-runas') && !args.includes('-chroot'), 'no drop when not asked');
});

it('a root server has QEMU chroot and drop to the VM user, with the sandbox letting -runas through', () => {
  const args = buildQemuArgs(spec, paths, { drop: { uid: 999, gid: 995, chroot: '/data/vms/alice/jail' } });
  assert.equal(arg(args, '-runas'), '999:995');
  assert.equal(arg(args, '-chroot'), '/data/vms/alice/jail');
  assert.equal(arg(args, '-sandbox'), 'on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny');
});

it('the disk can come as an fd set instead of a path, and is never reopened read-only', () => {
  const args = buildQemuArgs(spec, paths, { diskFd: 4 });
  assert.equal(arg(args, '-add-fd'), 'fd=4,set=1');
  assert.equal(arg(args, '-drive'), 'id=disk0,file=/dev/fdset/1,format=raw,if=none,discard=unmap,auto-read-only=off');
  assert.ok(!args.join(' ').includes('disk.img'), 'QEMU is not given the path');
});

it('a restore waits for its state (-incoming defer); no exec: anywhere', () => {
  const args = buildQemuArgs({ ...spec, restoreFrom: { stateFile: '/data/vms/alice/snapshot.state' } }, paths);
  assert.equal(arg(args, '-incoming'), 'defer');
  assert.ok(!args.some((a) => a.includes('exec:')));
});
