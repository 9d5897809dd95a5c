import { execFileSync } from 'node:child_process';
import { UserError } from '../../util/errors.js';

/** The unprivileged account QEMU runs as when sshvisor runs as root (scripts/setup.sh creates it). */
export const DEFAULT_VM_USER = 'sshvisor-vm';

export interface VmUser {
  name: string;
  uid: number;
  gid: number;
}

/**
 * Who QEMU should drop to: nobody when sshvisor is not root (QEMU then runs
 * as the same user, which is all an unprivileged user can do), the VM user
 * when it is. A root server without that user refuses to start: silently
 * running guests' QEMU as root would be the one outcome worse than an error.
 */
export function resolveVmUser(name = DEFAULT_VM_USER, isRoot = process.getuid?.() === 0): VmUser | undefined {
  if (!isRoot) return undefined;
  let line: string;
  try {
    line = execFileSync('getent', ['passwd', name], { encoding: 'utf8' }).trim();
  } catch {
    throw new UserError(
      `sshvisor runs as root, so QEMU must drop to the unprivileged user "${name}", which does not exist. ` +
        `Create it with scripts/setup.sh, or: useradd --system --no-create-home --shell /usr/sbin/nologin ${name}`,
    );
  }
  const [, , uid, gid] = line.split(':');
  const user = { name, uid: Number(uid), gid: Number(gid) };
  if (!Number.isInteger(user.uid) || !Number.isInteger(user.gid) || user.uid === 0 || user.gid === 0) {
    throw new UserError(`the VM user "${name}" must be an unprivileged account, but getent says: ${line}`);
  }
  return user;
}
