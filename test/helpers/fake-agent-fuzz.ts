/**
 * A hostile guest agent for test/unit/agent-fuzz.test.ts, run as its own
 * process: `node fake-agent-fuzz.js SOCKET SEED`. It listens on SOCKET (as
 * QEMU's chardev does), prints "ready", and for each connection reads a u32
 * case number, then plays the agent of that case: generated from SEED and the
 * case number (valid frames, mutated, truncated, huge lengths, bad JSON,
 * window floods, endless data, silence).
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Socket } from 'node:net';
import { encodeFrame, encodeHelloAck, FrameType, STREAM_WINDOW } from '../../src/guest/agent-frames.js';
import { Gen, prng } from './fuzz-inputs.js';

/** The fake agent's generator: the fuzz helpers' seeded choices, plus raw bytes. */
export class G extends Gen {
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(this.r() * 256);
    return b;
  }
}

export { prng as rng };

/** The case seed for (run seed, case number, role). */
export function caseSeed(seed: number, index: number, role: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 31) + Math.imul(index + 1, 0x9e3779b1) + role * 0x85ebca6b) >>> 0;
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const HANDSHAKES = ['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'junk-ok', 'junk-ok', 'silent', 'close', 'junk-flood', 'v0', 'v7', 'bad-json', 'wrong-nonce', 'truncated'] as const;
const STEPS = [
  'data', 'data', 'stderr', 'eof', 'exit', 'close', 'window', 'accepted', 'auth-agent',
  'random', 'mutate', 'huge', 'bad-json', 'flood', 'endless', 'endless-valid', 'silence', 'truncate', 'many-opens',
] as const;

function play(sock: Socket, seed: number, index: number): (f: { type: number; stream: number; payload: Buffer }) => void {
  const g = new G(prng(caseSeed(seed, index, 1))); // the script
  const react = new G(prng(caseSeed(seed, index, 2))); // answers to the gateway
  const write = (b: Buffer) => (!sock.destroyed && sock.writable ? sock.write(b) : false);
  const frame = (type: number, id: number, p?: Buffer) => write(encodeFrame(type, id, p));
  const streams: number[] = [];
  const listeners: number[] = [];
  const credit = new Map<number, number>();
  let nextAgentId = 0x8000_0000 + g.int(0, 100);
  let stopped = false;
  const known = () => (streams.length && g.chance(0.85) ? g.pick(streams) : g.pick([0, 1, 2, 0x8000_0000, 0xffff_ffff, g.int(0, 2 ** 32 - 1)]));
  // write until the socket is gone, respecting its backpressure
  const flood = (next: () => Buffer | undefined) => {
    const go = () => {
      for (;;) {
        if (sock.destroyed || !sock.writable) return;
        const b = next();
        if (!b) return;
        if (!sock.write(b)) return void sock.once('drain', go);
      }
    };
    go();
  };
  const step = () => {
    if (stopped || sock.destroyed) return;
    const s = g.pick(STEPS);
    const id = known();
    switch (s) {
      case 'data':
      case 'stderr': {
        const c = credit.get(id) ?? STREAM_WINDOW;
        const n = Math.min(c, g.int(0, 65536));
        credit.set(id, c - n);
        frame(s === 'data' ? FrameType.DATA : FrameType.STDERR, id, Buffer.alloc(n, 0x61));
        break;
      }
      case 'eof':
        frame(FrameType.EOF, id);
        break;
      case 'exit':
        frame(FrameType.EXIT, id, json(g.chance(0.5) ? { code: g.int(0, 255) } : { signal: g.pick(['TERM', 'SEGV', 'KILL']), core: g.chance(0.5) }));
        break;
      case 'close':
        frame(FrameType.CLOSE, id);
        break;
      case 'window': {
        const p = Buffer.alloc(4);
        p.writeUInt32BE(g.pick([0, 1, 4096, STREAM_WINDOW, 0xffff_ffff]), 0);
        frame(FrameType.WINDOW, id, p);
        break;
      }
      case 'accepted':
        frame(FrameType.OPEN, nextAgentId++, json({ kind: 'tcp-accepted', listener: listeners.length ? g.pick(listeners) : id, originHost: '127.0.0.1', originPort: g.int(0, 65535) }));
        break;
      case 'auth-agent':
        frame(FrameType.OPEN, nextAgentId++, json({ kind: 'auth-agent', session: id }));
        break;
      case 'random':
        frame(g.int(0, 0x50), id, g.bytes(g.int(0, 300)));
        break;
      case 'mutate': {
        const f = encodeFrame(g.pick([FrameType.DATA, FrameType.RESPONSE, FrameType.OPEN_OK, FrameType.EXIT, FrameType.WINDOW]), id, json({ id: 1, ok: true, code: 1, pid: 3 }));
        for (let i = g.int(1, 4); i > 0; i--) {
          const k = g.int(0, f.length - 1);
          f[k] = f[k]! ^ (1 << g.int(0, 7));
        }
        write(f);
        break;
      }
      case 'huge': {
        const h = Buffer.alloc(12);
        h.writeUInt32BE(g.pick([65537, 1_048_577, 0xffff_ffff, 0x7fff_ffff, g.int(0, 2 ** 32 - 1)]), 0);
        h[4] = g.pick([FrameType.DATA, FrameType.OPEN, FrameType.RESPONSE, FrameType.HELLO_ACK]);
        h.writeUInt32BE(id, 8);
        write(h);
        break;
      }
      case 'bad-json':
        frame(g.pick([FrameType.RESPONSE, FrameType.EXIT, FrameType.OPEN_OK, FrameType.OPEN_FAIL, FrameType.OPEN]), g.chance(0.3) ? 0 : id, Buffer.from(g.pick(['{', '[]', 'null', '{"id":"x"}', '\xff\xfe', '{"kind":"exec"}', '{"error":5}'])));
        break;
      case 'flood':
        for (let i = 0; i < 6; i++) frame(FrameType.DATA, id, Buffer.alloc(65536, 0x62));
        break;
      case 'endless': {
        const chunk = encodeFrame(FrameType.DATA, id, Buffer.alloc(65536, 0x63));
        stopped = true;
        flood(() => chunk);
        return;
      }
      case 'endless-valid': {
        // only what the window allows; more as WINDOWs come (never a violation)
        stopped = true;
        const go = () => {
          let c = credit.get(id) ?? STREAM_WINDOW;
          while (c > 0 && !sock.destroyed) {
            const n = Math.min(c, 32768);
            c -= n;
            credit.set(id, c);
            if (!frame(FrameType.DATA, id, Buffer.alloc(n, 0x64))) break;
          }
        };
        refill = go;
        go();
        return;
      }
      case 'silence':
        stopped = true;
        return;
      case 'truncate':
        write(encodeFrame(FrameType.DATA, id, Buffer.alloc(100)).subarray(0, g.int(1, 100)));
        sock.end();
        return;
      case 'many-opens':
        for (let i = 0; i < 300; i++) frame(FrameType.OPEN, nextAgentId++, json({ kind: 'auth-agent', session: id }));
        break;
    }
    if (g.chance(0.05)) {
      sock.end();
      return;
    }
    setTimeout(step, g.int(0, 2));
  };
  let refill: (() => void) | undefined;
  let helloSeen = false;
  return (f) => {
    if (!helloSeen) {
      if (f.type !== FrameType.HELLO) return;
      helloSeen = true;
      const nonce = f.payload.subarray(12, 28);
      const ackJson = { agent: 'fuzz', minVersion: 1, maxVersion: 1, bootId: 'b' };
      const hs = g.pick(HANDSHAKES);
      switch (hs) {
        case 'silent':
          return;
        case 'close':
          return void sock.destroy();
        case 'junk-flood':
          return flood(() => g.bytes(4096));
        case 'v0':
          return void write(encodeHelloAck(nonce, 0, { agent: 'x', minVersion: 2, maxVersion: 5 }));
        case 'v7':
          return void write(encodeHelloAck(nonce, 7, ackJson));
        case 'bad-json': {
          const a = encodeHelloAck(nonce, 1, ackJson);
          return void write(Buffer.concat([a.subarray(0, a.length - 3), Buffer.from('!!!')]));
        }
        case 'wrong-nonce':
          return void write(encodeHelloAck(randomBytes(16), 1, ackJson));
        case 'truncated': {
          const a = encodeHelloAck(nonce, 1, ackJson);
          write(a.subarray(0, g.int(1, a.length - 1)));
          return void sock.end();
        }
        default:
          if (hs === 'junk-ok') write(g.bytes(g.int(1, 5000)));
          write(encodeHelloAck(nonce, 1, ackJson));
          setTimeout(step, g.int(0, 3));
          return;
      }
    }
    if (f.type === FrameType.OPEN) {
      streams.push(f.stream);
      let kind = '';
      try {
        kind = String((JSON.parse(f.payload.toString()) as { kind?: unknown }).kind);
      } catch {}
      const r = react.r();
      if (r < 0.7) {
        if (kind === 'tcp-listen') listeners.push(f.stream);
        frame(FrameType.OPEN_OK, f.stream, json(kind === 'exec' ? { pid: react.int(1, 99999) } : kind === 'tcp-listen' ? { port: react.int(1, 65535) } : {}));
      } else if (r < 0.85) frame(FrameType.OPEN_FAIL, f.stream, json({ error: 'refused by fuzz' }));
      else if (r < 0.95) return;
      else frame(FrameType.OPEN_OK, f.stream, react.bytes(react.int(0, 20)));
    } else if (f.type === FrameType.REQUEST) {
      let id = 0;
      try {
        id = Number((JSON.parse(f.payload.toString()) as { id?: unknown }).id);
      } catch {}
      const r = react.r();
      if (r < 0.7) frame(FrameType.RESPONSE, 0, json({ id, ok: true }));
      else if (r < 0.8) frame(FrameType.RESPONSE, 0, json({ id, ok: false, error: 'nope' }));
      else if (r < 0.9) frame(FrameType.RESPONSE, 0, json({ id: id + 1000, ok: true }));
    } else if (f.type === FrameType.WINDOW && f.payload.length === 4) {
      credit.set(f.stream, (credit.get(f.stream) ?? STREAM_WINDOW) + f.payload.readUInt32BE(0));
      refill?.();
    }
  };
}

function serveConnection(sock: Socket, seed: number): void {
  sock.on('error', () => {});
  let buf: Buffer = Buffer.alloc(0);
  let onFrame: ReturnType<typeof play> | undefined;
  sock.on('data', (c: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, c]) : c;
    if (!onFrame) {
      if (buf.length < 4) return;
      onFrame = play(sock, seed, buf.readUInt32BE(0));
      buf = buf.subarray(4);
    }
    while (buf.length >= 12) {
      const len = buf.readUInt32BE(0);
      if (buf.length < 12 + len) return;
      onFrame({ type: buf[4]!, stream: buf.readUInt32BE(8), payload: buf.subarray(12, 12 + len) });
      buf = buf.subarray(12 + len);
    }
  });
}

const [path, seedText] = process.argv.slice(2);
if (path && seedText) {
  const seed = Number(seedText) >>> 0;
  const server = createServer((sock) => serveConnection(sock, seed));
  server.listen(path, () => process.stdout.write('ready\n'));
  // the parent's end of stdin closing means the test is over
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
