/**
 * The console hub: every VM name's ConsoleChannel, created on first use, and
 * the way to a name's history when its channel is not in memory (after a
 * gateway restart): console.log on disk.
 */
import { join } from 'node:path';
import { assertVmName } from '../vm/vm-name.js';
import { ConsoleChannel, DEFAULT_RING_BYTES, type ConsoleVm, type LogSettings } from './console-channel.js';
import { readLogHistory } from './console-log.js';
import { lastLinesOf } from './ring-buffer.js';

export {
  ConsoleChannel,
  DEFAULT_RING_BYTES,
  type ChannelEvents,
  type ConsoleChannelOptions,
  type ConsoleVm,
  type LogSettings,
} from './console-channel.js';
export { Viewer, type OverflowPolicy, type ViewerOptions } from './viewer.js';

export interface ConsoleHubOptions {
  /** DATA_DIR: logs go to DATA_DIR/vms/NAME/console.log. Without it, memory only. */
  dataDir?: string;
  capacity?: number;
  log?: LogSettings;
  now?: () => Date;
  onError?: (name: string, err: unknown) => void;
}

/** Every VM name's console channel, created on first use and kept until dropped. */
export class ConsoleHub {
  private readonly channels = new Map<string, ConsoleChannel>();

  constructor(private readonly opts: ConsoleHubOptions = {}) {}

  /** The channel for `name`, created (and seeded from its log on disk) if needed. */
  channel(name: string): ConsoleChannel {
    let ch = this.channels.get(name);
    if (!ch) {
      assertVmName(name);
      const { onError } = this.opts;
      ch = new ConsoleChannel({
        name,
        dir: this.dirOf(name),
        capacity: this.opts.capacity,
        log: this.opts.log,
        now: this.opts.now,
        onError: onError && ((err) => onError(name, err)),
      });
      this.channels.set(name, ch);
    }
    return ch;
  }

  get(name: string): ConsoleChannel | undefined {
    return this.channels.get(name);
  }

  /** Wire a Vm to its name's channel: `manager.on('vm-created', (vm) => hub.attach(vm))`. */
  attach(vm: ConsoleVm & { readonly name: string }, startMarker?: string): ConsoleChannel {
    const ch = this.channel(vm.name);
    ch.attach(vm, startMarker);
    return ch;
  }

  /**
   * `name`'s recent console: from memory if its channel exists, else from
   * console.log on disk (after a gateway restart, or for a name never booted
   * since), without creating a channel.
   */
  history(name: string, opts: { lines?: number; maxBytes?: number } = {}): Buffer {
    const ch = this.channels.get(name);
    if (ch) return ch.history(opts);
    assertVmName(name);
    const dir = this.dirOf(name);
    if (dir === undefined) return Buffer.alloc(0);
    const raw = readLogHistory(dir, opts.maxBytes ?? this.opts.capacity ?? DEFAULT_RING_BYTES);
    return opts.lines === undefined ? raw : lastLinesOf(raw, opts.lines);
  }

  /** Forget a name's channel (its log stays on disk), e.g. when the name is deleted. */
  async drop(name: string): Promise<void> {
    const ch = this.channels.get(name);
    if (!ch) return;
    this.channels.delete(name);
    await ch.close();
  }

  async close(): Promise<void> {
    const all = [...this.channels.values()];
    this.channels.clear();
    await Promise.all(all.map((ch) => ch.close()));
  }

  get names(): string[] {
    return [...this.channels.keys()];
  }

  get bytesCaptured(): number {
    let n = 0;
    for (const ch of this.channels.values()) n += ch.bytesCaptured;
    return n;
  }

  get viewerCount(): number {
    let n = 0;
    for (const ch of this.channels.values()) n += ch.viewerCount;
    return n;
  }

  private dirOf(name: string): string | undefined {
    return this.opts.dataDir === undefined ? undefined : join(this.opts.dataDir, 'vms', name);
  }
}
