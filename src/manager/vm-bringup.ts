import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { isNoSpace } from '../util/atomic-write.js';
import { NoSpaceError, noSpaceError, preallocateRam, requireSpace } from './disk-space.js';
import { join } from 'node:path';
import { UserError, errorMessage } from '../util/errors.js';
import { GUEST_READY_MARKER, guestKernelArgs } from '../image/guest-contract.js';
import type { ExitInfo, Vm } from '../vm/driver.js';
import { isValidVmName } from '../vm/vm-name.js';
import type { GuestImage } from '../image/image.js';
import { effectiveDiskMiB, matchesDefaults } from './vm-shape.js';
import { prepareVmDisk } from './vm-disk.js';
import { AgentConnection } from '../guest/agent-connection.js';
import { TemplateStore } from './template.js';
import {
  deleteSnapshot,
  forgetSnapshot,
  imageFingerprint,
  inspectSnapshot,
  moveSnapshotAside,
  snapshotPaths,
  snapshotTakenAt,
  writeSnapshotMeta,
} from './snapshot-files.js';
import type { Entry, Launch, LaunchHow, VmManagerOptions } from './manager-types.js';

/** What a failed suspend does to the VM, and who hears why. */
export interface SuspendFailure {
  then: 'power-off' | 'keep-running';
  error?: (why: string) => void;
}

/** Room a suspend wants besides guest RAM: the device state is tens of kilobytes, snapshot.json less. */
const SNAPSHOT_SLACK = 4 * 1024 * 1024;
/** How long a login tries to reconnect to a guest that has been up for a while. */
const RECONNECT_MS = 30_000;

export interface BringupHooks {
  /** A VM object exists and is about to start (attach consoles now). */
  created(vm: Vm, how: { resumedFrom?: Date; cloned?: boolean }): void;
  exited(entry: Entry, vm: Vm, info: ExitInfo): void;
  /** The entry never got a VM (its disk could not be made). */
  forget(entry: Entry): void;
  /** The VM process runs (booted, cloned or resumed). */
  started(entry: Entry, how: LaunchHow): void;
  /** The guest is usable (resumed, or its init says ready), `ms` after its VM started; once per run. */
  ready(entry: Entry, how: LaunchHow, ms: number): void;
}

/**
 * How a VM comes up and goes down to disk: resume from its snapshot, clone
 * the template, or boot; connect to its agent; suspend it. The VM manager
 * decides when; this decides how.
 */
export class VmBringup {
  /** One template per image, made when the image's first VM starts (the default image's at once). */
  private readonly templates = new Map<string, TemplateStore>();

  constructor(
    private readonly opts: VmManagerOptions,
    private readonly hooks: BringupHooks,
  ) {
    try {
      void this.templateFor(opts.images.load(opts.images.defaultName))?.ensure();
    } catch {
      // No default image to template: every VM boots (serve checked the image at start).
    }
  }

  /** The template store of `image` (server-default shape), if templates are on and the image has an agent. */
  private templateFor(image: GuestImage): TemplateStore | undefined {
    const { opts } = this;
    if (!opts.templates || !image.agent) return undefined;
    const key = `${image.name}\0${imageFingerprint(image)}`;
    let t = this.templates.get(key);
    if (!t) {
      // The template's disk is the size a new VM of the image gets by default (never less than the image).
      t = new TemplateStore({ ...opts, image, diskSizeMiB: effectiveDiskMiB(image, opts.diskSizeMiB) });
      this.templates.set(key, t);
    }
    return t;
  }

  /** Resume the VM from its snapshot if it has a usable one, else boot it from its disk. */
  async start(entry: Entry, onNotice?: (line: string) => void): Promise<void> {
    const { opts } = this;
    const { image, shape } = entry;
    let dir: string;
    let disk: string;
    try {
      ({ dir, disk } = await prepareVmDisk(opts, entry));
    } catch (err) {
      this.hooks.forget(entry);
      throw err;
    }
    const snapshot = inspectSnapshot(dir, {
      hypervisor: opts.driver.version,
      image: imageFingerprint(image),
      memoryMiB: shape.memoryMiB,
      cpus: shape.cpus,
    });
    let unusable = snapshot.kind === 'unusable' ? snapshot.reason : undefined;
    if (snapshot.kind === 'usable') {
      try {
        return await this.launch(entry, dir, disk, { kind: 'snapshot', stateFile: snapshot.stateFile, meta: snapshot.meta });
      } catch (err) {
        // A full data dir is no fault of the snapshot: keep it for when there is room.
        if (err instanceof NoSpaceError) throw err;
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
    const templates = this.templateFor(image);
    const template = templates?.ready();
    // The first VM of an image boots, and has the image's template built meanwhile: the next ones are clones.
    if (templates && !template) void templates.ensure();
    if (templates && template && matchesDefaults(shape, opts, image) && (image.rootfs || statSync(disk).size === template.diskBytes)) {
      try {
        return await this.launch(entry, dir, disk, { kind: 'template', template, store: templates });
      } catch (err) {
        if (err instanceof NoSpaceError) throw err;
        opts.logger.warn({ vm: entry.name, event: 'clone-failed', err: errorMessage(err) }, 'clone failed; booting instead');
      }
    }
    await this.launch(entry, dir, disk, { kind: 'boot' });
  }

  /** How a VM comes up: resumed from its own snapshot, cloned from the template, or booted. */
  private async launch(entry: Entry, dir: string, disk: string, from: Launch): Promise<void> {
    const { opts } = this;
    const { image, shape } = entry;
    const base = {
      name: entry.name,
      dir,
      image,
      memoryMiB: shape.memoryMiB,
      cpus: shape.cpus,
      accel: opts.accel,
      disk,
      diskBacking: image.rootfs?.path,
      network: { allowInternet: opts.allowInternet },
      agent: image.agent,
    };
    const ram = snapshotPaths(dir).ram;
    // A snapshot whose RAM is in its state is loaded into a fresh RAM file of the VM's own.
    if (from.kind === 'snapshot' && from.meta.ramInState) rmSync(ram, { force: true });
    const spec =
      from.kind === 'template'
        ? from.store.cloneSpec(from.template, base)
        : {
            ...base,
            kernelArgs: image.agent ? guestKernelArgs({ hostname: entry.name }) : [],
            memoryFile: ram,
            // A VM resumed from a clone's snapshot keeps no private mapping: its RAM is its own file from now on.
            restoreFrom: from.kind === 'snapshot' ? { stateFile: from.stateFile, ramInState: from.meta.ramInState } : undefined,
          };
    // A shared RAM file gets all its blocks now: a page fault on a full disk would kill QEMU (disk-space.ts).
    if (spec.memoryFile && !spec.memoryPrivate) {
      await preallocateRam(spec.memoryFile, shape.memoryMiB * 1024 * 1024, `hold the ${shape.memoryMiB} MiB of memory of VM ${entry.name}`);
    }
    const vm = opts.driver.create(spec);
    entry.vm = vm;
    entry.startedAt = Date.now();
    entry.resumedFrom = from.kind === 'snapshot' ? from.meta.takenAt : undefined;
    // Only images sshvisor built promise the marker (guest-contract.ts); for others, just try to connect.
    entry.guestReady = from.kind !== 'snapshot' && image.manifest ? consoleShows(vm, GUEST_READY_MARKER) : Promise.resolve();
    const restoring = from.kind !== 'boot';
    let running = false;
    vm.once('exit', (info) => {
      // A restore that fails is retried as a cold boot under the same entry.
      if (restoring && !running) return;
      this.hooks.exited(entry, vm, info);
    });
    this.hooks.created(vm, { resumedFrom: from.kind === 'snapshot' ? new Date(from.meta.takenAt) : undefined, cloned: from.kind === 'template' });
    const event = { snapshot: 'vm-resume', template: 'vm-clone', boot: 'vm-boot' }[from.kind];
    opts.logger.info({ vm: entry.name, event }, { snapshot: 'resuming VM from its snapshot', template: 'starting VM as a clone of the template', boot: 'booting VM' }[from.kind]);
    try {
      await vm.start();
    } catch (err) {
      if (restoring) entry.vm = undefined;
      throw new UserError(errorMessage(err));
    }
    running = true;
    if (from.kind === 'template') {
      // The clone waits for its name before it mounts its disk: tell it now, whoever logs in (a console session does not connect).
      entry.identity = from.store.identity(entry.name);
      void this.connect(entry).catch(() => undefined);
    }
    // From here the guest moves on: its old snapshot must never be restored over the newer disk.
    if (from.kind === 'snapshot') forgetSnapshot(dir);
    else opts.store.recordBoot(entry.name);
    const how: LaunchHow = from.kind === 'snapshot' ? 'resume' : from.kind === 'template' ? 'clone' : 'boot';
    this.hooks.started(entry, how);
    // Usable: a resumed guest as soon as it runs (its daemons never stopped); a booted one when it says its SSH daemon is up.
    const startedAt = entry.startedAt;
    void entry.guestReady.then(() => {
      if (entry.vm === vm && vm.state === 'running') this.hooks.ready(entry, how, Date.now() - startedAt);
    });
  }

  /**
   * Connect to the guest's agent (docs/guest-protocol.md): tell a clone who it
   * is, wait until the guest is ready for sessions, and set a resumed guest's
   * clock. The agent's handshake hangs up sessions of an earlier connection
   * (a gateway restart, a suspend), as sshd hangs up a dropped connection's.
   * Throws a UserError, after killing the VM, when the guest never answers.
   */
  async connect(entry: Entry): Promise<void> {
    const { opts } = this;
    const vm = entry.vm;
    const socket = vm?.agentSocket;
    if (!vm || !socket) throw new UserError(`VM ${entry.name} has no guest agent`);
    if (entry.agent?.isOpen) return;
    entry.connecting ??= (async () => {
      // A VM taken over from an earlier server, or up for longer than the boot timeout, still gets a real try.
      const deadline = Math.max((entry.attachedAt ?? entry.startedAt ?? Date.now()) + opts.bootTimeoutSec * 1000, Date.now() + RECONNECT_MS);
      try {
        const agent = await AgentConnection.connect(socket, { deadline, abort: vm.exited, log: opts.logger.child({ vm: entry.name }) });
        void agent.closed.then((why) => {
          if (entry.agent !== agent) return;
          entry.agent = undefined;
          if (vm.state !== 'running') return;
          // A guest that breaks the protocol is not trusted to go on: it is ended (its disk stays).
          if (why.startsWith('protocol error')) {
            opts.logger.error({ vm: entry.name, event: 'vm-agent-violation', reason: why }, 'the guest agent broke the protocol; ending the VM');
            void vm.kill();
          } else {
            opts.logger.warn({ vm: entry.name, event: 'agent-lost', reason: why }, 'lost the connection to the guest agent');
          }
        });
        if (entry.identity) {
          await agent.identity(entry.identity, 15_000);
          entry.identity = undefined;
        }
        // An agent that breaks the protocol meanwhile (its connection ends) need not be waited for.
        await Promise.race([entry.guestReady, agent.closed, new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())).unref())]);
        // A resumed guest's clock stood still while it was suspended.
        if (entry.resumedFrom !== undefined) {
          await agent.setClock(Date.now(), 10_000).catch((err) => opts.logger.warn({ vm: entry.name, err: errorMessage(err) }, 'could not set the clock of a resumed guest'));
        }
        if (vm.state !== 'running' || entry.vm !== vm) {
          agent.close('the VM is gone');
          throw new Error('the VM exited while it was starting');
        }
        // A connection that already ended (a protocol error) is no way in: say why, rather than take the VM for ready.
        if (!agent.isOpen) throw new Error(`the guest agent connection ended: ${await agent.closed}`);
        entry.agent = agent;
      } catch (err) {
        opts.logger.error({ vm: entry.name, event: 'vm-boot-failed', err: errorMessage(err) }, 'VM did not come up');
        await vm.kill();
        throw new UserError(`VM ${entry.name} failed to boot: ${errorMessage(err)}`);
      }
      opts.logger.info({ vm: entry.name, event: 'vm-ready', ms: Date.now() - (entry.startedAt ?? Date.now()) }, 'VM ready');
    })().finally(() => (entry.connecting = undefined));
    return entry.connecting;
  }

  /**
   * Snapshot a running VM to disk and end its process. The guest flushes its
   * page cache first, so even a snapshot that later cannot be used loses
   * nothing already written. If the snapshot fails (no room in the data dir,
   * a QEMU error), `failure.then` decides: keep the VM running as it was (an
   * operator's or the idle suspend), or power it off so its disk is
   * consistent (shutdown, when the process is going away). Resolves with the
   * exit, or undefined when the VM is still running.
   */
  async suspend(entry: Entry, failure: SuspendFailure = { then: 'power-off' }): Promise<ExitInfo | undefined> {
    const vm = entry.vm;
    if (!vm || vm.state !== 'running') return vm?.exited;
    if (entry.suspending) return vm.exited;
    const done = this.snapshotAndQuit(entry, vm, failure);
    entry.suspending = done;
    try {
      return await done;
    } finally {
      if (entry.suspending === done) entry.suspending = undefined;
    }
  }

  private async snapshotAndQuit(entry: Entry, vm: Vm, failure: SuspendFailure): Promise<ExitInfo | undefined> {
    const { opts } = this;
    // Everything written so far reaches the disk, whatever becomes of the snapshot.
    if (entry.agent) await entry.agent.sync(15_000).catch(() => undefined);
    const dir = vm.spec.dir;
    const started = Date.now();
    try {
      // The device state is small, unless guest RAM has to go in it (a clone): check for room before stopping the guest.
      requireSpace(dir, (vm.spec.memoryPrivate ? vm.spec.memoryMiB : 0) * 1024 * 1024 + SNAPSHOT_SLACK, `suspend VM ${entry.name}`);
      const info = await vm.suspend(snapshotPaths(dir).state, {
        beforeQuit: () =>
          writeSnapshotMeta(dir, {
            takenAt: Date.now(),
            hypervisor: vm.hypervisorVersion ?? opts.driver.version,
            image: imageFingerprint(entry.image),
            memoryMiB: vm.spec.memoryMiB,
            cpus: vm.spec.cpus,
            ramInState: !!vm.spec.memoryPrivate,
          }),
      });
      opts.logger.info({ vm: entry.name, event: 'vm-suspend', ms: Date.now() - started }, 'VM suspended to disk');
      return info;
    } catch (err) {
      forgetSnapshot(dir);
      const why = err instanceof NoSpaceError || !isNoSpace(err) ? errorMessage(err) : noSpaceError(`suspend VM ${entry.name}`, dir).message;
      // The driver left the VM running: keep it so (a full disk must not cost the guest its RAM), unless the server is going away.
      if (failure.then === 'keep-running' && vm.state === 'running') {
        opts.logger.error({ vm: entry.name, event: 'vm-suspend-failed', err: why }, 'suspend failed; the VM keeps running');
        failure.error?.(why);
        return undefined;
      }
      opts.logger.error({ vm: entry.name, event: 'vm-suspend-failed', err: why }, 'suspend failed; powering the VM off');
      failure.error?.(why);
      return vm.stop({ timeoutMs: 15_000 });
    }
  }

  /** Delete snapshots older than --snapshot-retention of VMs that are not running; their disks stay. */
  sweepSnapshots(isActive: (name: string) => boolean, now = Date.now()): void {
    const vmsDir = join(this.opts.dataDir, 'vms');
    if (!existsSync(vmsDir)) return;
    for (const name of readdirSync(vmsDir)) {
      if (!isValidVmName(name) || isActive(name)) continue;
      const dir = join(vmsDir, name);
      const takenAt = snapshotTakenAt(dir);
      if (takenAt === undefined || now - takenAt <= this.opts.snapshotRetentionSec * 1000) continue;
      deleteSnapshot(dir);
      this.opts.logger.info({ vm: name, event: 'snapshot-expired', takenAt: new Date(takenAt).toISOString() }, 'snapshot expired; the next login boots from disk');
    }
  }
}

/** Resolves once `text` has appeared on the VM's console (or the VM is gone: the caller finds out on connect). */
function consoleShows(vm: Vm, text: string): Promise<void> {
  return new Promise((resolve) => {
    let tail = '';
    const onConsole = (b: Buffer): void => {
      tail = (tail + b.toString('latin1')).slice(-(text.length + 4096));
      if (!tail.includes(text)) return;
      vm.off('console', onConsole);
      resolve();
    };
    vm.on('console', onConsole);
    void vm.exited.then(() => {
      vm.off('console', onConsole);
      resolve();
    });
  });
}
