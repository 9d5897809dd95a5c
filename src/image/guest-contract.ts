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
export const GUEST_CONTRACT_VERSION = 4;

/** Printed on the serial console when the guest's init starts (first userspace line). */
export const GUEST_INIT_MARKER = 'sshvisor-guest: init started';
/** Printed once the persistent disk is mounted and the guest is ready for sessions. */
export const GUEST_READY_MARKER = 'sshvisor-guest: ready';

/** Printed by a guest booted with `sshvisor.template=1` once it waits for its identity: snapshot it now. */
export const GUEST_TEMPLATE_MARKER = 'sshvisor-guest: template waiting for identity';
/**
 * Where the agent writes a clone's identity (`hostname=NAME` lines) when the
 * gateway sends it (docs/guest-protocol.md, `identity`); a template's init waits for it.
 */
export const GUEST_IDENTITY_FILE = '/run/sshvisor/identity';

/**
 * The guest agent protocol versions the agent built into images by this
 * sshvisor speaks (docs/guest-protocol.md); recorded in the image manifest.
 */
export const AGENT_PROTOCOL = { minVersion: 1, maxVersion: 1 } as const;

/** Guest address on QEMU's user-mode network (with --allow-internet). */
export const GUEST_IP = '10.0.2.15';

/** Kernel arguments that hand a booted guest its name (the VM name; see vm-name.ts for what it may contain). */
export function guestKernelArgs(id: { hostname: string }): string[] {
  return [`sshvisor.name=${id.hostname}`];
}

/** Kernel argument that makes the guest stop before taking an identity, to be snapshotted as a template. */
export const TEMPLATE_KERNEL_ARG = 'sshvisor.template=1';

/**
 * Kernel argument that makes the guest boot its disk as a root filesystem
 * image (docs/images.md): mounted at SESSION_ROOT, every session chrooted
 * there by the agent, instead of a data disk holding /root.
 */
export const ROOTFS_KERNEL_ARG = 'sshvisor.rootfs=1';
/** Where the guest mounts a root filesystem image. */
export const SESSION_ROOT = '/newroot';
/** The file the agent reads its session root from (agent/internal/agent/sessionroot.go). */
export const SESSION_ROOT_FILE = '/run/sshvisor/session-root';
