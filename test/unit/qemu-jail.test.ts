import { it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jailFor, prepareJail, removeJail } from '../../src/vm/qemu/qemu-jail.js';

const user = { name: 'sshvisor-vm', uid: 999, gid: 995 };

it('without a drop there is no chroot and QEMU reaches the state socket by its real path', () => {
  const j = jailFor('/data/vms/alice', undefined);
  assert.equal(j.chroot, undefined);
  assert.deepEqual(j.saveChannel, { listenPath: '/data/vms/alice/migrate.sock', qemuPath: '/data/vms/alice/migrate.sock' });
});

it('with a drop, the socket is inside the chroot, named from within it, and given to the VM user', () => {
  const j = jailFor('/data/vms/alice', user);
  assert.equal(j.chroot, '/data/vms/alice/jail');
  assert.deepEqual(j.saveChannel, { listenPath: '/data/vms/alice/jail/migrate.sock', qemuPath: '/migrate.sock', owner: user });
});

it('prepareJail makes an empty 0711 directory afresh; resolv.conf only with internet access', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sshvisor-jail-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const j = prepareJail(dir, user, false);
  assert.equal(statSync(j.chroot!).mode & 0o777, 0o711);
  writeFileSync(join(j.chroot!, 'left-behind'), 'x');
  prepareJail(dir, user, false);
  assert.deepEqual(readdirSync(j.chroot!), [], 'nothing an earlier QEMU left survives');
  prepareJail(dir, user, true);
  assert.equal(existsSync(join(j.chroot!, 'etc', 'resolv.conf')), existsSync('/etc/resolv.conf'));
  removeJail(dir);
  assert.equal(existsSync(j.chroot!), false);
  prepareJail(dir, undefined, true);
  assert.equal(existsSync(join(dir, 'jail')), false, 'no jail without a drop');
});
