import type { Logger } from '../util/log.js';
import type { GuestImage } from '../image/image.js';
import type { Accel, Vm, VmDriver } from '../vm/driver.js';
import type { Store } from '../store/store.js';
import type { GuestClient } from './guest-connection.js';
import type { GuestSessionPool } from './guest-session-pool.js';
import type { Template } from './template.js';
import type { SnapshotMeta } from './snapshot-files.js';
import type { RestartPolicyOptions } from './restart-policy.js';

export interface VmManagerOptions {
  driver: VmDriver;
  image: GuestImage;
  store: Pick<Store, 'recordBoot' | 'recordExit' | 'recordResume' | 'listVms'>;
  logger: Logger;
  dataDir: string;
  accel: Accel;
  memoryMiB: number;
  cpus: number;
  diskSizeMiB: number;
  maxVms: number;
  allowInternet: boolean;
  /** Seconds a VM stays up after its last session ends before it is suspended to disk; 0 keeps it up. */
  idleTimeoutSec: number;
  /** Seconds a suspended VM's snapshot is kept; after that its next login cold-boots from its disk. */
  snapshotRetentionSec: number;
  bootTimeoutSec: number;
  /** The key the gateway logs in to guests with, and its public line for the guest. */
  gatewayKey: { privateKey: Buffer; publicKey: string };
  /** Start new VMs as clones of a template snapshot (built in the background); cold boot otherwise. */
  templates?: boolean;
  /** Seconds a running VM may go without answering before it is reported hung; 0 or absent: not watched. */
  hungTimeoutSec?: number;
  /** What happens when a VM ends against its will (restart-policy.ts); absent: never restarted. */
  restart?: Pick<RestartPolicyOptions, 'policy' | 'maxRestarts' | 'windowSec'>;
}

/** The guest's SSH host key (wire format), pinned the first time the gateway logs in. */
export const GUEST_HOST_KEY_FILE = 'guest-host-key';

export type Launch =
  | { kind: 'snapshot'; stateFile: string; meta: SnapshotMeta }
  | { kind: 'template'; template: Template }
  | { kind: 'boot' };

/** One running (or booting) VM and who is using it. */
export interface Entry {
  name: string;
  vm?: Vm;
  guest?: GuestClient;
  /** Set while the VM is being suspended (from the guest's sync on): a new session waits for it. */
  suspending?: Promise<unknown>;
  /** Connections for user sessions, one session each. */
  sessionPool?: GuestSessionPool;
  starting?: Promise<void>;
  connecting?: Promise<void>;
  startedAt?: number;
  /** When this gateway took the VM over from an earlier one (reattach.ts); deadlines count from here. */
  attachedAt?: number;
  /** When the snapshot this VM was resumed from was taken. */
  resumedFrom?: number;
  /** Resolves when the guest says its SSH daemon is up (at once for a resumed guest, whose daemon never went away). */
  guestReady?: Promise<void>;
  sessions: number;
  idleTimer?: NodeJS.Timeout;
}

/** How a VM run began: a cold boot, a clone of the template, or a resume of its own snapshot. */
export type LaunchHow = 'boot' | 'clone' | 'resume';

