import { EventEmitter, once } from 'node:events';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import type { ExitInfo, Vm } from '../vm/driver.js';
import { assertVmName } from '../vm/vm-name.js';
import { CapacityError } from './capacity-error.js';
import type { AcquireOptions, Lease, ManagerEvents, StopResult, SuspendResult, VmRuntime } from './manager-api.js';
import type { Entry, VmManagerOptions } from './manager-types.js';
import { VmBringup } from './vm-bringup.js';
import { deleteSnapshot, snapshotTakenAt } from './snapshot-files.js';
import { endTemplateBuilds, lastHeartbeat, reattachAll, startHeartbeat, type ReattachOutcome } from './reattach.js';
import { HealthMonitor } from './health-monitor.js';
import { RestartPolicy, type RestartInfo } from './restart-policy.js';
import { bestEffortRecords } from './disk-space.js';
import { resolveShape, type ResolvedShape, type ShapeRequest } from './vm-shape.js';
import type { VmShape } from '../store/store.js';
import { freeBytes } from '../util/atomic-write.js';

/** Free space in the data dir at which a guest paused on a full disk is continued. */
const ROOM_AGAIN_BYTES = 64 * 1024 * 1024;

export type { LaunchHow, VmManagerOptions } from './manager-types.js';

export type { AcquireOptions, Lease, ManagerEvents, StopResult, SuspendResult, VmRuntime } from './manager-api.js';

/**
 * Owns every VM's lifecycle: boots (or resumes) a VM on a user's first
 * session, shares it between that user's sessions, enforces --max-vms,
 * suspends it to disk once it has been idle for --idle-timeout, and expires
 * snapshots after --snapshot-retention.
 */
export class VmManager extends EventEmitter<ManagerEvents> {
  private readonly entries = new Map<string, Entry>();
  /** Names being removed (`rm`): no session may bring them back meanwhile. */
  private readonly removing = new Set<string>();
  private closing = false;
  private stopHeartbeat?: () => void;

  private readonly sweeper: NodeJS.Timeout;
  private readonly bringup: VmBringup;
  private readonly health: HealthMonitor;
  private readonly restarts: RestartPolicy;

  private readonly opts: VmManagerOptions;

  constructor(options: VmManagerOptions) {
    super();
    const opts = (this.opts = { ...options, store: bestEffortRecords(options.store, options.logger) });
    // Before the template build below can start over in the same directory.
    endTemplateBuilds(opts.dataDir, opts.logger);
    this.bringup = new VmBringup(opts, {
      created: (vm, how) => this.emit('vm-created', vm, how),
      exited: (entry, vm, info) => this.onExit(entry, vm, info),
      forget: (entry) => this.entries.delete(entry.name),
      started: (entry, how) => this.emit('vm-started', entry.name, how),
      ready: (entry, how, ms) => this.emit('vm-ready', entry.name, how, ms),
    });
    const sweep = (): void => this.bringup.sweepSnapshots((name) => this.entries.has(name));
    sweep();
    this.sweeper = setInterval(sweep, Math.min(3600, Math.max(1, opts.snapshotRetentionSec / 2)) * 1000);
    this.sweeper.unref();
    const note = (name: string, text: string): void => void this.emit('vm-note', name, text);
    this.health = new HealthMonitor({
      hungTimeoutSec: opts.hungTimeoutSec ?? 0,
      logger: opts.logger,
      vms: () => this.entries.values(),
      onChange: (name, hung) => note(name, hung ? `VM not answering: ${hung.reason}` : 'VM answers again'),
      roomAgain: () => (freeBytes(opts.dataDir) ?? 0) >= ROOM_AGAIN_BYTES,
    });
    this.restarts = new RestartPolicy({
      ...(opts.restart ?? { policy: 'never', maxRestarts: 5, windowSec: 600 }),
      logger: opts.logger,
      restart: async (name) => void (await this.resume(name)),
      note,
    });
  }

  /** `name`'s restart history under --restart, if it has one (see restart-policy.ts). */
  restartInfo(name: string): RestartInfo | undefined {
    return this.restarts.info(name);
  }

  /**
   * Get `name`'s VM for a session, booting it if needed. With `guest` (the
   * default when the image has an agent) the lease also carries the
   * gateway's connection to the guest's agent; console sessions ask for none, so they
   * attach while the guest is still booting. `onWaiting` is called when the
   * caller has to wait (a boot, or a VM still powering off).
   */
  async acquire(name: string, options: AcquireOptions = {}): Promise<Lease> {
    assertVmName(name);
    const { onWaiting } = options;
    if (this.closing) throw new UserError('sshvisor is shutting down; try again shortly');
    if (this.removing.has(name)) throw new UserError(`VM ${name} is being removed`);
    let entry = this.entries.get(name);
    // A VM on its way down (idle suspend) cannot take a new session: wait, then resume it.
    while (entry?.vm && (entry.vm.state === 'stopping' || entry.suspending)) {
      onWaiting?.();
      // It exits (power-off, suspend) or, if a suspend fails, goes back to running.
      await Promise.race([entry.vm.exited, once(entry.vm, 'state'), entry.suspending]);
      entry = this.entries.get(name);
    }
    if (!entry) {
      // Before the capacity check: a name that cannot be made (no such image, too big) is told so, not "full".
      const { image, shape } = this.shapeOf(name, options.create);
      if (this.entries.size >= this.opts.maxVms) throw new CapacityError(this.entries.size);
      entry = { name, sessions: 0, image, shape };
      this.entries.set(name, entry);
    }
    const wantAgent = (options.guest ?? true) && entry.image.agent;
    // Count the session before waiting, so the idle timer cannot fire under it.
    entry.sessions++;
    this.clearIdle(entry);
    const e = entry;
    try {
      if (!e.vm || e.vm.state !== 'running') {
        onWaiting?.();
        e.starting ??= this.bringup
          .start(e, options.onNotice)
          .then(() => {
            if (e.resumedFrom !== undefined) this.opts.store.recordResume(name);
          })
          .finally(() => (e.starting = undefined));
        await e.starting;
      }
      if (wantAgent && !e.agent?.isOpen) {
        onWaiting?.();
        await this.bringup.connect(e);
      }
    } catch (err) {
      this.releaseSession(e);
      throw err;
    }
    const { vm, agent } = e;
    if (!vm || (wantAgent && !agent?.isOpen)) {
      this.releaseSession(e);
      throw new UserError(`VM ${name} is not available`);
    }
    let released = false;
    return {
      name,
      vm,
      agent: wantAgent ? agent : undefined,
      image: e.image,
      shape: e.shape,
      release: () => {
        if (released) return;
        released = true;
        this.releaseSession(e);
      },
    };
  }

  /**
   * Create `name` with its own image and shape, without starting it (its
   * first session or resume() boots it): what `sshvisor create`, the admin
   * SSH command and the HTTP API do. Throws a UserError when the name
   * exists, the image does not, or a value is above the server's maximums.
   */
  create(name: string, request: ShapeRequest): VmShape {
    assertVmName(name);
    if (this.removing.has(name)) throw new UserError(`VM ${name} is being removed`);
    const resolved = this.shapeOf(name, request);
    if (!resolved.isNew || this.entries.has(name)) throw new UserError(`VM ${name} already exists (image ${resolved.shape.image})`);
    if (!this.opts.store.createVm(name, resolved.shape)) throw new UserError(`VM ${name} already exists`);
    this.opts.logger.info({ vm: name, event: 'vm-create', ...resolved.shape }, 'VM created');
    return resolved.shape;
  }

  /** `name`'s image and shape: as recorded, or what a new VM would get with `request` (vm-shape.ts). */
  shapeOf(name: string, request?: ShapeRequest): ResolvedShape {
    return resolveShape(name, { dataDir: this.opts.dataDir, images: this.opts.images, limits: this.opts, record: this.opts.store.getVm(name) }, request);
  }

  /** Names of the VMs the manager has in hand (booting, running, or on their way down). */
  names(): string[] {
    return [...this.entries.keys()];
  }

  /** `name`'s VM as the manager has it, or undefined when it is not running (stopped, suspended, unknown). */
  inspect(name: string): VmRuntime | undefined {
    const e = this.entries.get(name);
    if (!e) return undefined;
    return {
      state: e.vm?.state ?? 'created',
      pid: e.vm?.pid,
      startedAt: e.startedAt,
      resumedFrom: e.resumedFrom,
      sessions: e.sessions,
      hung: this.health.hung(name),
    };
  }

  /**
   * Power `name` off (its sessions end). A suspended VM has its saved state
   * deleted instead, so it is stopped too: its next start boots from its disk.
   */
  async stop(name: string): Promise<StopResult> {
    assertVmName(name);
    this.restarts.cancel(name, { forget: true });
    const e = this.entries.get(name);
    if (!e) {
      const dir = this.vmDir(name);
      if (snapshotTakenAt(dir) === undefined) return { kind: 'not-running' };
      deleteSnapshot(dir);
      this.opts.logger.info({ vm: name, event: 'snapshot-discarded' }, 'saved state discarded on request');
      return { kind: 'discarded' };
    }
    this.clearIdle(e);
    await e.starting?.catch(() => undefined);
    const vm = e.vm;
    if (!vm) return { kind: 'not-running' };
    this.opts.logger.info({ vm: name, event: 'vm-stop-request' }, 'stopping VM on request');
    // A VM already on its way down (a suspend) is left to finish; asking it to power off now would spoil the snapshot.
    const exit = vm.state === 'stopping' || vm.state === 'exited' ? await vm.exited : await vm.stop({ timeoutMs: 15_000 });
    return { kind: 'stopped', exit };
  }

  /** Suspend `name` to disk now, sessions or not (they end); its next session or resume() continues it. */
  async suspend(name: string): Promise<SuspendResult> {
    assertVmName(name);
    const e = this.entries.get(name);
    if (!e) return { kind: 'not-running' };
    this.clearIdle(e);
    await e.starting?.catch(() => undefined);
    // The guest's page cache is flushed by its agent before the snapshot: let a connection in progress finish.
    await e.connecting?.catch(() => undefined);
    const vm = e.vm;
    if (!vm || vm.state === 'exited') return { kind: 'not-running' };
    this.opts.logger.info({ vm: name, event: 'vm-suspend-request' }, 'suspending VM on request');
    let error: string | undefined;
    const exit = vm.state === 'running' ? await this.bringup.suspend(e, { then: 'keep-running', error: (why) => (error = why) }) : await vm.exited;
    return exit?.reason === 'suspended' ? { kind: 'suspended' } : { kind: 'failed', exit, error };
  }

  /**
   * Bring `name` up without a session (resume its snapshot, or boot it), as a
   * login would; then the idle rules apply as if a session had just ended.
   * Resolves with what it found: 'running' if it already was.
   */
  async resume(name: string, options: Pick<AcquireOptions, 'onNotice'> = {}): Promise<'running' | 'started'> {
    assertVmName(name);
    const already = this.entries.get(name)?.vm?.state === 'running';
    const lease = await this.acquire(name, options);
    lease.release();
    return already ? 'running' : 'started';
  }

  /**
   * Delete `name`: kill its VM if it runs, run `cleanup` (forget the name
   * elsewhere: console, store), then delete DATA_DIR/vms/NAME. No session can
   * start the name while this runs.
   */
  async remove(name: string, cleanup: () => Promise<void> | void): Promise<{ wasRunning: boolean }> {
    assertVmName(name);
    if (this.removing.has(name)) throw new UserError(`VM ${name} is already being removed`);
    this.removing.add(name);
    this.restarts.cancel(name, { forget: true });
    try {
      const e = this.entries.get(name);
      let wasRunning = false;
      if (e) {
        this.clearIdle(e);
        await e.starting?.catch(() => undefined);
        if (e.vm && e.vm.state !== 'exited') {
          wasRunning = true;
          await e.vm.kill();
        }
        if (this.entries.get(name) === e) this.entries.delete(name);
      }
      await cleanup();
      const dir = this.vmDir(name);
      if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
      this.opts.logger.info({ vm: name, event: 'vm-removed', wasRunning }, 'VM removed');
      return { wasRunning };
    } finally {
      this.removing.delete(name);
    }
  }

  /**
   * Take over the VMs an earlier server left running (it crashed or was
   * killed without suspending them): call once, before serving. From then on
   * this server's heartbeat file tells a later one when it was last alive.
   */
  async reattach(): Promise<ReattachOutcome[]> {
    const lostSince = lastHeartbeat(this.opts.dataDir);
    this.stopHeartbeat = startHeartbeat(this.opts.dataDir);
    return reattachAll(this.opts, {
      register: (e) => this.entries.set(e.name, e),
      exited: (e, vm, info) => this.onExit(e, vm, info),
      created: (vm, since) => this.emit('vm-created', vm, { reattached: { lostSince: since } }),
      gone: (name, detail) => {
        this.emit('vm-gone', name, detail);
        // A crash while no server watched is a crash: --restart on-failure brings it back.
        this.restarts.exited(name, { reason: 'crashed', detail, code: null, signal: null, at: new Date() });
      },
      adopted: (e) => {
        // As if its last session had just ended: the idle timer starts fresh.
        e.sessions = 1;
        this.releaseSession(e);
        if (e.image.agent) void this.bringup.connect(e).catch(() => undefined);
      },
    }, lostSince);
  }

  private vmDir(name: string): string {
    return join(this.opts.dataDir, 'vms', name);
  }

  /** Suspend every VM (they resume on their owners' next logins); used at shutdown. */
  async shutdown(): Promise<void> {
    this.closing = true;
    clearInterval(this.sweeper);
    this.stopHeartbeat?.();
    this.health.close();
    this.restarts.close();
    await Promise.all(
      [...this.entries.values()].map(async (e) => {
        this.clearIdle(e);
        await e.starting?.catch(() => undefined);
        await this.bringup.suspend(e);
      }),
    );
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
      if (entry.vm === vm) void this.bringup.suspend(entry, { then: 'keep-running' });
    }, this.opts.idleTimeoutSec * 1000);
    entry.idleTimer.unref();
  }

  private clearIdle(entry: Entry): void {
    if (entry.idleTimer) clearTimeout(entry.idleTimer);
    entry.idleTimer = undefined;
  }

  private onExit(entry: Entry, vm: Vm, info: ExitInfo): void {
    this.clearIdle(entry);
    entry.agent?.close('the VM exited');
    entry.agent = undefined;
    if (this.entries.get(entry.name) === entry && entry.vm === vm) this.entries.delete(entry.name);
    this.opts.store.recordExit(entry.name, info.reason, info.detail);
    this.opts.logger.info({ vm: entry.name, event: 'vm-exit', reason: info.reason, detail: info.detail }, 'VM exited');
    this.emit('vm-exit', entry.name, info);
    if (!this.closing) this.restarts.exited(entry.name, info);
  }
}
