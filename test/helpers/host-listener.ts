import { connect, createServer, type Server, type Socket } from 'node:net';
import { readFileSync, readdirSync } from 'node:fs';

/**
 * A TCP listener on the host's loopback that records every connection made
 * to it, greets it with one line and hangs up. Used to prove (or disprove)
 * that a guest can reach the host.
 */
export class HostListener {
  static readonly GREETING = 'hello-from-host';

  private constructor(
    private readonly server: Server,
    readonly port: number,
    /** Every connection accepted so far, in order. */
    readonly connections: Array<{ remoteAddress: string | undefined; at: number }>,
    private readonly sockets: Set<Socket>,
  ) {}

  static start(): Promise<HostListener> {
    return new Promise((resolve, reject) => {
      const conns: HostListener['connections'] = [];
      const sockets = new Set<Socket>();
      const server = createServer((socket) => {
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
        conns.push({ remoteAddress: socket.remoteAddress, at: Date.now() });
        socket.on('error', () => {});
        socket.end(`${HostListener.GREETING}\n`);
      });
      server.on('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const addr = server.address();
        resolve(new HostListener(server, typeof addr === 'object' && addr ? addr.port : 0, conns, sockets));
      });
    });
  }

  /** Stop listening and end the connections still open. */
  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

export interface QemuProcess {
  pid: number;
  args: string[];
  /** The VM name, from `-name sshvisor-NAME,...`. */
  vm: string | undefined;
  /** The `-netdev` argument, if any. */
  netdev: string | undefined;
}

/** Running QEMU processes whose command line mentions `dataDir` (i.e. started by that server). */
export function qemuProcesses(dataDir: string): QemuProcess[] {
  const found: QemuProcess[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let args: string[];
    try {
      args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
    } catch {
      continue; // exited meanwhile, or not ours to read
    }
    if (!args[0]?.includes('qemu-system') || !args.some((a) => a.includes(dataDir))) continue;
    const after = (flag: string): string | undefined => {
      const i = args.indexOf(flag);
      return i === -1 ? undefined : args[i + 1];
    };
    const netdev = after('-netdev');
    found.push({
      pid: Number(entry),
      args,
      vm: after('-name')?.match(/^sshvisor-([^,]+)/)?.[1],
      netdev,
    });
  }
  return found;
}

/** The first line a TCP server on host loopback sends (e.g. an SSH banner), or the error. */
export function readFirstLine(port: number, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no line from 127.0.0.1:${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      data += chunk;
      const nl = data.indexOf('\n');
      if (nl === -1) return;
      clearTimeout(timer);
      socket.destroy();
      resolve(data.slice(0, nl).replace(/\r$/, ''));
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
