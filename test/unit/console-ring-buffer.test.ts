import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RingBuffer, lastLinesOf } from '../../src/console/ring-buffer.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const s = (buf: Buffer): string => buf.toString('latin1');

/** Keeps every byte ever written; the ring must behave like its last `capacity` bytes. */
class NaiveRing {
  all = Buffer.alloc(0);
  constructor(readonly capacity: number) {}
  write(buf: Buffer): void {
    this.all = Buffer.concat([this.all, buf]);
  }
  get end(): number {
    return this.all.length;
  }
  get start(): number {
    return Math.max(0, this.end - this.capacity);
  }
  read(from: number, max = Infinity): { data: Buffer; from: number; missed: number } {
    const f = Math.min(Math.max(from, this.start), this.end);
    return { data: this.all.subarray(f, Math.min(this.end, f + max)), from: f, missed: Math.max(0, this.start - Math.max(0, from)) };
  }
  lastLines(n: number): Buffer {
    const kept = this.all.subarray(this.start);
    if (n <= 0) return Buffer.alloc(0);
    const starts = [0];
    for (let i = 0; i < kept.length - 1; i++) if (kept[i] === 0x0a) starts.push(i + 1);
    if (kept.length === 0) return kept;
    return kept.subarray(starts.length >= n ? (starts[starts.length - n] as number) : 0);
  }
}

/** Deterministic PRNG so a failure can be replayed from its seed. */
function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('RingBuffer', () => {
  test('rejects a capacity that is not a positive integer', () => {
    for (const c of [0, -1, 1.5, NaN, Infinity]) assert.throws(() => new RingBuffer(c), RangeError);
  });

  test('empty ring', () => {
    const r = new RingBuffer(8);
    assert.equal(r.start, 0);
    assert.equal(r.end, 0);
    assert.equal(r.length, 0);
    assert.equal(r.lastByte, undefined);
    assert.deepEqual(r.read(0), { data: Buffer.alloc(0), from: 0, missed: 0 });
    assert.equal(r.snapshot().length, 0);
    assert.equal(r.lastLines(3).length, 0);
    assert.equal(r.lastLinesOffset(3), 0);
  });

  test('writes, reads and wraps around with absolute offsets', () => {
    const r = new RingBuffer(8);
    r.write(b('abcde'));
    assert.equal(s(r.snapshot()), 'abcde');
    assert.deepEqual([r.start, r.end, r.length], [0, 5, 5]);
    r.write(b('fghij'));
    assert.deepEqual([r.start, r.end, r.length], [2, 10, 8]);
    assert.equal(s(r.snapshot()), 'cdefghij');
    assert.equal(r.lastByte, 'j'.charCodeAt(0));
    assert.deepEqual(r.read(4, 3), { data: b('efg'), from: 4, missed: 0 });
    assert.deepEqual(r.read(7), { data: b('hij'), from: 7, missed: 0 });
    r.write(Buffer.alloc(0));
    assert.equal(r.end, 10);
  });

  test('a read from an overwritten offset is clamped and says how much was missed', () => {
    const r = new RingBuffer(4);
    r.write(b('0123456789'));
    assert.deepEqual(r.read(1), { data: b('6789'), from: 6, missed: 5 });
    assert.deepEqual(r.read(0, 2), { data: b('67'), from: 6, missed: 6 });
    assert.deepEqual(r.read(10), { data: Buffer.alloc(0), from: 10, missed: 0 });
    assert.deepEqual(r.read(99), { data: Buffer.alloc(0), from: 10, missed: 0 });
  });

  test('a write larger than the capacity keeps its tail', () => {
    const r = new RingBuffer(5);
    r.write(b('xy'));
    r.write(b('ABCDEFGHIJKL'));
    assert.equal(s(r.snapshot()), 'HIJKL');
    assert.deepEqual([r.start, r.end], [9, 14]);
    r.write(b('mn'));
    assert.equal(s(r.snapshot()), 'JKLmn');
  });

  test('read returns a copy that later writes do not change', () => {
    const r = new RingBuffer(4);
    r.write(b('abcd'));
    const { data } = r.read(0);
    r.write(b('wxyz'));
    assert.equal(s(data), 'abcd');
  });

  test('lastLines: \\n ends a line, a trailing partial line counts', () => {
    const r = new RingBuffer(64);
    r.write(b('one\ntwo\nthree\n'));
    assert.equal(s(r.lastLines(1)), 'three\n');
    assert.equal(s(r.lastLines(2)), 'two\nthree\n');
    assert.equal(s(r.lastLines(3)), 'one\ntwo\nthree\n');
    assert.equal(s(r.lastLines(10)), 'one\ntwo\nthree\n');
    assert.equal(s(r.lastLines(0)), '');
    r.write(b('fo'));
    assert.equal(s(r.lastLines(1)), 'fo');
    assert.equal(s(r.lastLines(2)), 'three\nfo');
    assert.equal(r.lastLinesOffset(2), 'one\ntwo\n'.length);
    r.write(b('\r\n\n'));
    assert.equal(s(r.lastLines(1)), '\n');
    assert.equal(s(r.lastLines(2)), 'fo\r\n\n');
  });

  test('lastLines across the wrap point, and when the oldest line lost its start', () => {
    const r = new RingBuffer(10);
    r.write(b('aaaa\nbbbb\n'));
    r.write(b('cc\ndd'));
    // retained: "\nbbbb\ncc\ndd" minus the first byte -> "bbbb\ncc\ndd"
    assert.equal(s(r.snapshot()), 'bbbb\ncc\ndd');
    assert.equal(s(r.lastLines(2)), 'cc\ndd');
    assert.equal(s(r.lastLines(3)), 'bbbb\ncc\ndd');
    assert.equal(s(r.lastLines(9)), 'bbbb\ncc\ndd');
    const noNewline = new RingBuffer(3);
    noNewline.write(b('abcdef'));
    assert.equal(s(noNewline.lastLines(1)), 'def');
  });

  test('lastLinesOf a plain buffer', () => {
    assert.equal(s(lastLinesOf(b('a\nb\nc'), 2)), 'b\nc');
    assert.equal(s(lastLinesOf(b('a\nb\n'), 5)), 'a\nb\n');
    assert.equal(s(lastLinesOf(Buffer.alloc(0), 1)), '');
  });

  test('randomized: matches a naive implementation', () => {
    for (let seed = 1; seed <= 60; seed++) {
      const rand = mulberry32(seed);
      const int = (n: number): number => Math.floor(rand() * n);
      const cap = 1 + int(40);
      const ring = new RingBuffer(cap);
      const naive = new NaiveRing(cap);
      const ctx = (op: string): string => `seed ${seed}, capacity ${cap}, ${op}`;
      for (let step = 0; step < 300; step++) {
        const len = rand() < 0.1 ? cap + int(2 * cap) : int(Math.ceil(cap / 2) + 1);
        const chunk = Buffer.alloc(len);
        // Lots of newlines, so line logic is exercised at every position.
        for (let i = 0; i < len; i++) chunk[i] = rand() < 0.25 ? 0x0a : 0x61 + int(26);
        ring.write(chunk);
        naive.write(chunk);
        assert.equal(ring.start, naive.start, ctx('start'));
        assert.equal(ring.end, naive.end, ctx('end'));
        assert.equal(s(ring.snapshot()), s(naive.all.subarray(naive.start)), ctx('snapshot'));
        const from = int(naive.end + 5) - 2;
        const max = rand() < 0.5 ? Infinity : int(cap + 2);
        const got = ring.read(from, max);
        const want = naive.read(from, max);
        assert.equal(got.from, want.from, ctx(`read(${from}, ${max}).from`));
        assert.equal(got.missed, want.missed, ctx(`read(${from}, ${max}).missed`));
        assert.equal(s(got.data), s(want.data), ctx(`read(${from}, ${max}).data`));
        const n = int(8);
        assert.equal(s(ring.lastLines(n)), s(naive.lastLines(n)), ctx(`lastLines(${n})`));
        assert.equal(ring.lastByte, naive.all[naive.end - 1], ctx('lastByte'));
      }
    }
  });

  test('many small writes stay cheap (cost per byte, not per stored byte)', () => {
    const r = new RingBuffer(1024 * 1024);
    const line = b('[    1.234567] a typical kernel log line of moderate length\r\n');
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 200_000; i++) r.write(line);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.equal(r.end, 200_000 * line.length);
    assert.equal(r.length, 1024 * 1024);
    assert.ok(ms < 2000, `200k writes took ${ms} ms`);
  });
});
