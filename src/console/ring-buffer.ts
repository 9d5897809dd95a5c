/**
 * A fixed-capacity byte ring addressed by absolute offsets: offset 0 is the
 * first byte ever written, `end` the number of bytes written so far. Readers
 * (console viewers) keep an offset as their cursor, so everyone reads the one
 * copy and "you missed N bytes" is just arithmetic.
 */

const NL = 0x0a;

export interface RingRead {
  /** The bytes from `from` on (a copy; the ring may overwrite its own memory later). */
  data: Buffer;
  /** Absolute offset of data[0]: the requested offset, or `start` if that was already overwritten. */
  from: number;
  /** Bytes between the requested offset and `from` that were overwritten before this read. */
  missed: number;
}

export class RingBuffer {
  private readonly mem: Buffer;
  private total = 0;

  constructor(readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new RangeError(`ring buffer capacity must be a positive integer, got ${capacity}`);
    }
    this.mem = Buffer.alloc(capacity);
  }

  /** Oldest retained absolute offset. */
  get start(): number {
    return Math.max(0, this.total - this.capacity);
  }

  /** Total bytes ever written, i.e. the absolute offset of the next byte. */
  get end(): number {
    return this.total;
  }

  /** Bytes currently retained. */
  get length(): number {
    return this.total - this.start;
  }

  /** The last byte written, or undefined before the first write. */
  get lastByte(): number | undefined {
    return this.total === 0 ? undefined : this.mem[(this.total - 1) % this.capacity];
  }

  /** Append; cost is proportional to the bytes kept, never to what is already stored. */
  write(buf: Buffer): void {
    if (buf.length === 0) return;
    // Only the last `capacity` bytes of a big write can survive it.
    const tail = buf.length > this.capacity ? buf.subarray(buf.length - this.capacity) : buf;
    this.total += buf.length;
    // Byte at absolute offset o always lives at o % capacity.
    const at = (this.total - tail.length) % this.capacity;
    const first = Math.min(tail.length, this.capacity - at);
    tail.copy(this.mem, at, 0, first);
    if (first < tail.length) tail.copy(this.mem, 0, first);
  }

  /** Up to `maxBytes` retained bytes from absolute offset `fromOffset` on, clamped to what is retained. */
  read(fromOffset: number, maxBytes: number = Infinity): RingRead {
    const start = this.start;
    const from = Math.min(Math.max(fromOffset, start), this.total);
    const missed = Math.max(0, start - Math.max(0, fromOffset));
    const n = Math.max(0, Math.min(this.total - from, maxBytes));
    return { data: this.copyOut(from, n), from, missed };
  }

  /** Everything retained, oldest first. */
  snapshot(): Buffer {
    return this.copyOut(this.start, this.length);
  }

  /**
   * Absolute offset where the last `n` lines begin. A line ends with \n; a
   * trailing partial line counts as a line. If fewer than `n` lines are
   * retained this is `start` (whose line may have lost its beginning).
   */
  lastLinesOffset(n: number): number {
    const segs = this.segments();
    const rel = lastLinesIndex(segs, n);
    return this.start + rel;
  }

  /** The last `n` lines (see lastLinesOffset). */
  lastLines(n: number): Buffer {
    const from = this.lastLinesOffset(n);
    return this.copyOut(from, this.total - from);
  }

  /** The retained bytes as at most two views into memory, oldest first. */
  private segments(): Buffer[] {
    const len = this.length;
    if (len === 0) return [];
    const at = this.start % this.capacity;
    if (at + len <= this.capacity) return [this.mem.subarray(at, at + len)];
    return [this.mem.subarray(at), this.mem.subarray(0, at + len - this.capacity)];
  }

  private copyOut(from: number, n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    if (n === 0) return out;
    const at = from % this.capacity;
    const first = Math.min(n, this.capacity - at);
    this.mem.copy(out, 0, at, at + first);
    if (first < n) this.mem.copy(out, first, 0, n - first);
    return out;
  }
}

/** The last `n` lines of a plain buffer, with the same rules as RingBuffer.lastLines. */
export function lastLinesOf(buf: Buffer, n: number): Buffer {
  return buf.subarray(lastLinesIndex([buf], n));
}

/**
 * Index (into the concatenation of `segs`) where the last `n` lines start.
 * Scans backwards with lastIndexOf, so the cost is the size of those lines,
 * not of the buffer.
 */
function lastLinesIndex(segs: Buffer[], n: number): number {
  const total = segs.reduce((s, b) => s + b.length, 0);
  if (n <= 0 || total === 0) return total;
  // A final \n ends the last line rather than starting an empty one.
  let remaining = byteAt(segs, total - 1) === NL ? n + 1 : n;
  let base = total;
  for (let i = segs.length - 1; i >= 0; i--) {
    const seg = segs[i] as Buffer;
    base -= seg.length;
    let pos = seg.length - 1;
    while (pos >= 0) {
      const nl = seg.lastIndexOf(NL, pos);
      if (nl < 0) break;
      if (--remaining === 0) return base + nl + 1;
      pos = nl - 1;
    }
  }
  return 0;
}

function byteAt(segs: Buffer[], index: number): number | undefined {
  for (const seg of segs) {
    if (index < seg.length) return seg[index];
    index -= seg.length;
  }
  return undefined;
}
