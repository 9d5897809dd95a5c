import { chmodSync, existsSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { UserError, errorMessage } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { CommandIo } from './admin-commands.js';

/**
 * The running server's control socket, DATA_DIR/control.sock (mode 0600, in
 * the 0700 data dir: only the user the server runs as, and root, get in).
 * `sshvisor ls`, `sshvisor stop NAME`, ... talk to it.
 *
 * Protocol: newline-delimited JSON. The client sends one request
 *   {"argv": ["stop", "alice"], "color": false, "columns": 120}
 * and receives any number of
 *   {"out": "<base64 bytes for stdout>"}   {"err": "one line for stderr"}
 * then {"exit": N}, after which the server closes the connection.
 */

export const CONTROL_SOCKET = 'control.sock';
/** sun_path is 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH = 107;
const MAX_REQUEST = 64 * 1024;

export interface ControlRequest {
  argv: string[];
  color?: boolean;
  columns?: number;
}

export type ControlMessage = { out: string } | { err: string } | { exit: number };

export const controlSocketPath = (dataDir: string): string => join(dataDir, CONTROL_SOCKET);

function checkPathLength(path: string): void {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    throw new UserError(`the control socket path ${path} is longer than ${MAX_SOCKET_PATH} bytes, the limit for a unix socket; use a shorter --data-dir`);
  }
}

/** Whether something accepts connections on `path`. */
function answering(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface ControlServerOptions {
  dataDir: string;
  /** Run one request's command; resolves with its exit status. */
  run(req: ControlRequest, io: CommandIo): Promise<number>;
  logger: Logger;
}

export interface ControlServer {
  readonly path: string;
  close(): Promise<void>;
}

export async function startControlServer(opts: ControlServerOptions): Promise<ControlServer> {
  const path = controlSocketPath(opts.dataDir);
  checkPathLength(path);
  if (existsSync(path)) {
    if (await answering(path)) throw new UserError(`another sshvisor server is already running with data dir ${opts.dataDir} (${path} answers)`);
    // Left behind by a server that did not exit cleanly.
    rmSync(path, { force: true });
  }
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    serveConnection(socket, opts);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new UserError(`cannot create the control socket ${path}: ${err.code ?? err.message}`)));
    server.listen(path, () => resolve());
  });
  // The umask already makes it 0600; say so explicitly whatever the umask.
  chmodSync(path, 0o600);
  return {
    path,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function serveConnection(socket: Socket, opts: ControlServerOptions): void {
  let buffered = '';
  let started = false;
  socket.setEncoding('utf8');
  socket.on('error', () => {});
  const send = (m: ControlMessage): void => {
    if (!socket.destroyed) socket.write(JSON.stringify(m) + '\n');
  };
  const finish = (code: number): void => {
    send({ exit: code });
    socket.end();
  };
  socket.on('data', (chunk: string) => {
    if (started) return;
    buffered += chunk;
    const nl = buffered.indexOf('\n');
    if (nl === -1) {
      if (buffered.length > MAX_REQUEST) {
        send({ err: 'request too long' });
        finish(2);
      }
      return;
    }
    started = true;
    let req: ControlRequest;
    try {
      req = parseRequest(buffered.slice(0, nl));
    } catch (err) {
      send({ err: `bad request: ${errorMessage(err)}` });
      return finish(2);
    }
    const io: CommandIo = {
      out: (data) => send({ out: Buffer.from(data).toString('base64') }),
      err: (line) => send({ err: line }),
      color: req.color === true,
      eol: '\n',
      columns: req.columns,
    };
    opts
      .run(req, io)
      .then(finish, (err) => {
        opts.logger.error({ event: 'control-error', err: errorMessage(err) }, 'control command failed');
        send({ err: errorMessage(err) });
        finish(1);
      });
  });
}

function parseRequest(line: string): ControlRequest {
  const v: unknown = JSON.parse(line);
  if (typeof v !== 'object' || v === null) throw new Error('expected a JSON object');
  const { argv, color, columns } = v as Record<string, unknown>;
  if (!Array.isArray(argv) || !argv.every((a) => typeof a === 'string')) throw new Error('"argv" must be an array of strings');
  return {
    argv: argv as string[],
    color: color === true,
    columns: typeof columns === 'number' && Number.isInteger(columns) && columns > 0 ? columns : undefined,
  };
}

export interface ControlClientIo {
  stdout(data: Buffer): void;
  stderr(line: string): void;
}

/**
 * Send one command to the server with data dir `dataDir`; resolves with its
 * exit status. No server: a UserError saying so in one line.
 */
export function sendControlCommand(dataDir: string, req: ControlRequest, io: ControlClientIo): Promise<number> {
  const path = controlSocketPath(dataDir);
  checkPathLength(path);
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let connected = false;
    let exit: number | undefined;
    let buffered = '';
    socket.setEncoding('utf8');
    socket.once('connect', () => {
      connected = true;
      socket.write(JSON.stringify(req) + '\n');
    });
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        let m: ControlMessage;
        try {
          m = JSON.parse(line) as ControlMessage;
        } catch {
          continue;
        }
        if ('out' in m) io.stdout(Buffer.from(m.out, 'base64'));
        else if ('err' in m) io.stderr(m.err);
        else if ('exit' in m) exit = m.exit;
      }
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (connected) return reject(new UserError(`lost the connection to the server (${path}): ${err.code ?? err.message}`));
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
        return reject(new UserError(`no sshvisor server is running with data dir ${dataDir} (no answer on ${path}); start one with \`sshvisor serve --data-dir ${dataDir}\``));
      }
      if (err.code === 'EACCES') return reject(new UserError(`permission denied on ${path}: run this as the user the server runs as`));
      reject(new UserError(`cannot connect to ${path}: ${err.code ?? err.message}`));
    });
    socket.once('close', () => {
      if (!connected) return;
      if (exit === undefined) reject(new UserError(`the server closed the connection without an answer (${path})`));
      else resolve(exit);
    });
  });
}
