/**
 * --console-tcp: every VM console as a plain-text, read-only byte stream, for
 * local tooling (`nc 127.0.0.1 7022`, a log shipper, a test harness).
 *
 * Protocol: the client sends a VM name and a newline; it gets the last
 * `replayLines` lines of that console and then live bytes until either side
 * closes (a client's FIN counts as closing). Anything it sends after the name
 * is discarded. A bad name, or no
 * newline within 64 bytes / 10 s, gets one "sshvisor: ..." line and a close.
 *
 * There is no authentication and no encryption, so by default it only binds
 * loopback addresses; anything else needs allowPublic (--console-tcp-public).
 */
import { BlockList, createServer, isIP, type Socket } from 'node:net';
import type { ConsoleChannel, ConsoleHub } from './console-hub.js';
import type { Viewer } from './viewer.js';
import { UserError, errorMessage } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { assertVmName } from '../vm/vm-name.js';

export const CONSOLE_TCP_DEFAULTS = {
  /** The name line, newline included, must fit in this many bytes. */
  maxNameBytes: 64,
  nameTimeoutMs: 10_000,
} as const;

export interface ConsoleTcpServerOptions {
  /** 'HOST:PORT' ('[::1]:7022' for IPv6); port 0 picks a free one. */
  address: string;
  /** Allow a non-loopback HOST (the stream is unauthenticated plaintext). */
  allowPublic: boolean;
  hub: ConsoleHub;
  /** Lines of history sent before live output. */
  replayLines: number;
  logger: Logger;
  /** How long a client has to send its name line (default 10 s). */
  nameTimeoutMs?: number;
  /** Live bytes a client may lag by before it is skipped forward (Viewer default when absent). */
  maxQueueBytes?: number;
}

export interface ConsoleTcpServer {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** Stop listening and drop every client. */
  close(): Promise<void>;
}

/** 'HOST:PORT' or '[V6]:PORT' → parts; UserError if malformed. */
export function parseHostPort(address: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(address);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || host === undefined || !Number.isInteger(port) || port > 65535 || (m[1] !== undefined && isIP(m[1]) !== 6)) {
    throw new UserError(`--console-tcp: ${JSON.stringify(address)} is not HOST:PORT (e.g. 127.0.0.1:7022 or [::1]:7022)`);
  }
  return { host, port };
}

const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

/** 127.0.0.0/8, ::1 (any spelling, IPv4-mapped too) or 'localhost'. Other hostnames are not resolved: not loopback. */
export function isLoopbackHost(host: string): boolean {
  if (host.toLowerCase() === 'localhost') return true;
  const family = isIP(host);
  if (family === 0) return false;
  return loopback.check(host, family === 4 ? 'ipv4' : 'ipv6');
}

export async function startConsoleTcpServer(opts: ConsoleTcpServerOptions): Promise<ConsoleTcpServer> {
  const { host, port } = parseHostPort(opts.address);
  if (!opts.allowPublic && !isLoopbackHost(host)) {
    throw new UserError(
      `--console-tcp ${opts.address}: not a loopback address; the console stream is unauthenticated plaintext, so add --console-tcp-public to serve it there anyway`,
    );
  }
  const { logger } = opts;
  const nameTimeoutMs = opts.nameTimeoutMs ?? CONSOLE_TCP_DEFAULTS.nameTimeoutMs;
  const clients = new Set<Socket>();

  // Not allowHalfOpen: a client's FIN is the only sign it has gone while the
  // console is quiet (nothing written, so no RST), so FIN means closed.
  // (Tools that half-close at stdin EOF need e.g. `ncat --no-shutdown`.)
  const server = createServer({ allowHalfOpen: false }, (socket) => {
    clients.add(socket);
    socket.on('close', () => clients.delete(socket));
    serveClient(socket, { ...opts, nameTimeoutMs });
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new UserError(`--console-tcp ${opts.address}: ${errorMessage(err)}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => logger.error({ err }, 'console tcp server error'));

  const bound = server.address();
  const boundPort = typeof bound === 'object' && bound !== null ? bound.port : port;
  logger.warn(
    { address: opts.address, port: boundPort },
    'console tcp stream is unauthenticated plaintext: anyone who can connect to it can read any VM console',
  );

  let closing: Promise<void> | undefined;
  return {
    port: boundPort,
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of clients) s.destroy();
      });
      return closing;
    },
  };
}

function serveClient(socket: Socket, opts: ConsoleTcpServerOptions & { nameTimeoutMs: number }): void {
  const { hub, logger } = opts;
  const { maxNameBytes } = CONSOLE_TCP_DEFAULTS;
  const remote = formatRemote(socket);
  let buffered = Buffer.alloc(0);
  /** The name line has been dealt with (accepted or refused): input from now on is discarded. */
  let decided = false;
  let viewer: Viewer | undefined;

  socket.setNoDelay(true);
  // A client that resets or vanishes: nothing to report, 'close' follows.
  socket.on('error', () => {});

  const timer = setTimeout(
    () => refuse(`no VM name received within ${formatSeconds(opts.nameTimeoutMs)} (send NAME and a newline)`),
    opts.nameTimeoutMs,
  );
  timer.unref();

  function refuse(message: string, vm?: string): void {
    if (decided) return;
    decided = true;
    clearTimeout(timer);
    logger.info({ remote, vm, reason: message }, 'console tcp connection refused');
    endSoon(socket, `sshvisor: ${message}\n`);
  }

  function accept(raw: Buffer): void {
    const name = raw.toString('utf8').replace(/\r$/, '').trim();
    try {
      assertVmName(name);
    } catch (err) {
      refuse(errorMessage(err), name.slice(0, 40));
      return;
    }
    decided = true;
    clearTimeout(timer);
    logger.info({ remote, vm: name }, 'console tcp viewer connected');
    const existed = hub.get(name) !== undefined;
    const channel = hub.channel(name);
    const seededEnd = channel.ring.end;
    socket.on('drain', () => viewer?.drain());
    socket.once('close', () => {
      viewer?.close('client closed');
      if (!existed) releaseIfUnused(hub, name, channel, seededEnd);
    });
    viewer = channel.addViewer({
      write: (data) => {
        if (socket.destroyed || socket.writableEnded) throw new Error('client gone');
        return socket.write(data);
      },
      // The channel ended this viewer (hub shut down, name dropped).
      onClose: () => endSoon(socket),
      maxQueueBytes: opts.maxQueueBytes,
      overflow: 'skip',
      replayLines: opts.replayLines,
      readOnly: true,
    });
  }

  socket.on('data', (chunk: Buffer) => {
    if (decided) return; // read-only stream: anything after the name is discarded
    buffered = Buffer.concat([buffered, chunk]);
    const nl = buffered.indexOf(0x0a);
    if (nl >= 0 && nl < maxNameBytes) accept(buffered.subarray(0, nl));
    else if (buffered.length >= maxNameBytes) refuse(`expected a VM name and a newline within ${maxNameBytes} bytes`);
    if (decided) buffered = Buffer.alloc(0);
  });

  socket.on('close', () => {
    clearTimeout(timer);
    if (!decided) logger.info({ remote }, 'console tcp connection closed before sending a VM name');
  });
}

/** Send `last` (if any) and close; don't wait long for a client that is not reading. */
function endSoon(socket: Socket, last?: string): void {
  if (socket.destroyed) return;
  if (last === undefined) socket.end();
  else socket.end(last);
  setTimeout(() => socket.destroy(), 1000).unref();
}

/**
 * A channel this connection brought into memory (hub.channel() allocates a
 * ring) for a name nothing else used while it watched is dropped again, so
 * clients cycling through names cannot pile up rings. Nothing is lost: no
 * byte was written to it, so its history is exactly what is on disk.
 */
function releaseIfUnused(hub: ConsoleHub, name: string, channel: ConsoleChannel, seededEnd: number): void {
  if (
    hub.get(name) === channel &&
    channel.viewerCount === 0 &&
    channel.viewersTotal === 1 &&
    channel.vm === undefined &&
    channel.ring.end === seededEnd
  ) {
    hub.drop(name).catch(() => {});
  }
}

function formatRemote(socket: Socket): string {
  const addr = socket.remoteAddress ?? '?';
  return socket.remoteFamily === 'IPv6' ? `[${addr}]:${socket.remotePort}` : `${addr}:${socket.remotePort}`;
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
