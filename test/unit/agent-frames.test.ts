import { it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  encodeFrame,
  encodeHello,
  encodeHelloAck,
  FrameDecoder,
  FrameError,
  FrameType,
  HelloAckScanner,
  MAX_OPEN_PAYLOAD,
  MAX_PAYLOAD,
} from '../../src/guest/agent-frames.js';
import { agentOpenJson, buildExecOpen, exitJson, parsePayload, responseJson } from '../../src/guest/agent-messages.js';

function header(len: number, type: number, stream: number, reserved = [0, 0, 0]): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt32BE(len, 0);
  h[4] = type;
  h[5] = reserved[0]!;
  h[6] = reserved[1]!;
  h[7] = reserved[2]!;
  h.writeUInt32BE(stream, 8);
  return h;
}

it('encodes and decodes frames, whole or a byte at a time', () => {
  const frames = [
    encodeFrame(FrameType.DATA, 7, Buffer.from('hello')),
    encodeFrame(FrameType.EOF, 7),
    encodeFrame(FrameType.OPEN, 0x8000_0001, Buffer.alloc(MAX_OPEN_PAYLOAD, 1)),
    encodeFrame(FrameType.STDERR, 0xffff_ffff, Buffer.alloc(MAX_PAYLOAD, 2)),
  ];
  const all = Buffer.concat(frames);
  assert.deepEqual(all.subarray(0, 12), Buffer.from([0, 0, 0, 5, 0x30, 0, 0, 0, 0, 0, 0, 7]));
  for (const step of [all.length, 1, 4097]) {
    const d = new FrameDecoder();
    const out = [];
    for (let i = 0; i < all.length; i += step) {
      d.push(all.subarray(i, i + step));
      for (let f = d.next(); f; f = d.next()) out.push(f);
      assert.ok(d.bufferedBytes <= 12 + MAX_OPEN_PAYLOAD);
    }
    assert.deepEqual(
      out.map((f) => [f.type, f.stream, f.payload.length]),
      [
        [FrameType.DATA, 7, 5],
        [FrameType.EOF, 7, 0],
        [FrameType.OPEN, 0x8000_0001, MAX_OPEN_PAYLOAD],
        [FrameType.STDERR, 0xffff_ffff, MAX_PAYLOAD],
      ],
    );
    assert.equal(out[0]!.payload.toString(), 'hello');
    assert.equal(d.bufferedBytes, 0);
  }
});

it('checks the header before any payload arrives', () => {
  const cases: Array<[Buffer, RegExp]> = [
    [header(MAX_PAYLOAD + 1, FrameType.DATA, 1), /over the 65536-byte limit/],
    [header(MAX_OPEN_PAYLOAD + 1, FrameType.OPEN, 0x80000000), /over the 1048576-byte limit/],
    [header(0xffff_ffff, FrameType.RESPONSE, 0), /over/],
    [header(MAX_PAYLOAD + 1, FrameType.HELLO_ACK, 0), /over/],
    [header(0, FrameType.DATA, 1, [0, 1, 0]), /reserved/],
    [header(0, FrameType.DATA, 1, [0, 0, 0x80]), /reserved/],
    [header(0, 0x99, 1), /unexpected frame type 0x99/],
    [header(0, FrameType.HELLO, 0), /unexpected frame type HELLO/],
    [header(0, FrameType.REQUEST, 0), /unexpected frame type REQUEST/],
    [header(0, FrameType.STREAM_REQUEST, 1), /unexpected frame type STREAM_REQUEST/],
  ];
  for (const [h, re] of cases) {
    const d = new FrameDecoder();
    d.push(h.subarray(0, 11));
    assert.equal(d.next(), null);
    d.push(h.subarray(11));
    assert.throws(() => d.next(), (e: unknown) => e instanceof FrameError && re.test(e.message));
  }
  // exactly at the limits is fine
  for (const [len, type] of [
    [MAX_PAYLOAD, FrameType.DATA],
    [MAX_OPEN_PAYLOAD, FrameType.OPEN],
    [0, FrameType.CLOSE],
  ] as const) {
    const d = new FrameDecoder();
    d.push(header(len, type, 1));
    if (len > 0) assert.equal(d.next(), null);
    d.push(Buffer.alloc(len));
    assert.equal(d.next()?.payload.length, len);
  }
});

it('encodes HELLO as the doc shows', () => {
  const nonce = Buffer.alloc(16, 0xab);
  const h = encodeHello(nonce);
  assert.equal(h.length, 40);
  assert.deepEqual(h.subarray(0, 20), Buffer.concat([Buffer.from([0, 0, 0, 0x1c, 1, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('sshvAGNT')]));
  assert.equal(h.readUInt16BE(20), 1);
  assert.equal(h.readUInt16BE(22), 1);
  assert.deepEqual(h.subarray(24), nonce);
  assert.throws(() => encodeHello(Buffer.alloc(15)));
});

it('finds the HELLO_ACK with our nonce behind junk, in any chunking', () => {
  const nonce = randomBytes(16);
  const ack = encodeHelloAck(nonce, 1, { agent: 'a', minVersion: 1, maxVersion: 1 });
  const after = encodeFrame(FrameType.DATA, 3, Buffer.from('next'));
  const wrong = encodeHelloAck(randomBytes(16), 1, { agent: 'old', minVersion: 1, maxVersion: 1 });
  const halfOld = wrong.subarray(0, 30); // a frame half written by an earlier connection
  const bogusLen = Buffer.concat([header(MAX_PAYLOAD, FrameType.HELLO_ACK, 0), Buffer.from('sshvAGNT')]); // a candidate that claims 64 KiB
  const tooShort = Buffer.concat([header(3, FrameType.HELLO_ACK, 0), Buffer.from('sshvAGNT')]);
  const junk = Buffer.concat([randomBytes(1000), wrong, halfOld, tooShort, bogusLen, Buffer.from('\x00\x00\x00')]);
  const all = Buffer.concat([junk, ack, after]);
  for (const step of [all.length, 1, 7, 64]) {
    const s = new HelloAckScanner(nonce);
    let found = null;
    let i = 0;
    for (; i < all.length && !found; i += step) found = s.push(all.subarray(i, i + step));
    assert.ok(found, `step ${step}`);
    assert.equal(found.version, 1);
    assert.equal(JSON.parse(found.json.toString()).agent, 'a');
    const rest = Buffer.concat([found.rest, all.subarray(i)]);
    assert.deepEqual(rest, after);
  }
});

it('ignores a HELLO_ACK with another nonce and holds bounded memory under endless junk', () => {
  const nonce = randomBytes(16);
  const s = new HelloAckScanner(nonce);
  assert.equal(s.push(encodeHelloAck(randomBytes(16), 1, { agent: 'x', minVersion: 1, maxVersion: 1 })), null);
  for (let i = 0; i < 200; i++) {
    assert.equal(s.push(randomBytes(65536)), null);
    assert.ok(s.bufferedBytes <= 12 + MAX_PAYLOAD + 65536);
  }
  // junk that is all candidate headers claiming the maximum length
  const cand = Buffer.concat([header(MAX_PAYLOAD, FrameType.HELLO_ACK, 0), Buffer.from('sshvAGNT')]);
  for (let i = 0; i < 5000; i++) assert.equal(s.push(cand), null);
  assert.ok(s.bufferedBytes <= 12 + MAX_PAYLOAD + cand.length, `${s.bufferedBytes}`);
  assert.ok(s.push(encodeHelloAck(nonce, 1, { agent: 'y', minVersion: 1, maxVersion: 1 })));
});

it('validates the payloads the gateway receives', () => {
  const ok = (schema: Parameters<typeof parsePayload>[0], v: unknown) => parsePayload(schema, Buffer.from(JSON.stringify(v))).ok;
  assert.ok(ok(responseJson, { id: 1, ok: true, extra: [1] }));
  assert.ok(ok(responseJson, { id: 1, ok: false, error: 'unknown op x' }));
  assert.ok(!ok(responseJson, { id: -1, ok: true }));
  assert.ok(!ok(responseJson, { id: 1, ok: false }));
  assert.ok(!ok(responseJson, [1]));
  assert.ok(!parsePayload(responseJson, Buffer.from('{"id":1,')).ok);
  assert.ok(ok(agentOpenJson, { kind: 'tcp-accepted', listener: 3, originHost: '127.0.0.1', originPort: 4000 }));
  assert.ok(ok(agentOpenJson, { kind: 'auth-agent', session: 5 }));
  assert.ok(!ok(agentOpenJson, { kind: 'exec' }));
  assert.ok(!ok(agentOpenJson, { kind: 'tcp-accepted', listener: 3, originHost: '127.0.0.1', originPort: 70000 }));
  assert.ok(ok(exitJson, { code: 0 }));
  assert.ok(ok(exitJson, { signal: 'SEGV', core: true }));
  assert.ok(!ok(exitJson, { signal: 'SEGV' }));
  assert.ok(!ok(exitJson, { code: 1.5 }));
  const open = JSON.parse(buildExecOpen({ command: Buffer.from([0xff, 0x00]), agentForward: true }).toString());
  assert.deepEqual(open, { kind: 'exec', command: '/wA=', subsystem: null, env: [], pty: null, agentForward: true });
});
