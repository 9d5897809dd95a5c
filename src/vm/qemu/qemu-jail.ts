import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, openSync, rmSync } from 'node:fs';
import { UserError } from '../../util/errors.js';
import { join } from 'node:path';
import type { SaveChannel } from './migration.js';
import type { VmUser } from './vm-user.js';

/**
 * Where a QEMU that drops privileges ends up: chrooted into VMDIR/jail, an
 * empty directory owned by root. Once there, as the VM user, QEMU can open
 * no file at all: everything it needs it opened as root before the drop,
 * and the VM's files stay root's, 0600. The jail holds only what QEMU must
 * reach afterwards: the socket a suspend sends the state to, and (with
 * internet access) a copy of resolv.conf for the user network's DNS proxy.
 *
 * Without a drop (sshvisor not root) there is no chroot and QEMU reaches the
 * socket by its real path. The disk goes by descriptor either way, so there
 * is one code path to test.
 */
export interface QemuJail {
  /** The chroot directory, when QEMU drops privileges. */
  chroot?: string;
  saveChannel: SaveChannel;
}

const SAVE_SOCKET = 'migrate.sock';
const JAIL_DIR = 'jail';

/** The jail's paths; pure, so a driver that re-attaches to a running QEMU can find them too. */
export function jailFor(vmDir: string, user: VmUser | undefined): QemuJail {
  if (!user) {
    const listenPath = join(vmDir, SAVE_SOCKET);
    return { saveChannel: { listenPath, qemuPath: listenPath } };
  }
  const chroot = join(vmDir, JAIL_DIR);
  return { chroot, saveChannel: { listenPath: join(chroot, SAVE_SOCKET), qemuPath: `/${SAVE_SOCKET}`, owner: user } };
}

/** Make the jail afresh for a QEMU about to start. */
export function prepareJail(vmDir: string, user: VmUser | undefined, allowInternet: boolean): QemuJail {
  const jail = jailFor(vmDir, user);
  if (!jail.chroot) return jail;
  // Whatever an earlier QEMU of this VM left there is not to be trusted.
  removeJail(vmDir);
  mkdirSync(jail.chroot, { mode: 0o711 });
  chmodSync(jail.chroot, 0o711);
  if (allowInternet && existsSync('/etc/resolv.conf')) {
    // libslirp answers the guest's DNS (10.0.2.3) from the host's resolv.conf, which it reads after the chroot.
    mkdirSync(join(jail.chroot, 'etc'), { mode: 0o755 });
    copyFileSync('/etc/resolv.conf', join(jail.chroot, 'etc', 'resolv.conf'));
    chmodSync(join(jail.chroot, 'etc', 'resolv.conf'), 0o644);
  }
  return jail;
}

export function removeJail(vmDir: string): void {
  rmSync(join(vmDir, JAIL_DIR), { recursive: true, force: true });
}

/** QEMU would create it with the umask's mode; guest RAM is for root's eyes (and its own QEMU's fd) only. */
export function createPrivateFile(path: string): void {
  closeSync(openSync(path, 'a', 0o600));
  chmodSync(path, 0o600);
}

/** The disk (read-write) or its backing image (read-only), opened for QEMU's fd set: a dropped QEMU cannot open it by path. */
export function openDisk(path: string, vm: string, flags: 'r+' | 'r' = 'r+'): number {
  try {
    return openSync(path, flags);
  } catch (err) {
    throw new UserError(`VM ${vm} failed to start: cannot open its disk: ${(err as Error).message}`);
  }
}
