import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { coalescingWriter } from '../../src/ssh/coalescing-writer.js';

const tick = () => new Promise((r) => setImmediate(r));

function sink(highWaterMark = 1024 * 1024) {
  const writes: Buffer[] = [];
  let release: (() => void) | undefined;
  const stream = new Writable({
    highWaterMark,
    write(chunk: Buffer, _enc, cb) {
      writes.push(chunk);
      release = cb;
    },
  });
  return { stream, writes, ack: () => release?.() };
}

it('gathers the chunks of one event-loop turn into one write, in order', async () => {
  const { stream, writes, ack } = sink();
  const write = coalescingWriter(stream);
  for (const c of ['ab', 'c', 'def']) assert.equal(write(Buffer.from(c)), true);
  assert.equal(writes.length, 0, 'nothing written synchronously');
  await tick();
  assert.deepEqual(writes.map(String), ['abcdef']);
  ack();
  write(Buffer.from('g'));
  await tick();
  assert.deepEqual(writes.map(String), ['abcdef', 'g']);
});

it('writes at once past maxBytes', () => {
  const { stream, writes } = sink();
  const write = coalescingWriter(stream, 4);
  write(Buffer.from('ab'));
  write(Buffer.from('cde'));
  assert.deepEqual(writes.map(String), ['abcde']);
});

it('reports backpressure until the stream drains', async () => {
  const { stream, ack } = sink(4);
  const write = coalescingWriter(stream);
  write(Buffer.from('123456'));
  await tick();
  assert.equal(write(Buffer.from('x')), false, 'the last write hit the high-water mark');
  const drained = new Promise((r) => stream.once('drain', r));
  ack();
  await drained;
  assert.equal(write(Buffer.from('y')), true);
});

it('drops what is pending once the stream has ended', async () => {
  const { stream, writes } = sink();
  const write = coalescingWriter(stream);
  write(Buffer.from('late'));
  stream.end();
  await tick();
  assert.deepEqual(writes, []);
});
