import type { Logger } from '../util/log.js';
import type { GuestImage, ImageSource } from '../image/image.js';
import type { Accel, Vm, VmDriver } from '../vm/driver.js';
import type { Store, VmShape } from '../store/store.js';
import type { AgentConnection } from '../guest/agent-connection.js';
import type { Template, TemplateStore } from './template.js';
import type { SnapshotMeta } from './snapshot-files.js';
import type { RestartPolicyOptions } from './restart-policy.js';
import type { ShapeLimits } from './vm-shape.js';

/** ShapeLimits: defaults for a new VM and the most one may have; each VM keeps the shape it was created with (vm-shape.ts). */
export interface VmManagerOptions extends ShapeLimits {
  driver: VmDriver;
  /** Where each VM's image comes from (its recorded image, or the default for a new VM). */
  images: ImageSource;
  store: Pick<Store, 'recordBoot' | 'recordExit' | 'recordResume' | 'listVms' | 'getVm' | 'createVm'>;
  logger: Logger;
  dataDir: string;
  accel: Accel;
  maxVms: number;
  allowInternet: boolean;
  /** Seconds a VM stays up after its last session ends before it is suspended to disk; 0 keeps it up. */
  idleTimeoutSec: number;
  /** Seconds a suspended VM's snapshot is kept; after that its next login cold-boots from its disk. */
  snapshotRetentionSec: number;
  bootTimeoutSec: number;
  /** Start new VMs as clones of a template snapshot (built in the background); cold boot otherwise. */
  templates?: boolean;
  /** Seconds a running VM may go without answering before it is reported hung; 0 or absent: not watched. */
  hungTimeoutSec?: number;
  /** What happens when a VM ends against its will (restart-policy.ts); absent: never restarted. */
  restart?: Pick<RestartPolicyOptions, 'policy' | 'maxRestarts' | 'windowSec'>;
}

export type Launch =
  | { kind: 'snapshot'; stateFile: string; meta: SnapshotMeta }
  | { kind: 'template'; template: Template; store: TemplateStore }
  | { kind: 'boot' };

/** One running (or booting) VM and who is using it. */
export interface Entry {
  name: string;
  /** The VM's image and shape, as created (vm-shape.ts). */
  image: GuestImage;
  shape: VmShape;
  vm?: Vm;
  /** The connection to the guest's agent, once made. */
  agent?: AgentConnection;
  /** A clone that has not been told its identity yet (template.ts): sent by the first connection. */
  identity?: { hostname: string; unixMs: number; seed: Buffer };
  /** Set while the VM is being suspended (from the guest's sync on): a new session waits for it. */
  suspending?: Promise<unknown>;
  starting?: Promise<void>;
  connecting?: Promise<void>;
  startedAt?: number;
  /** When this gateway took the VM over from an earlier one (reattach.ts); deadlines count from here. */
  attachedAt?: number;
  /** When the snapshot this VM was resumed from was taken. */
  resumedFrom?: number;
  /** Resolves when the guest says it is ready for sessions (at once for a resumed guest). */
  guestReady?: Promise<void>;
  sessions: number;
  idleTimer?: NodeJS.Timeout;
}

/** How a VM run began: a cold boot, a clone of the template, or a resume of its own snapshot. */
export type LaunchHow = 'boot' | 'clone' | 'resume';

