/**
 * One VM name's console: its history (a ring in memory, a log on disk), the
 * Vm currently feeding it, and its viewers.
 *
 * A channel belongs to the name, not to a Vm: when the name boots again the
 * new Vm is attached to the same channel and the history simply continues,
 * with sshvisor's own marker lines ("VM started", "VM exited: ...") between
 * boots. Every byte, guest or marker, goes to the ring, the log and the
 * viewers in one order, so all of them see the same stream.
 */
import { EventEmitter } from 'node:events';
import type { ExitInfo } from '../vm/driver.js';
import { ConsoleLog, readLogHistory, type ConsoleLogOptions } from './console-log.js';
import { LineTracker, formatMarker } from './marker.js';
import { RingBuffer } from './ring-buffer.js';
import { Viewer, type ViewerHost, type ViewerOptions } from './viewer.js';

export const DEFAULT_RING_BYTES = 1024 * 1024;

/** The part of a Vm (src/vm/driver.ts) the hub uses; a Vm is one. */
export interface ConsoleVm {
  on(event: 'console', listener: (data: Buffer) => void): unknown;
  on(event: 'exit', listener: (info: ExitInfo) => void): unknown;
  off(event: 'console', listener: (data: Buffer) => void): unknown;
  off(event: 'exit', listener: (info: ExitInfo) => void): unknown;
  writeConsole(data: Buffer | string): void;
}

export type LogSettings = Omit<ConsoleLogOptions, 'dir' | 'onError'>;

export interface ConsoleChannelOptions {
  name: string;
  /** The VM's directory (DATA_DIR/vms/NAME) for console.log; without one nothing goes to disk. */
  dir?: string;
  /** Ring size in bytes (default 1 MiB). */
  capacity?: number;
  log?: LogSettings;
  /** Fill the ring from console.log at creation, so history survives a gateway restart (default: when dir is set). */
  seedFromDisk?: boolean;
  now?: () => Date;
  /** Disk trouble, reported once per outage; the console itself carries on. */
  onError?: (err: unknown) => void;
}

export interface ChannelEvents {
  attach: [ConsoleVm];
  exit: [ExitInfo];
}

export class ConsoleChannel extends EventEmitter<ChannelEvents> implements ViewerHost {
  readonly name: string;
  readonly ring: RingBuffer;
  readonly log: ConsoleLog | undefined;
  private readonly now: () => Date;
  private readonly lines: LineTracker;
  private readonly viewers = new Set<Viewer>();
  private current: { vm: ConsoleVm; detach: () => void } | undefined;
  private captured = 0;
  private viewersEver = 0;
  private disconnected = 0;
  private skippedByGone = 0;
  private closed = false;

  constructor(opts: ConsoleChannelOptions) {
    super();
    this.name = opts.name;
    this.now = opts.now ?? (() => new Date());
    this.ring = new RingBuffer(opts.capacity ?? DEFAULT_RING_BYTES);
    if (opts.dir !== undefined && (opts.seedFromDisk ?? true)) {
      this.ring.write(readLogHistory(opts.dir, this.ring.capacity));
    }
    this.lines = new LineTracker(this.ring.lastByte);
    this.log = opts.dir === undefined ? undefined : new ConsoleLog({ ...opts.log, dir: opts.dir, onError: opts.onError });
  }

  /** The Vm whose console this channel is capturing now, if any. */
  get vm(): ConsoleVm | undefined {
    return this.current?.vm;
  }

  /** Guest bytes captured by this channel (markers not counted). */
  get bytesCaptured(): number {
    return this.captured;
  }

  get viewerCount(): number {
    return this.viewers.size;
  }

  /** Viewers ever added. */
  get viewersTotal(): number {
    return this.viewersEver;
  }

  /** Viewers the channel ended (overflow with 'disconnect', a failing sink). */
  get viewersDisconnected(): number {
    return this.disconnected;
  }

  /** Bytes skipped by slow viewers, current and gone. */
  get bytesSkipped(): number {
    let n = this.skippedByGone;
    for (const v of this.viewers) n += v.bytesSkipped;
    return n;
  }

  /** Bytes that did not make it to console.log. */
  get bytesNotLogged(): number {
    return this.log?.bytesDropped ?? 0;
  }

  /**
   * Capture `vm`'s console from now on (attach before vm.start() to get the
   * first byte). Replaces any previous Vm, whose later events are ignored.
   */
  attach(vm: ConsoleVm, startMarker = 'VM started'): void {
    if (this.closed || this.current?.vm === vm) return;
    this.detach();
    const onConsole = (data: Buffer): void => {
      this.captured += data.length;
      this.append(data);
    };
    const onExit = (info: ExitInfo): void => {
      if (this.current?.vm !== vm) return;
      this.detach();
      this.mark(`VM exited: ${info.detail}`, info.at);
      this.emit('exit', info);
    };
    vm.on('console', onConsole);
    vm.on('exit', onExit);
    this.current = {
      vm,
      detach: () => {
        vm.off('console', onConsole);
        vm.off('exit', onExit);
      },
    };
    this.mark(startMarker);
    this.emit('attach', vm);
  }

  /** Stop capturing the current Vm (without a marker). */
  detach(): void {
    const cur = this.current;
    this.current = undefined;
    cur?.detach();
  }

  /** Add a "[sshvisor TIME] text" line to the stream, on a line of its own. */
  mark(text: string, at: Date = this.now()): void {
    if (this.closed) return;
    this.append(Buffer.from(this.lines.lead() + formatMarker(text, at)));
  }

  /** Start a viewer: replay (if asked), then live bytes until it or the channel closes. */
  addViewer(opts: ViewerOptions): Viewer {
    const viewer = new Viewer(this, opts);
    if (this.closed) {
      viewer.hostClosed('console closed');
      return viewer;
    }
    this.viewers.add(viewer);
    this.viewersEver++;
    viewer.drain();
    return viewer;
  }

  /** Keystrokes to the attached Vm; false if there is none. Viewers go through Viewer.input (read-only check). */
  input(data: Buffer | string): boolean {
    const vm = this.current?.vm;
    if (!vm) return false;
    vm.writeConsole(data);
    return true;
  }

  /** The retained history: the last `lines` lines, or all of it, at most `maxBytes`. */
  history(opts: { lines?: number; maxBytes?: number } = {}): Buffer {
    let out = opts.lines === undefined ? this.ring.snapshot() : this.ring.lastLines(opts.lines);
    if (opts.maxBytes !== undefined && out.length > opts.maxBytes) out = out.subarray(out.length - opts.maxBytes);
    return out;
  }

  /** @internal for Viewer */
  removeViewer(viewer: Viewer, byChannel: boolean): void {
    if (!this.viewers.delete(viewer)) return;
    this.skippedByGone += viewer.bytesSkipped;
    if (byChannel && !this.closed) this.disconnected++;
  }

  /** Detach, end every viewer, and flush and close the log. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.detach();
      this.closed = true;
      for (const v of [...this.viewers]) v.hostClosed('console closed');
    }
    await this.log?.close();
  }

  private append(data: Buffer): void {
    const from = this.ring.end;
    this.ring.write(data);
    this.lines.update(data);
    this.log?.write(data);
    // A Set visits viewers added or removed during the loop correctly; no copy per chunk.
    for (const v of this.viewers) v.notify(from, data);
  }
}
