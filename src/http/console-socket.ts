import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { ConsoleChannel } from '../console/console-hub.js';
import { formatNotice } from '../console/marker.js';
import type { Logger } from '../util/log.js';
import { HttpError } from './http-util.js';
import { mayControl, mayRead, type Principal } from './tokens.js';
import { requireAllowed } from './api-routes.js';

/**
 * A VM's console over a WebSocket (`/api/vms/NAME/console/ws`), for the web
 * page: a text frame `{"type":"hello","vm","readOnly"}`, then the replayed
 * history and the live bytes as binary frames. Frames from the client are
 * keystrokes, passed to the guest only for an owner or admin token.
 *
 * Browsers cannot set headers on a WebSocket, so the token comes as a
 * subprotocol, `bearer.TOKEN`, beside `sshvisor.console` (which the server
 * picks); an Authorization header works too. Either way it stays out of URLs
 * and logs.
 */

export const CONSOLE_PROTOCOL = 'sshvisor.console';
const TOKEN_PROTOCOL = 'bearer.';
/** A browser tab that stops reading may hold this much before its viewer waits (and is later skipped ahead). */
const HIGH_WATER = 256 * 1024;

export interface ConsoleSocketContext {
  auth: { resolve(token: string | undefined): Principal | undefined };
  channel(name: string): ConsoleChannel;
  isKnown(name: string): boolean;
  replayLines: number;
  logger: Logger;
}

export function createConsoleSocketServer(): WebSocketServer {
  return new WebSocketServer({
    noServer: true,
    maxPayload: 64 * 1024,
    handleProtocols: (protocols) => (protocols.has(CONSOLE_PROTOCOL) ? CONSOLE_PROTOCOL : false),
  });
}

function tokenOf(req: IncomingMessage): string | undefined {
  const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
  const fromProtocol = offered.find((p) => p.startsWith(TOKEN_PROTOCOL))?.slice(TOKEN_PROTOCOL.length);
  if (fromProtocol) return fromProtocol;
  const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
  return m?.[1];
}

/** Check an upgrade to a console socket; throws HttpError (answered before any WebSocket exists). */
export function authorizeConsole(ctx: ConsoleSocketContext, req: IncomingMessage, vm: string): Principal {
  // A page from another origin must not drive a console with a token it somehow holds.
  const origin = req.headers.origin;
  if (origin !== undefined && new URL(origin, 'http://invalid').host !== req.headers.host) {
    throw new HttpError(403, 'cross-origin console connections are refused');
  }
  const who = ctx.auth.resolve(tokenOf(req));
  if (!who) throw new HttpError(401, 'missing or unknown token');
  requireAllowed(mayRead(who, vm), vm);
  if (!ctx.isKnown(vm)) throw new HttpError(404, `no VM named ${vm}`);
  return who;
}

/** Answer a refused upgrade with a plain HTTP response. */
export function refuseUpgrade(socket: Duplex, err: HttpError): void {
  const body = JSON.stringify({ error: err.message }) + '\n';
  const reason = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found' }[err.status] ?? 'Error';
  socket.end(
    `HTTP/1.1 ${err.status} ${reason}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/** Serve one accepted console socket until either side closes. */
export function serveConsoleSocket(ctx: ConsoleSocketContext, ws: WebSocket, vm: string, who: Principal): void {
  const readOnly = mayControl(who, vm) !== 'ok';
  const log = ctx.logger.child({ vm, event: 'web-console', by: who.kind === 'admin' ? 'admin' : `token:${who.access}` });
  ws.send(JSON.stringify({ type: 'hello', vm, readOnly }));
  ws.send(Buffer.from(formatNotice(readOnly ? `watching ${vm}'s console, read-only` : `${vm}'s console: keystrokes go to the VM`)), { binary: true });
  let pending: Buffer[] = [];
  let scheduled = false;
  let waiting = false;
  const flushed = (): void => {
    if (waiting && ws.bufferedAmount < HIGH_WATER / 2) {
      waiting = false;
      viewer.drain();
    }
  };
  // QEMU hands the console over a few bytes at a time: one frame per event-loop turn, not per chunk.
  const flush = (): void => {
    scheduled = false;
    if (pending.length === 0 || ws.readyState !== WebSocket.OPEN) return;
    const data = Buffer.concat(pending);
    pending = [];
    ws.send(data, { binary: true }, flushed);
  };
  const viewer = ctx.channel(vm).addViewer({
    write(data) {
      pending.push(data);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
      waiting = ws.bufferedAmount >= HIGH_WATER;
      return !waiting;
    },
    onClose: (reason) => ws.close(1011, reason.slice(0, 100)),
    replayLines: ctx.replayLines,
    readOnly,
    overflow: 'skip',
  });
  ws.on('message', (data: RawData) => {
    if (readOnly) return;
    viewer.input(Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer));
  });
  ws.on('error', (err) => log.info({ err: err.message }, 'web console socket error'));
  ws.once('close', () => {
    viewer.close();
    log.info({ readOnly, detach: true }, 'web console detached');
  });
  log.info({ readOnly }, 'web console attached');
}
