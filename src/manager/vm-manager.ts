import { EventEmitter, once } from 'node:events';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../util/log.js';
import { UserError, errorMessage } from '../util/errors.js';
import { ensurePrivateDir } from '../util/paths.js';
import type { GuestImage } from '../image/image.js';
import { guestKernelArgs } from '../image/guest-contract.js';
import type { Accel, ExitInfo, Vm, VmDriver } from '../vm/driver.js';
import { assertVmName, isValidVmName } from '../vm/vm-name.js';
import { ensureDisk } from '../vm/disk.js';
import type { Store } from '../store/store.js';
import { CapacityError } from './capacity-error.js';
import { connectGuest, guestExec, type GuestClient } from './guest-connection.js';
import { TemplateStore, type Template } from './template.js';
import {
  deleteSnapshot,
  forgetSnapshot,
  imageFingerprint,
  inspectSnapshot,
  moveSnapshotAside,
  snapshotPaths,
  snapshotTakenAt,
  writeSnapshotMeta,
  type SnapshotMeta,
} from './snapshot-files.js';

export interface VmManagerOptions {
  driver: VmDriver;
  image: GuestImage;
  store: Pick<Store, 'recordBoot' | 'recordExit'>;
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
}

/** The guest's SSH host key (wire format), pinned the first time the gateway logs in. */
const GUEST_HOST_KEY_FILE = 'guest-host-key';

type Launch =
  | { kind: 'snapshot'; stateFile: string; meta: SnapshotMeta }
  | { kind: 'template'; template: Template }
  | { kind: 'boot' };

/** One running (or booting) VM and who is using it. */
interface Entry {
  name: string;
  vm?: Vm;
  guest?: GuestClient;
  starting?: Promise<void>;
  connecting?: Promise<void>;
  startedAt?: number;
  /** When the snapshot this VM was resumed from was taken. */
  resumedFrom?: number;
  sessions: number;
  idleTimer?: NodeJS.Timeout;
}

/** A session's hold on a running VM; release it when the session ends. */
export interface Lease {
  readonly name: string;
  readonly vm: Vm;
  /** The gateway's SSH connection to the guest; absent for console sessions and console-only images. */
  readonly guest: GuestClient | undefined;
  release(): void;
}

export interface AcquireOptions {
  /** Called when the caller has to wait (a boot, a resume, or a VM still powering off). */
  onWaiting?: () => void;
  /** One line the user should see (e.g. a snapshot that could not be used). */
  onNotice?: (line: string) => void;
  /** Also connect to the guest's SSH daemon (default: when the image has one). */
  ssh?: boolean;
}

export interface ManagerEvents {
  /** A VM was created and is about to start: attach to its console now to see every byte. */
  'vm-created': [Vm, { resumedFrom?: Date; cloned?: boolean }];
  'vm-exit': [string, ExitInfo];
}

/**
 * Owns every VM's lifecycle: boots (or resumes) a VM on a user's first
 * session, shares it between that user's sessions, enforces --max-vms,
 * suspends it to disk once it has been idle for --idle-timeout, and expires
 * snapshots after --snapshot-retention.
 */
export class VmManager extends EventEmitter<ManagerEvents> {
  private readonly entries = new Map<string, Entry>();
  private closing = false;

  private readonly sweeper: NodeJS.Timeout;
  private readonly templates?: TemplateStore;

  constructor(private readonly opts: VmManagerOptions) {
    super();
    if (opts.templates && opts.image.ssh) {
      this.templates = new TemplateStore({ ...opts, bootTimeoutSec: opts.bootTimeoutSec });
      void this.templates.ensure();
    }
    this.sweepSnapshots();
    this.sweeper = setInterval(() => this.sweepSnapshots(), Math.min(3600, Math.max(1, opts.snapshotRetentionSec / 2)) * 1000);
    this.sweeper.unref();
  }

  /** VMs booting or running. */
  get runningCount(): number {
    return this.entries.size;
  }

  isRunning(name: string): boolean {
    return this.entries.get(name)?.vm?.state === 'running';
  }

  /**
   * Get `name`'s VM for a session, booting it if needed. With `ssh` (the
   * default when the image has an SSH daemon) the lease also carries the
   * gateway's connection to the guest; console sessions ask for none, so they
   * attach while the guest is still booting. `onWaiting` is called when the
   * caller has to wait (a boot, or a VM still powering off).
   */
  async acquire(name: string, options: AcquireOptions = {}): Promise<Lease> {
    assertVmName(name);
    const { onWaiting } = options;
    const wantSsh = (options.ssh ?? true) && this.opts.image.ssh;
    if (this.closing) throw new UserError('sshvisor is shutting down; try again shortly');
    let entry = this.entries.get(name);
    // A VM on its way down (idle stop) cannot take a new session: wait, then boot it afresh.
    while (entry?.vm?.state === 'stopping') {
      onWaiting?.();
      // It exits (power-off, suspend) or, if a suspend fails, goes back to running.
      await Promise.race([entry.vm.exited, once(entry.vm, 'state')]);
      entry = this.entries.get(name);
    }
    if (!entry) {
      if (this.entries.size >= this.opts.maxVms) throw new CapacityError(this.entries.size);
      entry = { name, sessions: 0 };
      this.entries.set(name, entry);
    }
    // Count the session before waiting, so the idle timer cannot fire under it.
    entry.sessions++;
    this.clearIdle(entry);
    const e = entry;
    try {
      if (!e.vm || e.vm.state !== 'running') {
        onWaiting?.();
        e.starting ??= this.startVm(e, options.onNotice).finally(() => (e.starting = undefined));
        await e.starting;
      }
      if (wantSsh && !e.guest) {
        onWaiting?.();
        e.connecting ??= this.connectToGuest(e).finally(() => (e.connecting = undefined));
        await e.connecting;
      }
    } catch (err) {
      this.releaseSession(e);
      throw err;
    }
    const { vm, guest } = e;
    if (!vm || (wantSsh && !guest)) {
      this.releaseSession(e);
      throw new UserError(`VM ${name} is not available`);
    }
    let released = false;
    return {
      name,
      vm,
      guest,
      release: () => {
        if (released) return;
        released = true;
        this.releaseSession(e);
      },
    };
  }

  /** The VM of `name` if it is running (for viewers that must not boot anything). */
  running(name: string): Vm | undefined {
    const vm = this.entries.get(name)?.vm;
    return vm?.state === 'running' ? vm : undefined;
  }

  /** Stop one VM now (graceful power-off, then kill). */
  async stop(name: string): Promise<ExitInfo | undefined> {
    const entry = this.entries.get(name);
    if (!entry?.vm) return undefined;
    return entry.vm.stop({ timeoutMs: 15_000 });
  }

  /** Suspend one VM to disk now. */
  async suspend(name: string): Promise<ExitInfo | undefined> {
    const entry = this.entries.get(name);
    return entry ? this.suspendEntry(entry) : undefined;
  }

  /** Suspend every VM (they resume on their owners' next logins); used at shutdown. */
  async shutdown(): Promise<void> {
    this.closing = true;
    clearInterval(this.sweeper);
    await Promise.all(
      [...this.entries.values()].map(async (e) => {
        this.clearIdle(e);
        await e.starting?.catch(() => undefined);
        await this.suspendEntry(e);
      }),
    );
  }

  /**
   * Snapshot a running VM to disk and end its process. The guest flushes its
   * page cache first, so even a snapshot that later cannot be used loses
   * nothing already written. If the snapshot fails, the VM is powered off
   * instead: its disk is then consistent.
   */
  private async suspendEntry(entry: Entry): Promise<ExitInfo | undefined> {
    const { opts } = this;
    const vm = entry.vm;
    if (!vm || vm.state !== 'running') return vm?.exited;
    if (entry.guest) await guestExec(entry.guest, 'sync', 15_000).catch(() => undefined);
    const dir = vm.spec.dir;
    const started = Date.now();
    try {
      const info = await vm.suspend(snapshotPaths(dir).state, {
        beforeQuit: () =>
          writeSnapshotMeta(dir, {
            takenAt: Date.now(),
            hypervisor: vm.hypervisorVersion ?? opts.driver.version,
            image: imageFingerprint(opts.image),
            memoryMiB: opts.memoryMiB,
            cpus: opts.cpus,
            ramInState: !!vm.spec.memoryPrivate,
          }),
      });
      opts.logger.info({ vm: entry.name, event: 'vm-suspend', ms: Date.now() - started }, 'VM suspended to disk');
      return info;
    } catch (err) {
      forgetSnapshot(dir);
      opts.logger.error({ vm: entry.name, event: 'vm-suspend-failed', err: errorMessage(err) }, 'suspend failed; powering the VM off');
      return vm.stop({ timeoutMs: 15_000 });
    }
  }

  /** Delete snapshots older than --snapshot-retention of VMs that are not running; their disks stay. */
  sweepSnapshots(now = Date.now()): void {
    const vmsDir = join(this.opts.dataDir, 'vms');
    if (!existsSync(vmsDir)) return;
    for (const name of readdirSync(vmsDir)) {
      if (!isValidVmName(name) || this.entries.has(name)) continue;
      const dir = join(vmsDir, name);
      const takenAt = snapshotTakenAt(dir);
      if (takenAt === undefined || now - takenAt <= this.opts.snapshotRetentionSec * 1000) continue;
      deleteSnapshot(dir);
      this.opts.logger.info({ vm: name, event: 'snapshot-expired', takenAt: new Date(takenAt).toISOString() }, 'snapshot expired; the next login boots from disk');
    }
  }

  /** Resume the VM from its snapshot if it has a usable one, else boot it from its disk. */
  private async startVm(entry: Entry, onNotice?: (line: string) => void): Promise<void> {
    const { opts } = this;
    const dir = ensurePrivateDir(join(opts.dataDir, 'vms', entry.name));
    const disk = join(dir, 'disk.img');
    try {
      // A new disk means a new guest host key: forget the old one.
      if (await ensureDisk(disk, opts.diskSizeMiB)) rmSync(join(dir, GUEST_HOST_KEY_FILE), { force: true });
    } catch (err) {
      this.entries.delete(entry.name);
      throw new UserError(`cannot create the disk of VM ${entry.name}: ${errorMessage(err)}`);
    }
    const snapshot = inspectSnapshot(dir, {
      hypervisor: opts.driver.version,
      image: imageFingerprint(opts.image),
      memoryMiB: opts.memoryMiB,
      cpus: opts.cpus,
    });
    let unusable = snapshot.kind === 'unusable' ? snapshot.reason : undefined;
    if (snapshot.kind === 'usable') {
      try {
        return await this.launch(entry, dir, disk, { kind: 'snapshot', stateFile: snapshot.stateFile, meta: snapshot.meta });
      } catch (err) {
        unusable = errorMessage(err);
      }
    }
    if (unusable) {
      const aside = moveSnapshotAside(dir);
      opts.logger.warn({ vm: entry.name, event: 'snapshot-unusable', reason: unusable, movedTo: aside }, 'snapshot unusable; booting from disk');
      onNotice?.(`the saved state of ${entry.name} could not be used (${unusable}); booting it from its disk instead`);
    } else {
      // No snapshot: whatever RAM file is left (a crash) means nothing.
      rmSync(snapshotPaths(dir).ram, { force: true });
    }
    const template = this.templates?.ready();
    if (template && statSync(disk).size === template.diskBytes) {
      try {
        return await this.launch(entry, dir, disk, { kind: 'template', template });
      } catch (err) {
        opts.logger.warn({ vm: entry.name, event: 'clone-failed', err: errorMessage(err) }, 'clone failed; booting instead');
      }
    }
    await this.launch(entry, dir, disk, { kind: 'boot' });
  }

  /** How a VM comes up: resumed from its own snapshot, cloned from the template, or booted. */
  private async launch(entry: Entry, dir: string, disk: string, from: Launch): Promise<void> {
    const { opts } = this;
    const base = {
      name: entry.name,
      dir,
      image: opts.image,
      memoryMiB: opts.memoryMiB,
      cpus: opts.cpus,
      accel: opts.accel,
      disk,
      network: { allowInternet: opts.allowInternet, exposeSsh: opts.image.ssh },
    };
    const ram = snapshotPaths(dir).ram;
    // A snapshot whose RAM is in its state is loaded into a fresh RAM file of the VM's own.
    if (from.kind === 'snapshot' && from.meta.ramInState) rmSync(ram, { force: true });
    const spec =
      from.kind === 'template' && this.templates
        ? this.templates.cloneSpec(from.template, base)
        : {
            ...base,
            kernelArgs: opts.image.ssh ? guestKernelArgs({ hostname: entry.name, authorizedKey: opts.gatewayKey.publicKey }) : [],
            memoryFile: ram,
            // A VM resumed from a clone's snapshot keeps no private mapping: its RAM is its own file from now on.
            restoreFrom: from.kind === 'snapshot' ? { stateFile: from.stateFile, ramInState: from.meta.ramInState } : undefined,
          };
    const vm = opts.driver.create(spec);
    entry.vm = vm;
    entry.startedAt = Date.now();
    entry.resumedFrom = from.kind === 'snapshot' ? from.meta.takenAt : undefined;
    const restoring = from.kind !== 'boot';
    let running = false;
    vm.once('exit', (info) => {
      // A restore that fails is retried as a cold boot under the same entry.
      if (restoring && !running) return;
      this.onExit(entry, vm, info);
    });
    this.emit('vm-created', vm, { resumedFrom: from.kind === 'snapshot' ? new Date(from.meta.takenAt) : undefined, cloned: from.kind === 'template' });
    const event = { snapshot: 'vm-resume', template: 'vm-clone', boot: 'vm-boot' }[from.kind];
    opts.logger.info({ vm: entry.name, event }, { snapshot: 'resuming VM from its snapshot', template: 'starting VM as a clone of the template', boot: 'booting VM' }[from.kind]);
    try {
      await vm.start();
    } catch (err) {
      if (restoring) entry.vm = undefined;
      throw new UserError(errorMessage(err));
    }
    running = true;
    if (from.kind === 'template' && this.templates) {
      vm.writeConsole(this.templates.identity({ hostname: entry.name, authorizedKey: opts.gatewayKey.publicKey }));
    }
    // From here the guest moves on: its old snapshot must never be restored over the newer disk.
    if (from.kind === 'snapshot') forgetSnapshot(dir);
    else opts.store.recordBoot(entry.name);
  }

  private async connectToGuest(entry: Entry): Promise<void> {
    const { opts } = this;
    const vm = entry.vm;
    const endpoint = vm?.sshEndpoint;
    if (!vm || !endpoint) throw new UserError(`VM ${entry.name} has no SSH endpoint`);
    const pinFile = join(vm.spec.dir, GUEST_HOST_KEY_FILE);
    try {
      const guest = await connectGuest({
        ...endpoint,
        privateKey: opts.gatewayKey.privateKey,
        deadline: (entry.startedAt ?? Date.now()) + opts.bootTimeoutSec * 1000,
        exited: vm.exited,
        pinnedHostKey: existsSync(pinFile) ? readFileSync(pinFile) : undefined,
        onFirstHostKey: (key) => writeFileSync(pinFile, key, { mode: 0o600 }),
      });
      guest.once('close', () => {
        if (entry.guest === guest) entry.guest = undefined;
      });
      entry.guest = guest;
      // A resumed guest's clock stopped while it was suspended.
      if (entry.resumedFrom !== undefined) {
        await guestExec(guest, `date -s @${Math.round(Date.now() / 1000)} > /dev/null`, 10_000).catch((err) =>
          opts.logger.warn({ vm: entry.name, err: errorMessage(err) }, 'could not set the clock of a resumed guest'),
        );
      }
    } catch (err) {
      opts.logger.error({ vm: entry.name, event: 'vm-boot-failed', err: errorMessage(err) }, 'VM did not come up');
      await vm.kill();
      throw new UserError(`VM ${entry.name} failed to boot: ${errorMessage(err)}`);
    }
    opts.logger.info({ vm: entry.name, event: 'vm-ready', ms: Date.now() - (entry.startedAt ?? Date.now()) }, 'VM ready');
  }

  private releaseSession(entry: Entry): void {
    entry.sessions = Math.max(0, entry.sessions - 1);
    if (entry.sessions > 0 || this.entries.get(entry.name) !== entry) return;
    if (!entry.vm) {
      // Never got as far as a VM (e.g. the disk could not be made).
      if (!entry.starting) this.entries.delete(entry.name);
      return;
    }
    this.clearIdle(entry);
    if (this.opts.idleTimeoutSec === 0 || entry.vm.state === 'stopping') return;
    const vm = entry.vm;
    entry.idleTimer = setTimeout(() => {
      if (entry.sessions > 0) return;
      this.opts.logger.info({ vm: entry.name, event: 'vm-idle', idleTimeoutSec: this.opts.idleTimeoutSec }, 'suspending idle VM');
      if (entry.vm === vm) void this.suspendEntry(entry);
    }, this.opts.idleTimeoutSec * 1000);
    entry.idleTimer.unref();
  }

  private clearIdle(entry: Entry): void {
    if (entry.idleTimer) clearTimeout(entry.idleTimer);
    entry.idleTimer = undefined;
  }

  private onExit(entry: Entry, vm: Vm, info: ExitInfo): void {
    this.clearIdle(entry);
    entry.guest?.end();
    entry.guest = undefined;
    if (this.entries.get(entry.name) === entry && entry.vm === vm) this.entries.delete(entry.name);
    this.opts.store.recordExit(entry.name, info.reason, info.detail);
    this.opts.logger.info({ vm: entry.name, event: 'vm-exit', reason: info.reason, detail: info.detail }, 'VM exited');
    this.emit('vm-exit', entry.name, info);
  }
}
