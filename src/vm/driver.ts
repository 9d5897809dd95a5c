/**
 * The VM driver interface: everything above this layer (the VM manager, the
 * console hub) talks to a Vm through these types only, so a Firecracker
 * driver can sit beside QEMU's.
 */
import type { EventEmitter } from 'node:events';
import type { GuestImage } from '../image/image.js';

export type AccelMode = 'auto' | 'kvm' | 'tcg';
export type Accel = 'kvm' | 'tcg';

export interface VmSpec {
  /** VM name; also the guest hostname. Must already be validated (see vm-name.ts). */
  name: string;
  /** Runtime directory for this VM (sockets, logs, pid file); created with mode 0700. */
  dir: string;
  image: GuestImage;
  memoryMiB: number;
  cpus: number;
  accel: Accel;
  /**
   * The guest's persistent disk (/dev/vda): a raw ext4 file, or with
   * diskBacking a qcow2 overlay (its own writes) over that read-only raw file
   * (an image's rootfs.ext4, shared by every VM of the image).
   */
  disk?: string;
  /** The raw file a qcow2 `disk` is a copy-on-write layer over; opened read-only. */
  diskBacking?: string;
  network: {
    /** Without this, the guest has no network device: it can open no connection out of the VM at all. */
    allowInternet: boolean;
  };
  /**
   * Give the guest the virtio-serial port its sshvisor-agent talks on
   * (docs/guest-protocol.md); the host side is Vm.agentSocket.
   */
  agent?: boolean;
  /** Kernel arguments added after the driver's own and the image's. */
  kernelArgs: string[];
  /**
   * Back guest RAM with this file (shared mapping), so a suspend writes only
   * device state and the RAM stays where it is. Required for suspend().
   */
  memoryFile?: string;
  /**
   * Map memoryFile privately (copy-on-write): the file is a read-only
   * template other VMs share, and a suspend must then save RAM in the state.
   */
  memoryPrivate?: boolean;
  /**
   * Of use only to the process that started it (a template build): it ends
   * with that process even when the driver's VMs outlive the gateway.
   */
  ephemeral?: boolean;
  /** Resume from the device state a suspend() wrote, instead of booting. */
  restoreFrom?: {
    stateFile: string;
    /** The state carries guest RAM (taken from a private mapping); otherwise RAM is memoryFile's content. */
    ramInState?: boolean;
  };
}

export type VmState = 'created' | 'starting' | 'running' | 'paused' | 'stopping' | 'exited';

export type ExitReason =
  /** The guest powered itself off (or acknowledged a stop request). */
  | 'poweroff'
  /** The guest rebooted; sshvisor VMs do not reboot in place. */
  | 'reboot'
  /** The guest kernel panicked. */
  | 'panic'
  /** sshvisor stopped it on request; `detail` says whether it had to force it. */
  | 'stopped'
  /** sshvisor killed it (Vm.kill). */
  | 'killed'
  /** Saved to disk by Vm.suspend(); a VM started with restoreFrom continues it. */
  | 'suspended'
  /** The hypervisor process died on its own (a signal from elsewhere, a QEMU error). */
  | 'crashed';

export interface ExitInfo {
  reason: ExitReason;
  /** One human-readable line, e.g. "guest panic", "qemu killed by SIGKILL". */
  detail: string;
  code: number | null;
  signal: string | null;
  at: Date;
}

export interface VmStatus {
  state: VmState;
  pid?: number;
  startedAt?: Date;
  /** The hypervisor's own view, where it has one (QMP's run state). */
  hypervisorState?: string;
  exit?: ExitInfo;
}

export interface VmEvents {
  /** Bytes the guest wrote to its serial console, from the very first. */
  console: [Buffer];
  state: [VmState];
  exit: [ExitInfo];
}

export interface Vm extends EventEmitter<VmEvents> {
  readonly name: string;
  readonly spec: VmSpec;
  readonly state: VmState;
  readonly pid: number | undefined;
  /** The unix socket of the guest agent's channel (spec.agent), while the VM runs. */
  readonly agentSocket: string | undefined;
  /** Resolves when the VM has exited, however that happened. */
  readonly exited: Promise<ExitInfo>;

  /** Launch the VM; console capture is attached before the guest runs its first instruction. */
  start(): Promise<void>;
  /** Ask the guest to power off; kill it if it has not within `timeoutMs`. */
  stop(options?: { timeoutMs?: number }): Promise<ExitInfo>;
  /** End the VM now. */
  kill(): Promise<ExitInfo>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /**
   * Save the guest's device state to `stateFile` (its RAM is already in
   * spec.memoryFile, flushed with its disk) and end the hypervisor process.
   * `beforeQuit` runs once the state is durable, while the VM still exists:
   * the place to record the snapshot so no one sees it half made.
   */
  suspend(stateFile: string, options?: { beforeQuit?: () => void }): Promise<ExitInfo>;
  /** The hypervisor's version, e.g. "qemu 7.2.22": a snapshot only restores on the same one. */
  readonly hypervisorVersion: string | undefined;
  status(): Promise<VmStatus>;
  /** Send bytes to the guest's serial console input. */
  writeConsole(data: Buffer | string): void;
  /** Send a serial break on the console (RFC 4335's `break`; Linux: Magic SysRq's prefix). */
  sendBreak(): void;
}

export interface VmDriver {
  readonly name: string;
  /** e.g. "qemu 7.2.22", the same string Vm.hypervisorVersion reports. */
  readonly version: string;
  create(spec: VmSpec): Vm;
  /**
   * The VM an earlier gateway process left running in `dir` (a VmSpec.dir),
   * as a Vm whose start() takes it over instead of launching one: the
   * console is captured again from that moment on, and a guest left paused
   * is reported as 'paused'. Undefined when no live VM is there; whatever a
   * dead one left (pid file, sockets) is cleaned up.
   */
  attach(dir: string): Promise<Vm | undefined>;
}
