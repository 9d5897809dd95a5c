/**
 * JSON payloads of the guest agent protocol (docs/guest-protocol.md): zod
 * schemas for everything the gateway receives (it does not trust the agent,
 * "Limits and trust"), and builders for what it sends. Unknown fields are
 * ignored, as the doc's "Frames" section says.
 */
import { z } from 'zod';

const u32 = z.number().int().min(0).max(0xffff_ffff);
const port = z.number().int().min(0).max(65535);
const oneLine = z.string().max(4096);

/** HELLO_ACK JSON ("Handshake"): `{agent, minVersion, maxVersion, bootId?, uptimeMs?}`. */
export const helloAckJson = z.looseObject({
  agent: z.string().max(256),
  minVersion: z.number().int().min(0).max(65535),
  maxVersion: z.number().int().min(0).max(65535),
  bootId: z.string().max(256).optional(),
  uptimeMs: z.number().min(0).optional(),
});
export type HelloAckJson = z.infer<typeof helloAckJson>;

/** RESPONSE ("Control requests"): `{id, ok: true, ...}` or `{id, ok: false, error}`. */
export const responseJson = z.union([
  z.looseObject({ id: u32, ok: z.literal(true) }),
  z.looseObject({ id: u32, ok: z.literal(false), error: oneLine }),
]);
export type ResponseJson = z.infer<typeof responseJson>;

/** OPEN from the agent ("Streams"): `tcp-accepted` or `auth-agent`. */
export const agentOpenJson = z.discriminatedUnion('kind', [
  z.looseObject({
    kind: z.literal('tcp-accepted'),
    listener: u32,
    originHost: z.string().max(256),
    originPort: port,
  }),
  z.looseObject({ kind: z.literal('auth-agent'), session: u32 }),
]);
export type AgentOpenJson = z.infer<typeof agentOpenJson>;

/** OPEN_OK ("Streams"): `{}`, `{pid}` (exec) or `{port}` (tcp-listen). */
export const openOkJson = z.looseObject({
  pid: z.number().int().min(0).max(0x7fff_ffff).optional(),
  port: port.optional(),
});
export type OpenOkJson = z.infer<typeof openOkJson>;

/** OPEN_FAIL ("Streams"): `{error: "one line"}`. */
export const openFailJson = z.looseObject({ error: oneLine });

/** Signal names in EXIT and the `signal` stream request ("exec"). */
export const SIGNAL_NAMES = ['TERM', 'INT', 'HUP', 'KILL', 'QUIT', 'USR1', 'USR2', 'ALRM', 'PIPE', 'ABRT', 'FPE', 'ILL', 'SEGV'] as const;
export type SignalName = (typeof SIGNAL_NAMES)[number];

/** EXIT ("exec"): `{code}` or `{signal, core}`; the signal is any name without `SIG` (the guest may report ones the gateway cannot send). */
export const exitJson = z.union([
  z.looseObject({ code: z.number().int().min(0).max(255) }),
  z.looseObject({ signal: z.string().regex(/^[A-Z0-9+-]{1,16}$/), core: z.boolean() }),
]);

/** How a process ended, as the API gives it. */
export type AgentExit = { code: number } | { signal: string; core: boolean };

/** Normalise a validated EXIT payload to {@link AgentExit} (drops unknown fields). */
export function toAgentExit(e: z.infer<typeof exitJson>): AgentExit {
  if (typeof e.code === 'number') return { code: e.code };
  return { signal: String(e.signal), core: e.core === true };
}

/**
 * Parse a JSON payload and validate it.
 * @returns the value, or a one-line error string (never throws).
 */
export function parsePayload<T>(schema: z.ZodType<T>, payload: Buffer): { ok: true; value: T } | { ok: false; error: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(payload.toString('utf8'));
  } catch {
    return { ok: false, error: 'payload is not JSON' };
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    return { ok: false, error: `invalid payload${issue ? ` (${issue.path.join('.') || 'root'}: ${issue.message})` : ''}` };
  }
  return { ok: true, value: r.data };
}

/** Terminal request of an exec OPEN; `modes` are RFC 4254 §8 encoded. Sizes in characters / pixels. */
export interface PtyRequest {
  term: string;
  cols: number;
  rows: number;
  width: number;
  height: number;
  modes: Buffer;
}

/** Arguments of an exec OPEN ("exec"). */
export interface ExecOpen {
  command?: Buffer;
  subsystem?: 'sftp';
  env?: Array<{ name: string; value: Buffer }>;
  pty?: PtyRequest;
  agentForward: boolean;
  /** Where the command starts, inside the guest (an image's WorkingDir); absent: root's home. */
  cwd?: string;
}

/** The exec OPEN payload: byte strings as base64, absent options as null. */
export function buildExecOpen(o: ExecOpen): Buffer {
  return json({
    kind: 'exec',
    command: o.command ? o.command.toString('base64') : null,
    subsystem: o.subsystem ?? null,
    env: (o.env ?? []).map((e) => ({ name: e.name, value: e.value.toString('base64') })),
    pty: o.pty
      ? { term: o.pty.term, cols: o.pty.cols, rows: o.pty.rows, width: o.pty.width, height: o.pty.height, modes: o.pty.modes.toString('base64') }
      : null,
    agentForward: o.agentForward,
    ...(o.cwd ? { cwd: o.cwd } : {}),
  });
}

/** The tcp-connect / tcp-listen OPEN payload. */
export function buildTcpOpen(kind: 'tcp-connect' | 'tcp-listen', host: string, port: number): Buffer {
  return json({ kind, host, port });
}

/** A REQUEST payload: `{id, op, ...args}` (id and op win over args). */
export function buildRequest(id: number, op: string, args: Record<string, unknown>): Buffer {
  return json({ ...args, id, op });
}

/** A STREAM_REQUEST payload: `{op, ...fields}`. */
export function buildStreamRequest(op: string, fields: Record<string, unknown> = {}): Buffer {
  return json({ ...fields, op });
}

/** JSON → UTF-8 bytes. */
export function json(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v), 'utf8');
}
