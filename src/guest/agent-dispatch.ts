/**
 * What the gateway does with each frame the agent sends after the handshake
 * (docs/guest-protocol.md, "Frames", "Streams", "Flow control", "Limits and
 * trust"). Every check that fails yields a one-line violation; the
 * connection then ends with `protocol error: <violation>`.
 */
import { AGENT_STREAM_ID_MIN, FrameType, MAX_AGENT_STREAMS, frameTypeName, type Frame } from './agent-frames.js';
import { agentOpenJson, exitJson, json, parsePayload, toAgentExit } from './agent-messages.js';
import type { ExecProcess } from './agent-process.js';
import { AgentStream, ProtocolViolation, type StreamCore, type StreamWire } from './agent-stream.js';

/** A stream id's state in the connection's table. */
export type Entry =
  | {
      /** The gateway sent OPEN and waits for the answer. */
      kind: 'opening';
      /** OPEN_OK came: returns the open entry, or a violation (bad payload). */
      opened(payload: Buffer): Entry | string;
      /** OPEN_FAIL came: rejects the opener; returns a violation (bad payload) or undefined. */
      refused(payload: Buffer): string | undefined;
      /** The connection ended first. */
      fail(err: Error): void;
    }
  | { kind: 'exec'; core: StreamCore; proc: ExecProcess }
  | { kind: 'stream'; core: StreamCore; stream: AgentStream }
  | { kind: 'listener'; core: StreamCore; onConnection(s: AgentStream, origin: { host: string; port: number }): void };

/** The connection's state the dispatcher works on. */
export interface DispatchContext {
  /** Every stream id not yet over. */
  entries: Map<number, Entry>;
  /** Streams opened by the agent and not yet over (at most 256). */
  agentStreams: number;
  wire: StreamWire;
  /** A RESPONSE on stream 0; returns a violation or undefined. */
  response(payload: Buffer): string | undefined;
  warn(obj: object, msg: string): void;
}

/** Handle one frame. @returns a violation (the connection must end), or undefined. */
export function dispatchFrame(ctx: DispatchContext, f: Frame): string | undefined {
  try {
    return dispatch(ctx, f);
  } catch (e) {
    if (e instanceof ProtocolViolation) return e.message;
    throw e;
  }
}

function dispatch(ctx: DispatchContext, { type, stream: id, payload }: Frame): string | undefined {
  const name = frameTypeName(type);
  if (id === 0) return type === FrameType.RESPONSE ? ctx.response(payload) : `${name} on stream 0`;
  if (type === FrameType.HELLO_ACK || type === FrameType.RESPONSE) return `${name} on stream ${id}`;
  if (type === FrameType.OPEN) return agentOpen(ctx, id, payload);
  const e = ctx.entries.get(id);
  if (!e) return `${name} on unknown stream ${id}`;
  if (e.kind === 'opening') {
    if (type === FrameType.OPEN_OK) {
      const r = e.opened(payload);
      if (typeof r === 'string') return r;
      ctx.entries.set(id, r);
      return undefined;
    }
    if (type === FrameType.OPEN_FAIL) {
      ctx.entries.delete(id);
      return e.refused(payload);
    }
    return `${name} on stream ${id} before OPEN_OK`;
  }
  switch (type) {
    case FrameType.OPEN_OK:
    case FrameType.OPEN_FAIL:
      return `${name} on stream ${id}, already open`;
    case FrameType.DATA:
      if (e.kind === 'listener') return `DATA on listener stream ${id}`;
      e.core.onData(payload, false);
      return undefined;
    case FrameType.STDERR:
      if (e.kind !== 'exec') return `STDERR on non-exec stream ${id}`;
      e.core.onData(payload, true);
      return undefined;
    case FrameType.WINDOW:
      if (payload.length !== 4) return `WINDOW payload of ${payload.length} bytes on stream ${id}`;
      e.core.onWindow(payload.readUInt32BE(0));
      return undefined;
    case FrameType.EOF:
    case FrameType.CLOSE:
      if (payload.length !== 0) return `${name} with a payload on stream ${id}`;
      if (type === FrameType.EOF) e.core.onEof();
      else e.core.onClose();
      return undefined;
    case FrameType.EXIT: {
      if (e.kind !== 'exec') return `EXIT on non-exec stream ${id}`;
      const x = parsePayload(exitJson, payload);
      if (!x.ok) return `EXIT ${x.error}`;
      e.proc.onExit(toAgentExit(x.value));
      return undefined;
    }
    default:
      return `unexpected ${name} on stream ${id}`;
  }
}

function agentOpen(ctx: DispatchContext, id: number, payload: Buffer): string | undefined {
  if (id < AGENT_STREAM_ID_MIN) return `OPEN of stream ${id}, in the gateway's half`;
  if (ctx.entries.has(id)) return `OPEN of stream ${id}, already open`;
  if (ctx.agentStreams >= MAX_AGENT_STREAMS) return `more than ${MAX_AGENT_STREAMS} streams opened by the agent`;
  const m = parsePayload(agentOpenJson, payload);
  if (!m.ok) return `OPEN ${m.error}`;
  const refuse = (error: string) => ctx.wire.send(FrameType.OPEN_FAIL, id, json({ error }));
  const msg = m.value;
  let deliver: (s: AgentStream) => void;
  if (msg.kind === 'tcp-accepted') {
    const l = ctx.entries.get(msg.listener);
    if (l?.kind !== 'listener' || l.core.sentClose) return void refuse('no such listener');
    const origin = { host: msg.originHost, port: msg.originPort };
    deliver = (s) => l.onConnection(s, origin);
  } else {
    const x = ctx.entries.get(msg.session);
    const cb = x?.kind === 'exec' && !x.core.sentClose ? x.proc.onAuthAgent : undefined;
    if (!cb) return void refuse('agent forwarding is off for this session');
    deliver = cb;
  }
  const s = new AgentStream(id, ctx.wire, msg.kind);
  ctx.entries.set(id, { kind: 'stream', core: s.core, stream: s });
  ctx.agentStreams++;
  ctx.wire.send(FrameType.OPEN_OK, id, json({}));
  try {
    deliver(s);
  } catch (err) {
    ctx.warn({ err, stream: id, kind: msg.kind }, 'guest agent: a stream handler threw; stream closed');
    s.destroy();
  }
  return undefined;
}
