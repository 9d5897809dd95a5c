/**
 * The on-disk copy of one VM's console: DATA_DIR/vms/NAME/console.log, with
 * rotated console.log.1 (newest) ... console.log.KEEP (oldest).
 *
 * The producer is the guest's console, which must never wait for a disk:
 * write() only queues in memory, and a single async loop appends whatever
 * has queued since its last write (one write in flight, coalesced). The
 * queue is bounded; when the disk falls that far behind, new bytes are
 * dropped and counted, and a "[sshvisor: N bytes not logged]" line marks
 * the hole in the file.
 */
import { closeSync, fstatSync, openSync, readSync, readdirSync } from 'node:fs';
import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { LineTracker, formatNotice } from './marker.js';

export const CONSOLE_LOG_FILE = 'console.log';

export const LOG_DEFAULTS = {
  /** Size at which console.log is rotated; no file grows beyond it. */
  maxBytes: 4 * 1024 * 1024,
  /** Rotated files kept besides console.log (logrotate's `rotate N`). */
  keep: 3,
  /** Bytes queued for the disk (including the write in flight) before new bytes are dropped. */
  maxPendingBytes: 1024 * 1024,
  /** After a failed write, drop (and count) for this long before trying the disk again. */
  retryMs: 1000,
  /** How much readLogHistory returns unless told otherwise. */
  historyBytes: 1024 * 1024,
} as const;

export interface ConsoleLogOptions {
  /** The VM's directory (DATA_DIR/vms/NAME); created 0700 if missing. */
  dir: string;
  maxBytes?: number;
  keep?: number;
  maxPendingBytes?: number;
  retryMs?: number;
  /** Told about the first failure after each success (disk full, permissions), never thrown. */
  onError?: (err: unknown) => void;
}

export class ConsoleLog {
  readonly path: string;
  private readonly maxBytes: number;
  private readonly keep: number;
  private readonly maxPending: number;
  private readonly retryMs: number;

  private pending: Buffer[] = [];
  /** Bytes accepted and not yet finished (queued + in flight): what the bound applies to. */
  private queued = 0;
  /** Sequence numbers for flush(): bytes ever accepted, and bytes finished (written or given up on). */
  private accepted = 0;
  private finished = 0;
  private waiters: Array<{ target: number; resolve: () => void }> = [];
  /** Dropped since the last notice was queued. */
  private unnoted = 0;
  private droppedTotal = 0;
  private writtenTotal = 0;
  /** Where the queued stream ends, so a notice starts on its own line. */
  private readonly lines = new LineTracker();

  private fh: FileHandle | undefined;
  private size = 0;
  private running = false;
  private loop: Promise<void> | undefined;
  private retryAt = 0;
  private failing = false;
  private closing: Promise<void> | undefined;

  constructor(private readonly opts: ConsoleLogOptions) {
    this.path = join(opts.dir, CONSOLE_LOG_FILE);
    this.maxBytes = positive(opts.maxBytes ?? LOG_DEFAULTS.maxBytes, 'maxBytes');
    this.keep = Math.max(0, Math.floor(opts.keep ?? LOG_DEFAULTS.keep));
    this.maxPending = positive(opts.maxPendingBytes ?? LOG_DEFAULTS.maxPendingBytes, 'maxPendingBytes');
    this.retryMs = opts.retryMs ?? LOG_DEFAULTS.retryMs;
  }

  /** Bytes appended to disk (including notices). */
  get bytesWritten(): number {
    return this.writtenTotal;
  }

  /** Bytes that never reached the disk: dropped at the bound, or lost to a failed write. */
  get bytesDropped(): number {
    return this.droppedTotal;
  }

  /** Bytes waiting in memory or in flight. */
  get bytesPending(): number {
    return this.queued;
  }

  /** Queue bytes for the disk. Never blocks, never throws; ignored after close(). */
  write(buf: Buffer): void {
    if (this.closing || buf.length === 0) return;
    if (this.queued + buf.length > this.maxPending || (this.retryAt > 0 && Date.now() < this.retryAt)) {
      this.drop(buf.length);
      // With nothing else queued, nothing else would ever record the hole.
      if (!this.running && Date.now() >= this.retryAt) this.kick();
      return;
    }
    this.noteDrops();
    this.enqueue(buf);
    this.kick();
  }

  /** Resolves once every byte accepted before the call is on disk (or known lost). */
  flush(): Promise<void> {
    const target = this.accepted;
    if (this.finished >= target) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ target, resolve }));
  }

  /** Flush, then close the file; later writes are ignored. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.retryAt = 0;
      this.kick();
      await this.flush();
      await this.loop;
      const fh = this.fh;
      this.fh = undefined;
      await fh?.close().catch(() => undefined);
    })();
    return this.closing;
  }

  private drop(n: number): void {
    this.unnoted += n;
    this.droppedTotal += n;
  }

  private enqueue(buf: Buffer): void {
    this.pending.push(buf);
    this.queued += buf.length;
    this.accepted += buf.length;
    this.lines.update(buf);
  }

  /** Queue the "not logged" line for bytes dropped since the last one. */
  private noteDrops(): void {
    if (this.unnoted === 0) return;
    const note = Buffer.from(this.lines.lead() + formatNotice(`${this.unnoted} bytes not logged`));
    this.unnoted = 0;
    this.enqueue(note);
  }

  private kick(): void {
    if (this.running) return;
    this.noteDrops();
    if (this.pending.length === 0) return;
    this.running = true;
    this.loop = this.drain();
  }

  private async drain(): Promise<void> {
    try {
      for (;;) {
        if (this.pending.length === 0) this.noteDrops();
        if (this.pending.length === 0) return;
        const chunk = this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending);
        this.pending = [];
        try {
          await this.append(chunk);
          this.failing = false;
        } catch (err) {
          this.fail(err, chunk.length);
          return;
        } finally {
          this.queued -= chunk.length;
          this.finished += chunk.length;
          this.wake();
        }
      }
    } finally {
      // Cleared in the same tick as the last wake(): whoever that resumes may write at once and must find no loop.
      this.running = false;
    }
  }

  /**
   * Give up on this chunk and whatever queued behind it, and pause the disk
   * for retryMs, so a dead disk costs one attempt per retry period rather
   * than one per console chunk.
   */
  private fail(err: unknown, chunkBytes: number): void {
    const rest = this.pending.reduce((s, b) => s + b.length, 0);
    this.pending = [];
    this.queued -= rest;
    this.finished += rest;
    this.drop(chunkBytes + rest);
    this.retryAt = Date.now() + this.retryMs;
    const fh = this.fh;
    this.fh = undefined;
    void fh?.close().catch(() => undefined);
    if (!this.failing) this.opts.onError?.(err);
    this.failing = true;
  }

  private wake(): void {
    const still: typeof this.waiters = [];
    for (const w of this.waiters) (this.finished >= w.target ? w.resolve() : still.push(w));
    this.waiters = still;
  }

  /** Append, splitting at the size limit so no file ever exceeds maxBytes. */
  private async append(chunk: Buffer): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      if (!this.fh) await this.openFile();
      if (this.size >= this.maxBytes) await this.rotate();
      const n = Math.min(chunk.length - off, this.maxBytes - this.size);
      await writeAll(this.fh as FileHandle, chunk.subarray(off, off + n));
      this.size += n;
      this.writtenTotal += n;
      off += n;
    }
  }

  private async openFile(): Promise<void> {
    await mkdir(this.opts.dir, { recursive: true, mode: 0o700 });
    const fh = await open(this.path, 'a', 0o600);
    try {
      // The guest may print secrets; the umask must not widen the mode, nor an older file keep a wider one.
      await fh.chmod(0o600);
      this.size = (await fh.stat()).size;
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
    this.fh = fh;
  }

  /** console.log → .1 → .2 ... → .keep; the oldest is overwritten by the rename. */
  private async rotate(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close();
    if (this.keep === 0) {
      await rm(this.path, { force: true });
    } else {
      for (let i = this.keep - 1; i >= 1; i--) {
        await rename(`${this.path}.${i}`, `${this.path}.${i + 1}`).catch(ignoreMissing);
      }
      await rename(this.path, `${this.path}.1`).catch(ignoreMissing);
    }
    await this.openFile();
  }
}

/**
 * The end of a VM's console history as it is on disk: rotated files oldest
 * first, then console.log, at most the last `maxBytes` of them. Synchronous
 * and bounded; for when the VM's console is not in memory (the VM is gone,
 * or the gateway restarted). Empty if there is no log.
 */
export function readLogHistory(dir: string, maxBytes: number = LOG_DEFAULTS.historyBytes): Buffer {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return Buffer.alloc(0);
  }
  const rotated = names
    .map((n) => /^console\.log\.([1-9][0-9]*)$/.exec(n)?.[1])
    .filter((n): n is string => n !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
  // Newest first, so we can stop once we have enough.
  const files = [CONSOLE_LOG_FILE, ...rotated.map((i) => `${CONSOLE_LOG_FILE}.${i}`)];
  const parts: Buffer[] = [];
  let left = maxBytes;
  for (const name of files) {
    if (left <= 0) break;
    const tail = readTail(join(dir, name), left);
    if (!tail) continue;
    parts.unshift(tail);
    left -= tail.length;
  }
  return Buffer.concat(parts);
}

function readTail(path: string, maxBytes: number): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined; // rotated away under us, or never there
  }
  try {
    const size = fstatSync(fd).size;
    const n = Math.min(size, maxBytes);
    const buf = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      const r = readSync(fd, buf, got, n - got, size - n + got);
      if (r === 0) break;
      got += r;
    }
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

async function writeAll(fh: FileHandle, buf: Buffer): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off);
    off += bytesWritten;
  }
}

function ignoreMissing(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
}

function positive(n: number, what: string): number {
  if (!(n > 0)) throw new RangeError(`console log ${what} must be positive, got ${n}`);
  return n;
}
