/**
 * What the host and the default guest image agree on. The image's init reads
 * these kernel arguments and prints these markers; the VM manager and the
 * tests rely on nothing else about the guest's insides.
 */

/** Printed on the serial console when the guest's init starts (first userspace line). */
export const GUEST_INIT_MARKER = 'sshvisor-guest: init started';
/** Printed once the persistent disk is mounted and the SSH daemon is listening. */
export const GUEST_READY_MARKER = 'sshvisor-guest: ready';

/** Guest address on QEMU's user-mode network, and the port its SSH daemon listens on. */
export const GUEST_IP = '10.0.2.15';
export const GUEST_SSH_PORT = 22;

export interface GuestIdentity {
  /** The guest's hostname; sshvisor uses the VM name. */
  hostname: string;
  /** An OpenSSH public key line ("ssh-ed25519 AAAA... comment") the guest's sshd trusts for root. */
  authorizedKey?: string;
}

/** Kernel arguments that hand a guest its identity. Spaces can't appear in one argument, so ':' stands in. */
export function guestKernelArgs(id: GuestIdentity): string[] {
  const args = [`sshvisor.name=${id.hostname}`];
  if (id.authorizedKey) {
    const [type, body] = id.authorizedKey.trim().split(/\s+/);
    if (!type || !body || !/^[A-Za-z0-9+/=@.-]+$/.test(type + body)) {
      throw new Error('authorizedKey must be an OpenSSH public key line');
    }
    args.push(`sshvisor.key=${type}:${body}`);
  }
  return args;
}
