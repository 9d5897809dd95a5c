/**
 * What the host and the default guest image agree on. The image's init reads
 * these kernel arguments and prints these markers; the VM manager and the
 * tests rely on nothing else about the guest's insides.
 */

/**
 * Version of this contract. Bump it whenever the guest's init changes in a
 * way the host relies on: an image built for another version is rebuilt by
 * `sshvisor image build --if-missing` and refused by `sshvisor serve`.
 */
export const GUEST_CONTRACT_VERSION = 2;

/** Printed on the serial console when the guest's init starts (first userspace line). */
export const GUEST_INIT_MARKER = 'sshvisor-guest: init started';
/** Printed once the persistent disk is mounted and the SSH daemon is listening. */
export const GUEST_READY_MARKER = 'sshvisor-guest: ready';

/** Printed by a guest booted with `sshvisor.template=1` once it waits for its identity: snapshot it now. */
export const GUEST_TEMPLATE_MARKER = 'sshvisor-guest: template waiting for identity';
/** First word of the identity line a clone of a template is sent on its console (see identityLine). */
export const GUEST_IDENTITY_WORD = 'sshvisor-identity';

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

/** Kernel argument that makes the guest stop before taking an identity, to be snapshotted as a template. */
export const TEMPLATE_KERNEL_ARG = 'sshvisor.template=1';

/**
 * The line a VM cloned from a template reads on its console: who it is, the
 * time, and fresh randomness for its RNG (the clone starts with the
 * template's RNG state).
 */
export function identityLine(id: GuestIdentity, now: Date, seedHex: string): string {
  const [key] = id.authorizedKey ? guestKernelArgs(id).filter((a) => a.startsWith('sshvisor.key=')) : [];
  const parts = [GUEST_IDENTITY_WORD, `name=${id.hostname}`, `time=${Math.round(now.getTime() / 1000)}`, `seed=${seedHex}`];
  if (key) parts.push(`key=${key.slice('sshvisor.key='.length)}`);
  return parts.join(' ') + '\n';
}
