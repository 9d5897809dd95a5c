import type { VmSpec } from '../driver.js';

export interface QemuRuntimePaths {
  qmpSocket: string;
  consoleSocket: string;
  /** Host side of the guest agent's virtio-serial port (spec.agent). */
  agentSocket: string;
  pidFile: string;
}

/** The virtio-serial port name the guest agent looks for (docs/guest-protocol.md, Transport). */
export const AGENT_PORT_NAME = 'org.sshvisor.agent.0';

const DISK_FDSET = 1;
const BACKING_FDSET = 2;

/** QEMU option values escape a comma by doubling it; a path may contain one. */
const opt = (value: string): string => value.replace(/,/g, ',,');

export interface QemuArgsOptions {
  /** Host TSC rate, passed to the guest under TCG (see accel.ts). */
  tscKhz?: number;
  /**
   * Root only: QEMU opens everything it needs (kernel, disk, RAM file,
   * sockets) as root, then chroots into `chroot` and becomes uid:gid before
   * the guest runs its first instruction.
   */
  drop?: { uid: number; gid: number; chroot: string };
  /**
   * The disk as an inherited read-write descriptor (an fd set) instead of
   * its path: a chrooted, unprivileged QEMU could not reopen it by path.
   */
  diskFd?: number;
  /** The inherited descriptor of spec.diskBacking, opened read-only. */
  backingFd?: number;
}

/**
 * QEMU's seccomp filter. spawn=deny: QEMU can neither fork nor exec (so no
 * exec: migration; see migration.ts). elevateprivileges must be `allow` when
 * QEMU itself drops to another user, because QEMU 7.2 installs the filter
 * before -runas calls setgid/setuid and would kill itself; once dropped, all
 * its uids are the VM user's and there is nothing left to elevate to.
 */
export function sandboxOption(dropping: boolean): string {
  return `on,obsolete=deny,elevateprivileges=${dropping ? 'allow' : 'deny'},spawn=deny,resourcecontrol=deny`;
}

/**
 * The qemu-system-x86_64 command line for a microVM. It starts paused (-S):
 * the driver attaches QMP and the console first, then sends `cont`, so not
 * one byte of console output is lost.
 */
export function buildQemuArgs(spec: VmSpec, paths: QemuRuntimePaths, opts: QemuArgsOptions = {}): string[] {
  const tcg = spec.accel === 'tcg';
  const kernelArgs = ['console=ttyS0', 'panic=-1', 'reboot=t'];
  if (tcg && opts.tscKhz) kernelArgs.push(`tsc_early_khz=${opts.tscKhz}`);
  kernelArgs.push(...spec.image.append, ...spec.kernelArgs);

  const args = [
    '-name', `sshvisor-${spec.name},process=sshvisor-${spec.name}`,
    // The legacy PIT/PIC/RTC give TCG guests a timer to calibrate against; under KVM they cost nothing worth saving.
    '-M', (tcg ? 'microvm,pit=on,pic=on,rtc=on' : 'microvm') + (spec.memoryFile ? ',memory-backend=mem' : ''),
    '-accel', spec.accel,
    '-cpu', tcg ? 'max' : 'host',
    '-m', String(spec.memoryMiB),
    '-smp', String(spec.cpus),
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-no-reboot',
    '-S',
    '-pidfile', paths.pidFile,
    '-qmp', `unix:${opt(paths.qmpSocket)},server=on,wait=off`,
    // telnet=on: so a serial break can be sent (console-telnet.ts).
    '-chardev', `socket,id=console0,path=${opt(paths.consoleSocket)},server=on,wait=off,telnet=on`,
    '-serial', 'chardev:console0',
    '-kernel', spec.image.kernel,
    '-append', kernelArgs.join(' '),
    // A guest that can't run an ACPI stack (a unikernel) reports a panic by writing to I/O port 0x505.
    '-device', 'pvpanic',
    '-object', 'rng-random,id=rng0,filename=/dev/urandom',
    '-device', 'virtio-rng-device,rng=rng0',
    '-sandbox', sandboxOption(opts.drop !== undefined),
  ];
  if (opts.drop) args.push('-runas', `${opts.drop.uid}:${opts.drop.gid}`, '-chroot', opts.drop.chroot);
  if (spec.image.initrd) args.push('-initrd', spec.image.initrd);
  if (spec.memoryFile) {
    args.push('-object', `memory-backend-file,id=mem,size=${spec.memoryMiB}M,mem-path=${opt(spec.memoryFile)},share=${spec.memoryPrivate ? 'off' : 'on'}`);
  }
  // The state arrives on an inherited descriptor (migration.ts) once the driver is attached.
  if (spec.restoreFrom) args.push('-incoming', 'defer');
  if (spec.disk) {
    if (opts.diskFd !== undefined) args.push('-add-fd', `fd=${opts.diskFd},set=${DISK_FDSET}`);
    const file = opts.diskFd !== undefined ? `/dev/fdset/${DISK_FDSET}` : opt(spec.disk);
    if (spec.diskBacking) {
      if (opts.backingFd !== undefined) args.push('-add-fd', `fd=${opts.backingFd},set=${BACKING_FDSET}`);
      const base = opts.backingFd !== undefined ? `/dev/fdset/${BACKING_FDSET}` : opt(spec.diskBacking);
      // The image is named here, not by the overlay's header: a dropped QEMU opens no path, and no guest picks its backing file.
      args.push(
        '-blockdev', `driver=file,node-name=base-file,filename=${base},read-only=on`,
        '-blockdev', 'driver=raw,node-name=base,file=base-file,read-only=on',
        '-blockdev', `driver=file,node-name=disk-file,filename=${file},discard=unmap`,
        '-blockdev', 'driver=qcow2,node-name=disk0,file=disk-file,backing=base,discard=unmap',
        '-device', 'virtio-blk-device,drive=disk0',
      );
    } else {
      args.push(
        // auto-read-only=off: -drive's default reopens the image read-only when a suspend deactivates it, and
        // read-write again on resume; keeping the one read-write descriptor needs no path and keeps its locks.
        '-drive', `id=disk0,file=${file},format=raw,if=none,discard=unmap,auto-read-only=off`,
        '-device', 'virtio-blk-device,drive=disk0',
      );
    }
  }
  if (spec.agent) {
    // The agent's channel: no network involved, a socket only root can open (the VM dir is 0700).
    args.push(
      '-chardev', `socket,id=agent0,path=${opt(paths.agentSocket)},server=on,wait=off`,
      '-device', 'virtio-serial-device,max_ports=2',
      '-device', `virtserialport,chardev=agent0,name=${AGENT_PORT_NAME}`,
    );
  }
  if (spec.network.allowInternet) {
    args.push('-netdev', 'user,id=net0', '-device', 'virtio-net-device,netdev=net0');
  }
  return args;
}
