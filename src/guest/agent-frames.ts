/**
 * The frame layer of the guest agent protocol (docs/guest-protocol.md,
 * "Frames" and "Handshake and resynchronisation"): constants, header
 * encoding, an incremental decoder that checks every header before it
 * buffers a payload, and the HELLO / HELLO_ACK handshake codec.
 */

/** Protocol versions this gateway speaks ("Compatibility"). */
export const PROTOCOL_MIN_VERSION = 1;
export const PROTOCOL_MAX_VERSION = 1;

/** Bytes in a frame header: u32 length, u8 type, 3 zero bytes, u32 stream. */
export const FRAME_HEADER_BYTES = 12;
/** Largest payload of an `OPEN` frame, in bytes ("Limits and trust"). */
export const MAX_OPEN_PAYLOAD = 1_048_576;
/** Largest payload of every other frame, in bytes ("Limits and trust"). */
export const MAX_PAYLOAD = 65_536;
/** Initial window of every stream, per direction, in bytes ("Flow control"). */
export const STREAM_WINDOW = 262_144;
/** Largest `DATA` payload the gateway sends, in bytes. */
export const MAX_DATA_CHUNK_SENT = 32_768;
/** Most streams the agent may have opened at a time ("Limits and trust"). */
export const MAX_AGENT_STREAMS = 256;
/** First stream id of the agent's half ("Streams"): the gateway uses 1 .. 2^31-1. */
export const AGENT_STREAM_ID_MIN = 0x8000_0000;
/** The 8 magic bytes that open HELLO and HELLO_ACK payloads. */
export const HELLO_MAGIC = Buffer.from('sshvAGNT', 'latin1');
/** Size of the HELLO payload: magic, u16 min, u16 max, 16-byte nonce. */
export const HELLO_BYTES = 28;
/** Size of the binary part of HELLO_ACK: magic, u16 version, 16-byte nonce. */
export const HELLO_ACK_BINARY_BYTES = 26;
/** Nonce length in HELLO / HELLO_ACK. */
export const NONCE_BYTES = 16;

/** Frame types ("Frames" table). */
export const FrameType = {
  HELLO: 0x01,
  HELLO_ACK: 0x02,
  REQUEST: 0x10,
  RESPONSE: 0x11,
  OPEN: 0x20,
  OPEN_OK: 0x21,
  OPEN_FAIL: 0x22,
  DATA: 0x30,
  STDERR: 0x31,
  WINDOW: 0x32,
  EOF: 0x33,
  CLOSE: 0x34,
  STREAM_REQUEST: 0x40,
  EXIT: 0x41,
} as const;
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

const TYPE_NAMES = new Map<number, string>(Object.entries(FrameType).map(([k, v]) => [v, k]));

/** The name of a frame type (`DATA`), or `0xNN` for an unknown one. */
export function frameTypeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `0x${type.toString(16).padStart(2, '0')}`;
}

/** One decoded frame. `payload` may share memory with the bytes it was read from. */
export interface Frame {
  type: number;
  stream: number;
  payload: Buffer;
}

/** A frame the receiver must not accept (bad header or over-limit length); the connection ends. */
export class FrameError extends Error {
  override name = 'FrameError';
}

/**
 * The largest payload the gateway accepts for a frame type it may receive:
 * 1,048,576 for `OPEN`, 65,536 for the other agent → gateway types, and
 * undefined for a type the agent never sends (unknown, or gateway-only).
 */
export function maxPayloadFromAgent(type: number): number | undefined {
  switch (type) {
    case FrameType.OPEN:
      return MAX_OPEN_PAYLOAD;
    case FrameType.HELLO_ACK:
    case FrameType.RESPONSE:
    case FrameType.OPEN_OK:
    case FrameType.OPEN_FAIL:
    case FrameType.DATA:
    case FrameType.STDERR:
    case FrameType.WINDOW:
    case FrameType.EOF:
    case FrameType.CLOSE:
    case FrameType.EXIT:
      return MAX_PAYLOAD;
    default:
      return undefined;
  }
}

/**
 * Encode one frame (header + payload) into a new Buffer.
 * @param type a FrameType value; @param stream u32 stream id (0 = control).
 * @throws RangeError if the payload is longer than MAX_OPEN_PAYLOAD or stream is not a u32.
 */
export function encodeFrame(type: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  if (payload.length > MAX_OPEN_PAYLOAD) throw new RangeError(`frame payload of ${payload.length} bytes is over the limit`);
  if (!Number.isInteger(stream) || stream < 0 || stream > 0xffff_ffff) throw new RangeError(`bad stream id ${stream}`);
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.writeUInt8(type, 4);
  out.writeUIntBE(0, 5, 3);
  out.writeUInt32BE(stream, 8);
  payload.copy(out, FRAME_HEADER_BYTES);
  return out;
}

/** Decoded header fields; see {@link FrameDecoder}. */
export interface FrameHeader {
  length: number;
  type: number;
  stream: number;
}

/**
 * Read and check a header at `offset` ("Frames"; "Limits and trust").
 * @throws FrameError on non-zero reserved bytes, a type the agent does not
 * send, or a length over that type's limit.
 */
export function checkHeader(buf: Buffer, offset = 0): FrameHeader {
  const length = buf.readUInt32BE(offset);
  const type = buf.readUInt8(offset + 4);
  const stream = buf.readUInt32BE(offset + 8);
  if (buf[offset + 5] !== 0 || buf[offset + 6] !== 0 || buf[offset + 7] !== 0) {
    throw new FrameError(`non-zero reserved bytes in a ${frameTypeName(type)} header`);
  }
  const max = maxPayloadFromAgent(type);
  if (max === undefined) throw new FrameError(`unexpected frame type ${frameTypeName(type)}`);
  if (length > max) throw new FrameError(`${frameTypeName(type)} payload of ${length} bytes is over the ${max}-byte limit`);
  return { length, type, stream };
}

/**
 * Incremental decoder of agent → gateway frames. `push()` chunks as they
 * arrive, then call `next()` until it returns null. The header is checked as
 * soon as its 12 bytes are there, before any payload is waited for, so at
 * most one partial frame (≤ 12 + 1,048,576 bytes) stays buffered between
 * pushes. After a FrameError the decoder is unusable.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private head = 0;
  private total = 0;
  private header: FrameHeader | undefined;

  /** Bytes held (pushed but not yet returned as frames). */
  get bufferedBytes(): number {
    return this.total;
  }

  /** Append received bytes. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /** The next complete frame, or null if more bytes are needed. @throws FrameError */
  next(): Frame | null {
    if (!this.header) {
      if (this.total < FRAME_HEADER_BYTES) return null;
      this.header = checkHeader(this.take(FRAME_HEADER_BYTES));
    }
    if (this.total < this.header.length) return null;
    const { type, stream, length } = this.header;
    this.header = undefined;
    return { type, stream, payload: this.take(length) };
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[this.head]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.advance();
      else this.chunks[this.head] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let got = 0;
      while (got < n) {
        const c = this.chunks[this.head]!;
        const k = Math.min(c.length, n - got);
        c.copy(out, got, 0, k);
        got += k;
        if (k === c.length) this.advance();
        else this.chunks[this.head] = c.subarray(k);
      }
    }
    this.total -= n;
    return out;
  }

  // Drop the head chunk; the array is compacted now and then (shift() would make tiny chunks quadratic).
  private advance(): void {
    this.head++;
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}

/** The HELLO frame: `"sshvAGNT" | u16 min | u16 max | nonce`, on stream 0. */
export function encodeHello(nonce: Buffer, min = PROTOCOL_MIN_VERSION, max = PROTOCOL_MAX_VERSION): Buffer {
  if (nonce.length !== NONCE_BYTES) throw new RangeError('the HELLO nonce is 16 bytes');
  const p = Buffer.alloc(HELLO_BYTES);
  HELLO_MAGIC.copy(p, 0);
  p.writeUInt16BE(min, 8);
  p.writeUInt16BE(max, 10);
  nonce.copy(p, 12);
  return encodeFrame(FrameType.HELLO, 0, p);
}

/** The HELLO_ACK frame (what an agent sends; for tests and fake agents). */
export function encodeHelloAck(nonce: Buffer, version: number, json: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(json));
  const p = Buffer.alloc(HELLO_ACK_BINARY_BYTES + body.length);
  HELLO_MAGIC.copy(p, 0);
  p.writeUInt16BE(version, 8);
  nonce.copy(p, 10);
  body.copy(p, HELLO_ACK_BINARY_BYTES);
  return encodeFrame(FrameType.HELLO_ACK, 0, p);
}

/** A HELLO_ACK found by {@link HelloAckScanner}: the chosen version, its JSON bytes, and what followed it. */
export interface HelloAckFound {
  version: number;
  json: Buffer;
  rest: Buffer;
}

// `02 00 00 00 | 00 00 00 00 | "sshvAGNT"`: the HELLO_ACK header after its length, then the magic.
const ACK_PATTERN = Buffer.concat([Buffer.from([FrameType.HELLO_ACK, 0, 0, 0, 0, 0, 0, 0]), HELLO_MAGIC]);

/**
 * Resynchronisation ("Handshake and resynchronisation"): discards bytes until
 * a HELLO_ACK whose nonce is ours. Candidates are found by their header
 * pattern; one whose length is out of range (< 26 or > 65,536) or whose nonce
 * differs is skipped byte by byte, so a real HELLO_ACK inside junk is still
 * found. Holds at most 12 + 65,536 bytes plus the last chunk.
 */
export class HelloAckScanner {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly nonce: Buffer) {}

  /** Bytes held while scanning. */
  get bufferedBytes(): number {
    return this.buf.length;
  }

  /** Feed received bytes; returns the matching HELLO_ACK once it is complete, else null. */
  push(chunk: Buffer): HelloAckFound | null {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const buf = this.buf;
    let keepFrom = Math.max(0, buf.length - (ACK_PATTERN.length + 3));
    let from = 4;
    for (;;) {
      const at = buf.indexOf(ACK_PATTERN, from);
      if (at < 0) break;
      from = at + 1;
      const start = at - 4;
      const length = buf.readUInt32BE(start);
      if (length < HELLO_ACK_BINARY_BYTES || length > MAX_PAYLOAD) continue;
      const end = start + FRAME_HEADER_BYTES + length;
      if (end > buf.length) {
        keepFrom = Math.min(keepFrom, start);
        continue;
      }
      const p = buf.subarray(start + FRAME_HEADER_BYTES, end);
      if (!p.subarray(10, 26).equals(this.nonce)) continue;
      this.buf = Buffer.alloc(0);
      return { version: p.readUInt16BE(8), json: p.subarray(HELLO_ACK_BINARY_BYTES), rest: buf.subarray(end) };
    }
    this.buf = keepFrom > 0 ? Buffer.from(buf.subarray(keepFrom)) : buf;
    return null;
  }
}
