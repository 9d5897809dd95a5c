/**
 * Taking over the VMs an earlier `sshvisor serve` left running when it ended
 * without suspending them (a crash, kill -9): QEMU runs in a session of its
 * own (QemuDriver survivesGateway), so a guest and its processes outlive the
 * gateway; the next gateway finds each one (pid file, QMP socket), captures
 * its console again and registers it as running. What the gateway missed in
 * between is marked in the console log.
 */
import { existsSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errorMessage } from '../util/errors.js';
import { processesUsing } from '../util/processes.js';
import type { ExitInfo, Vm } from '../vm/driver.js';
import { isValidVmName } from '../vm/vm-name.js';
import { isoSeconds } from '../console/marker.js';
import { resolveShape } from './vm-shape.js';
import type { Entry, VmManagerOptions } from './manager-types.js';
import { forgetSnapshot, snapshotPaths, snapshotTakenAt } from './snapshot-files.js';

/** Touched every few seconds while a gateway runs: the next one knows when this one was last alive. */
export const HEARTBEAT_FILE = 'gateway.heartbeat';
const HEARTBEAT_MS = 5_000;

export interface ReattachHooks {
  /** The entry is the name's running VM from now on; its exit goes through `exited`. */
  register(entry: Entry): void;
  exited(entry: Entry, vm: Vm, info: ExitInfo): void;
  /** Attach the console now: `lostSince` is when the earlier gateway last captured anything. */
  created(vm: Vm, lostSince: Date | undefined): void;
  /** Taken over and running: start the idle timer, connect to the guest. */
  adopted(entry: Entry): void;
  /** The VM was running per the store or its files, but its QEMU is gone. */
  gone(name: string, detail: string): void;
}

export type ReattachOutcome =
  | { name: string; kind: 'adopted'; pid: number | undefined }
  /** The store or the VM's files said it was running, but its QEMU was gone. */
  | { name: string; kind: 'gone'; detail: string }
  /** Only files left by a QEMU that ended after a complete suspend: removed, nothing to report. */
  | { name: string; kind: 'stale' }
  /** Found, but could not (or must not) be continued; it was ended. */
  | { name: string; kind: 'ended'; detail: string };

export const GONE_DETAIL = 'its QEMU ended while no sshvisor server was running (found gone at restart)';

/** The marker line put in the console stream of a VM taken over. */
export function gapMarker(lostSince: Date | undefined, now: Date = new Date()): string {
  const from = lostSince ? `between ${isoSeconds(lostSince)} and ${isoSeconds(now)}` : `before ${isoSeconds(now)}`;
  return `gateway restarted: console output ${from} was not captured`;
}

/** When the gateway that ran before this one was last known alive, from its heartbeat file. */
export function lastHeartbeat(dataDir: string): Date | undefined {
  return mtimeOf(join(dataDir, HEARTBEAT_FILE));
}

/** Keep DATA_DIR/gateway.heartbeat fresh; returns the function that stops it. */
export function startHeartbeat(dataDir: string): () => void {
  const path = join(dataDir, HEARTBEAT_FILE);
  const beat = (): void => {
    try {
      const now = new Date();
      if (existsSync(path)) utimesSync(path, now, now);
      else writeFileSync(path, '', { mode: 0o600 });
    } catch {
      // Only makes a later gap marker less precise.
    }
  };
  beat();
  const timer = setInterval(beat, HEARTBEAT_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Take over every VM an earlier gateway left running under DATA_DIR: first
 * the names whose directory has a QEMU pid file or runtime record, then the
 * ones the store last saw boot and never saw end. Call before serving.
 */
export async function reattachAll(opts: VmManagerOptions, hooks: ReattachHooks, lostSince?: Date): Promise<ReattachOutcome[]> {
  const vmsDir = join(opts.dataDir, 'vms');
  const names = new Set<string>();
  if (existsSync(vmsDir)) {
    for (const n of readdirSync(vmsDir)) if (isValidVmName(n) && hasRuntimeFiles(join(vmsDir, n))) names.add(n);
  }
  const running = new Set<string>();
  for (const r of opts.store.listVms()) {
    if (Math.max(r.lastBootAt ?? 0, r.lastResumeAt ?? 0) > (r.lastExitAt ?? 0)) running.add(r.name);
  }
  const out: ReattachOutcome[] = [];
  // One at a time: each is a few QMP round trips, and the logs read in order.
  for (const name of [...new Set([...names, ...running])].sort()) out.push(await reattachOne(opts, hooks, name, running.has(name), lostSince));
  return out;
}

async function reattachOne(opts: VmManagerOptions, hooks: ReattachHooks, name: string, storeSaysRunning: boolean, lostSince?: Date): Promise<ReattachOutcome> {
  const { logger } = opts;
  const dir = join(opts.dataDir, 'vms', name);
  const vm = await opts.driver.attach(dir).catch(() => undefined);
  // A QEMU that quit after a complete suspend, just before the gateway could tidy up, is no crash.
  if (!vm && !storeSaysRunning && snapshotTakenAt(dir) !== undefined) return { name, kind: 'stale' };
  if (!vm) {
    opts.store.recordExit(name, 'crashed', GONE_DETAIL);
    logger.warn({ vm: name, event: 'vm-gone', detail: GONE_DETAIL }, 'VM found gone at restart; its next login resumes or boots it');
    hooks.gone(name, GONE_DETAIL);
    return { name, kind: 'gone', detail: GONE_DETAIL };
  }
  let shaped: Pick<Entry, 'image' | 'shape'>;
  try {
    shaped = resolveShape(name, { dataDir: opts.dataDir, images: opts.images, limits: opts, record: opts.store.getVm(name) });
  } catch (err) {
    // Its image is gone from the catalogue (image rm refuses that; a hand-deleted directory): it runs on, as the image it booted.
    shaped = { image: vm.spec.image, shape: { image: vm.spec.image.name, memoryMiB: vm.spec.memoryMiB, cpus: vm.spec.cpus, diskMiB: opts.diskSizeMiB } };
    logger.warn({ vm: name, err: errorMessage(err) }, 'the image of a VM left running is not in the catalogue');
  }
  const entry: Entry = { name, vm, sessions: 0, guestReady: Promise.resolve(), attachedAt: Date.now(), ...shaped };
  hooks.register(entry);
  vm.once('exit', (info) => hooks.exited(entry, vm, info));
  // The console since the earlier gateway's last capture (or its heartbeat) was dropped by QEMU.
  const logged = mtimeOf(join(dir, 'console.log'));
  const since = logged && lostSince ? (logged > lostSince ? logged : lostSince) : (logged ?? lostSince);
  hooks.created(vm, since);
  try {
    await vm.start();
    if (vm.state === 'paused') {
      // A suspend was cut short. Once its snapshot is complete, that snapshot is the guest; else the guest carries on.
      if (snapshotTakenAt(dir) !== undefined) throw new Error('its suspend had already saved the snapshot; the next login resumes from it');
      rmSync(`${snapshotPaths(dir).state}.partial`, { force: true });
      await vm.resume();
    } else {
      // Resumed, but the gateway died before it dropped the snapshot: the guest has moved on from it.
      forgetSnapshot(dir);
    }
  } catch (err) {
    const detail = errorMessage(err);
    if (vm.state !== 'exited') await vm.kill();
    logger.warn({ vm: name, event: 'vm-reattach-failed', detail }, 'a VM left running could not be taken over; it was ended');
    return { name, kind: 'ended', detail };
  }
  entry.startedAt = (await vm.status()).startedAt?.getTime();
  logger.info({ vm: name, event: 'vm-reattached', pid: vm.pid, lostSince: since?.toISOString() }, 'took over a VM left running by an earlier server');
  hooks.adopted(entry);
  return { name, kind: 'adopted', pid: vm.pid };
}

/**
 * A template build the earlier gateway left running is of no use (the build
 * starts over, deleting its directory and with it the pid file): end its
 * QEMU now, synchronously, before a new build can start.
 */
export function endTemplateBuilds(dataDir: string, logger: VmManagerOptions['logger']): void {
  const dir = join(dataDir, 'templates');
  if (!existsSync(dir)) return;
  for (const pid of processesUsing(dir, { program: 'qemu', flag: '-pidfile' })) {
    try {
      process.kill(pid, 'SIGKILL');
      logger.info({ event: 'template-build-ended', pid }, 'ended a template build left running by an earlier server');
    } catch {
      // gone meanwhile
    }
  }
}

function hasRuntimeFiles(dir: string): boolean {
  return ['qemu.pid', 'qemu.json', 'qmp.sock'].some((f) => existsSync(join(dir, f)));
}

function mtimeOf(path: string): Date | undefined {
  try {
    return statSync(path).mtime;
  } catch {
    return undefined;
  }
}
