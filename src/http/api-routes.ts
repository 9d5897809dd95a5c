import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { AdminOps } from '../ops/admin-commands.js';
import { consoleLines, statusJson } from '../ops/vm-status.js';
import { CapacityError } from '../manager/capacity-error.js';
import { UserError, errorMessage } from '../util/errors.js';
import { isValidVmName } from '../vm/vm-name.js';
import { ADMIN_NAME } from '../ssh/routing.js';
import type { Logger } from '../util/log.js';
import { HttpError, MAX_BODY_BYTES, readJsonBody, sendJson, sendText } from './http-util.js';
import { bearerToken, mayControl, mayRead, type Decision, type Principal } from './tokens.js';

/** What the API needs: the operator's ops (the same as `sshvisor CMD`), console history, token auth, metrics. */
export interface ApiContext {
  ops: Pick<AdminOps, 'names' | 'isKnown' | 'report' | 'stop' | 'suspend' | 'resume' | 'create'>;
  history(name: string, opts: { lines: number; maxBytes: number }): Buffer;
  auth: { resolve(token: string | undefined): Principal | undefined };
  metrics: { contentType: string; render(): Promise<string> };
  logger: Logger;
}

const ACTIONS = ['stop', 'suspend', 'resume'] as const;
type Action = (typeof ACTIONS)[number];
const MAX_CONSOLE_LINES = 10_000;

/** The caller, from its bearer token; 401 without a known one. */
export function authenticate(ctx: Pick<ApiContext, 'auth'>, req: IncomingMessage): Principal {
  const header = req.headers.authorization;
  const principal = ctx.auth.resolve(bearerToken(header));
  if (principal) return principal;
  throw new HttpError(401, header === undefined ? 'missing bearer token (Authorization: Bearer TOKEN)' : 'unknown or revoked token');
}

/** 403 unless `decision` allows; the reason says which rule. */
export function requireAllowed(decision: Decision, vm: string): void {
  if (decision === 'other-vm') throw new HttpError(403, `this token is not for VM ${vm}`);
  if (decision === 'read-only') throw new HttpError(403, `this token may only read ${vm} (ask for an owner token: ssh ${vm}+token@host rw)`);
}

/** A VM name from the path: 400 if it cannot be one. */
export function vmFromPath(segment: string): string {
  let name: string;
  try {
    name = decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, 'malformed VM name in the path');
  }
  if (!isValidVmName(name)) throw new HttpError(400, `invalid VM name ${JSON.stringify(name.slice(0, 40))}`);
  return name;
}

function allowOnly(req: IncomingMessage, method: string): void {
  if (req.method !== method && !(method === 'GET' && req.method === 'HEAD')) {
    throw new HttpError(405, `use ${method} here`, { allow: method === 'GET' ? 'GET, HEAD' : method });
  }
}

function parseLines(raw: string | null): number {
  if (raw === null) return 100;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > MAX_CONSOLE_LINES) {
    throw new HttpError(400, `lines must be a whole number from 1 to ${MAX_CONSOLE_LINES}, not ${JSON.stringify(raw.slice(0, 20))}`);
  }
  return n;
}

/** GET /metrics (admin token) and everything under /api/. Throws HttpError for every non-200 answer. */
export async function handleApi(ctx: ApiContext, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  // Before anything else: a huge body is refused unread, whoever sends it.
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) throw new HttpError(413, `request body too large (${declared} bytes; at most ${MAX_BODY_BYTES})`, { connection: 'close' });
  const who = authenticate(ctx, req);
  const parts = url.pathname.split('/').filter(Boolean);
  if (url.pathname === '/metrics') {
    allowOnly(req, 'GET');
    if (who.kind !== 'admin') throw new HttpError(403, '/metrics needs the admin token');
    return sendText(res, 200, ctx.metrics.contentType, await ctx.metrics.render());
  }
  if (parts[0] !== 'api') throw new HttpError(404, `no such endpoint: ${url.pathname.slice(0, 80)}`);
  if (parts.length === 2 && parts[1] === 'whoami') {
    allowOnly(req, 'GET');
    return sendJson(res, 200, who.kind === 'admin' ? { kind: 'admin', control: true } : { kind: 'vm', vm: who.vm, control: who.access === 'owner' });
  }
  if (parts[1] !== 'vms' || parts.length > 4) throw new HttpError(404, `no such endpoint: ${url.pathname.slice(0, 80)}`);
  if (parts.length === 2 && req.method === 'POST') return createVm(ctx, req, res, who);
  if (parts.length === 2) {
    allowOnly(req, 'GET');
    const names = ctx.ops.names().filter((n) => mayRead(who, n) === 'ok');
    return sendJson(res, 200, { vms: names.map((n) => statusJson(ctx.ops.report(n, { consoleLines: 1 }))) });
  }
  const vm = vmFromPath(parts[2]!);
  const sub = parts[3];
  const isAction = sub !== undefined && (ACTIONS as readonly string[]).includes(sub);
  if (sub !== undefined && sub !== 'console' && !isAction) throw new HttpError(404, `no such endpoint: ${url.pathname.slice(0, 80)}`);
  requireAllowed(isAction ? mayControl(who, vm) : mayRead(who, vm), vm);
  if (!ctx.ops.isKnown(vm)) throw new HttpError(404, `no VM named ${vm}`);
  if (sub === undefined) {
    allowOnly(req, 'GET');
    return sendJson(res, 200, statusJson(ctx.ops.report(vm)));
  }
  if (sub === 'console') {
    allowOnly(req, 'GET');
    const lines = parseLines(url.searchParams.get('lines'));
    const text = consoleLines(ctx.history(vm, { lines, maxBytes: 4 * 1024 * 1024 })).slice(-lines);
    return sendJson(res, 200, { name: vm, lines: text });
  }
  allowOnly(req, 'POST');
  const body = await readJsonBody(req);
  if (body !== undefined && (typeof body !== 'object' || body === null || Array.isArray(body))) {
    throw new HttpError(400, 'the request body, if any, must be a JSON object');
  }
  const log = ctx.logger.child({ event: 'http-action', vm, action: sub, by: who.kind === 'admin' ? 'admin' : `token:${who.access}` });
  let result: string;
  try {
    result = await runAction(ctx, sub as Action, vm);
  } catch (err) {
    log.warn({ err: errorMessage(err) }, 'HTTP action failed');
    if (err instanceof HttpError) throw err;
    if (err instanceof CapacityError) throw new HttpError(503, errorMessage(err));
    if (err instanceof UserError) throw new HttpError(500, `${sub} ${vm}: ${errorMessage(err)}`);
    throw err;
  }
  log.info({ result }, 'HTTP action');
  sendJson(res, 200, { result, vm: statusJson(ctx.ops.report(vm, { consoleLines: 0 })) });
}

const createBody = z.strictObject({
  name: z.string(),
  image: z.string().optional(),
  memoryMiB: z.int().optional(),
  cpus: z.int().optional(),
  diskMiB: z.int().optional(),
});

/** POST /api/vms {name, image?, memoryMiB?, cpus?, diskMiB?} (admin token): create a VM with its own image and shape, as `sshvisor create`. */
async function createVm(ctx: ApiContext, req: IncomingMessage, res: ServerResponse, who: Principal): Promise<void> {
  if (who.kind !== 'admin') throw new HttpError(403, 'creating a VM needs the admin token');
  const parsed = createBody.safeParse(await readJsonBody(req));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new HttpError(400, `bad body: ${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'} (expected {name, image?, memoryMiB?, cpus?, diskMiB?})`);
  }
  const { name, ...request } = parsed.data;
  if (!isValidVmName(name)) throw new HttpError(400, `invalid VM name ${JSON.stringify(name.slice(0, 40))}`);
  if (name === ADMIN_NAME) throw new HttpError(400, `${ADMIN_NAME} is the operators' account, not a VM name`);
  try {
    ctx.ops.create(name, request);
  } catch (err) {
    if (err instanceof UserError) throw new HttpError(/already exists/.test(err.message) ? 409 : 400, errorMessage(err));
    throw err;
  }
  ctx.logger.info({ event: 'http-create', vm: name, ...request }, 'VM created over HTTP');
  sendJson(res, 201, statusJson(ctx.ops.report(name, { consoleLines: 0 })));
}

async function runAction(ctx: ApiContext, action: Action, vm: string): Promise<string> {
  switch (action) {
    case 'stop':
      return (await ctx.ops.stop(vm)).kind;
    case 'suspend': {
      const r = await ctx.ops.suspend(vm);
      if (r.kind === 'failed') throw new HttpError(500, `${vm} could not be suspended${r.exit ? `; it ended instead: ${r.exit.detail}` : ''}`);
      return r.kind;
    }
    case 'resume': {
      const { already, report } = await ctx.ops.resume(vm);
      return already ? 'already-running' : report.resumedThisRun ? 'resumed' : 'booted';
    }
  }
}
