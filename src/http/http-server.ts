import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { isLoopbackHost, parseHostPort } from '../console/console-tcp-server.js';
import { UserError, errorMessage } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { handleApi, vmFromPath, type ApiContext } from './api-routes.js';
import { authorizeConsole, createConsoleSocketServer, refuseUpgrade, serveConsoleSocket, type ConsoleSocketContext } from './console-socket.js';
import { HttpError, sendError, sendText } from './http-util.js';
import { loadAssets, PAGE_HEADERS } from './static-assets.js';

/**
 * The HTTP front door (--http): the JSON API, /metrics, the web page and its
 * console sockets. Beside the SSH front door, it talks to src/ops and the
 * console hub only.
 */

export interface HttpServerOptions extends ApiContext, Omit<ConsoleSocketContext, 'logger' | 'auth'> {
  /** HOST:PORT */
  address: string;
  /** Allow a non-loopback HOST (--http-public): plain HTTP carries the tokens in the clear. */
  allowPublic: boolean;
  logger: Logger;
}

export interface HttpServer {
  readonly port: number;
  close(): Promise<void>;
}

const CONSOLE_WS = /^\/api\/vms\/([^/]+)\/console\/ws$/;

/** HOST:PORT for --http, refused off loopback unless allowed. */
export function checkHttpAddress(address: string, allowPublic: boolean): { host: string; port: number } {
  let parsed: { host: string; port: number };
  try {
    parsed = parseHostPort(address);
  } catch {
    throw new UserError(`--http: ${JSON.stringify(address)} is not HOST:PORT (e.g. 127.0.0.1:8080 or [::1]:8080)`);
  }
  if (!allowPublic && !isLoopbackHost(parsed.host)) {
    throw new UserError(`--http ${address}: not a loopback address; it is plain HTTP (tokens in the clear), so add --http-public to serve it there anyway`);
  }
  return parsed;
}

export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServer> {
  const { host, port } = checkHttpAddress(opts.address, opts.allowPublic);
  const { logger } = opts;
  const assets = loadAssets();
  const wss = createConsoleSocketServer();

  const onRequest = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://sshvisor.invalid');
    const asset = url.pathname.startsWith('/api/') ? undefined : assets.get(url.pathname);
    if (asset) {
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'use GET here', { allow: 'GET, HEAD' });
      return sendText(res, 200, asset.contentType, asset.body, { ...PAGE_HEADERS, 'cache-control': 'no-cache' });
    }
    if (url.pathname !== '/metrics' && !url.pathname.startsWith('/api/')) throw new HttpError(404, `no such page: ${url.pathname.slice(0, 80)}`);
    await handleApi(opts, req, res, url);
  };

  const server = createServer((req, res) => {
    onRequest(req, res).catch((err: unknown) => {
      if (!(err instanceof HttpError)) logger.error({ err: errorMessage(err), url: req.url?.slice(0, 200) }, 'HTTP request failed');
      const httpErr = err instanceof HttpError ? err : new HttpError(500, 'internal error');
      if (httpErr.status === 401) logger.info({ event: 'http-auth-failed', url: req.url?.slice(0, 200) }, 'HTTP request without a valid token');
      if (res.headersSent) return void res.destroy();
      sendError(res, httpErr);
    });
  });
  server.headersTimeout = 15_000;
  server.requestTimeout = 60_000;

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    try {
      const m = CONSOLE_WS.exec(new URL(req.url ?? '/', 'http://sshvisor.invalid').pathname);
      if (!m) throw new HttpError(404, 'no WebSocket here');
      const vm = vmFromPath(m[1]!);
      const who = authorizeConsole({ ...opts, logger }, req, vm);
      wss.handleUpgrade(req, socket, head, (ws) => serveConsoleSocket({ ...opts, logger }, ws, vm, who));
    } catch (err) {
      refuseUpgrade(socket, err instanceof HttpError ? err : new HttpError(400, errorMessage(err)));
    }
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => reject(new UserError(`--http ${opts.address}: ${err.code ?? err.message}`, { cause: err }));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => logger.error({ err: err.message }, 'HTTP server error'));
  const bound = server.address();
  const boundPort = typeof bound === 'object' && bound ? bound.port : port;

  return {
    port: boundPort,
    close: () =>
      new Promise<void>((resolve) => {
        for (const ws of wss.clients) ws.terminate();
        wss.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
