/**
 * What callers of the VM manager (the SSH and HTTP front doors, ops) see of
 * it: leases, results, runtime facts and events. vm-manager.ts re-exports it.
 */
import type { ExitInfo, Vm, VmState } from '../vm/driver.js';
import type { AgentConnection } from '../guest/agent-connection.js';
import type { LaunchHow } from './manager-types.js';
import type { HungInfo } from './health-monitor.js';
import type { ShapeRequest } from './vm-shape.js';
import type { GuestImage } from '../image/image.js';
import type { VmShape } from '../store/store.js';

/** A session's hold on a running VM; release it when the session ends. */
export interface Lease {
  readonly name: string;
  readonly vm: Vm;
  /**
   * The gateway's connection to the guest's agent (sessions, forwards; see
   * docs/guest-protocol.md); absent for console sessions and console-only images.
   */
  readonly agent: AgentConnection | undefined;
  /** The VM's image (its session environment among it) and shape. */
  readonly image: GuestImage;
  readonly shape: VmShape;
  release(): void;
}

export interface AcquireOptions {
  /** Called when the caller has to wait (a boot, a resume, or a VM still powering off). */
  onWaiting?: () => void;
  /** One line the user should see (e.g. a snapshot that could not be used). */
  onNotice?: (line: string) => void;
  /** Also connect to the guest's agent (default: when the image has one). */
  guest?: boolean;
  /** The image and shape `name` is made with if it does not exist yet; an existing VM keeps its own (compare Lease.shape). */
  create?: ShapeRequest;
}

/** What the manager knows of a VM it has in hand (booting, running or on its way down). */
export interface VmRuntime {
  /** 'created' until the VM process exists (its disk is being made). */
  state: VmState;
  /** The hypervisor process. */
  pid: number | undefined;
  /** When this VM process started (ms since the epoch). */
  startedAt: number | undefined;
  /** This run was resumed from a snapshot taken then (ms since the epoch). */
  resumedFrom: number | undefined;
  /** Leases held: shell, exec, sftp, forward and +console sessions. */
  sessions: number;
  /** Set while the VM runs but does not answer (health-monitor.ts). */
  hung?: HungInfo;
}

/** What an operator's stop did. */
export type StopResult =
  | { kind: 'stopped'; exit: ExitInfo }
  /** The VM was suspended: its saved state is deleted, so its next start is a boot from its disk. */
  | { kind: 'discarded' }
  | { kind: 'not-running' };

/** What an operator's suspend did. */
export type SuspendResult =
  | { kind: 'suspended' }
  /** `exit` unset: the VM is still running (e.g. no room for the snapshot); `error` says why. */
  | { kind: 'failed'; exit: ExitInfo | undefined; error?: string }
  | { kind: 'not-running' };

export interface ManagerEvents {
  /** A VM was created and is about to start: attach to its console now to see every byte. */
  'vm-created': [Vm, { resumedFrom?: Date; cloned?: boolean; reattached?: { lostSince?: Date } }];
  'vm-exit': [string, ExitInfo];
  /** At start (reattach): the VM was left running by an earlier server, but its QEMU has ended since. */
  'vm-gone': [string, string];
  /** The VM process of `name` runs: booted, cloned or resumed. */
  'vm-started': [string, LaunchHow];
  /** `name`'s guest became usable `ms` after its VM started (once per run). */
  'vm-ready': [string, LaunchHow, number];
  /** A line for the VM's console log (hung, answering again, restarts). */
  'vm-note': [string, string];
}
