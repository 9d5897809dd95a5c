import type { AcceptConnection, Connection, RejectConnection, ServerChannel, TcpipRequestInfo } from 'ssh2';
import type { Logger } from '../util/log.js';
import { errorMessage } from '../util/errors.js';
import type { Lease } from '../manager/vm-manager.js';
import type { AcquireVm } from './session-relay.js';
import { splice } from './splice.js';

/**
 * `ssh -L` and `ssh -W` (RFC 4254 §7.2, direct-tcpip): the guest's agent
 * connects from inside the VM (docs/guest-protocol.md, `tcp-connect`), so
 * "localhost" means the guest's own loopback. The channel holds a lease, so
 * a VM with an open tunnel is in use.
 */
export function relayDirectTcpip(
  accept: AcceptConnection<ServerChannel>,
  reject: RejectConnection,
  info: TcpipRequestInfo,
  vmName: string,
  acquire: AcquireVm,
  log: Logger,
): void {
  const dest = `${info.destIP}:${info.destPort}`;
  void (async () => {
    const lease = await acquire(vmName);
    try {
      if (!lease.agent) throw new Error('the VM has no guest agent to forward through');
      const guest = await lease.agent.connectTcp(info.destIP, info.destPort);
      const ch = accept();
      log.info({ event: 'forward-open', dest }, 'port forward opened');
      splice(ch, guest, () => lease.release());
    } catch (err) {
      lease.release();
      throw err;
    }
  })().catch((err) => {
    log.info({ event: 'forward-refused', dest, err: errorMessage(err) }, 'port forward refused');
    reject();
  });
}

/**
 * `ssh -R` (RFC 4254 §7.1, tcpip-forward): the guest's agent listens inside
 * the VM (`tcp-listen`); each connection it accepts becomes a
 * forwarded-tcpip channel to the user's client. Nothing listens on the host.
 * A listener holds a lease on the VM until it is cancelled or the user's
 * connection ends.
 */
export class RemoteForwards {
  private readonly listeners = new Map<string, { close(): void; lease: Lease }>();
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(
    private readonly client: Connection,
    private readonly vmName: string,
    private readonly acquire: AcquireVm,
    private readonly log: Logger,
  ) {
    client.once('close', () => this.closeAll());
  }

  /**
   * Resolves once every listen() asked for so far has succeeded or failed.
   * sshd binds a tcpip-forward before it reads the client's next message, so
   * a command started after `ssh -R` finds the port open; sessions wait for
   * this to keep that order.
   */
  settled(): Promise<void> {
    return Promise.allSettled([...this.inFlight]).then(() => undefined);
  }

  /** Start listening at `bindAddr:bindPort` in the guest; resolves with the bound port (for port 0). Throws with the guest's reason. */
  listen(bindAddr: string, bindPort: number): Promise<number> {
    const p = this.open(bindAddr, bindPort);
    this.inFlight.add(p);
    void p.catch(() => undefined).finally(() => this.inFlight.delete(p));
    return p;
  }

  private async open(bindAddr: string, bindPort: number): Promise<number> {
    const host = bindAddr === '' || bindAddr === 'localhost' ? '127.0.0.1' : bindAddr;
    const lease = await this.acquire(this.vmName);
    try {
      if (!lease.agent) throw new Error('the VM has no guest agent');
      const listener = await lease.agent.listenTcp(host, bindPort, (stream, origin) => {
        this.client.forwardOut(bindAddr, port, origin.host, origin.port, (err, ch) => {
          if (err) return void stream.destroy();
          splice(ch, stream);
        });
      });
      const port = listener.port;
      this.listeners.set(`${bindAddr}:${port}`, { close: () => listener.close(), lease });
      this.log.info({ event: 'remote-forward-open', bind: `${host}:${port}` }, 'remote port forward listening in the guest');
      return port;
    } catch (err) {
      lease.release();
      throw err;
    }
  }

  /** cancel-tcpip-forward: false when no such listener. */
  cancel(bindAddr: string, bindPort: number): boolean {
    const key = `${bindAddr}:${bindPort}`;
    const l = this.listeners.get(key);
    if (!l) return false;
    this.listeners.delete(key);
    end(l);
    return true;
  }

  private closeAll(): void {
    for (const l of this.listeners.values()) end(l);
    this.listeners.clear();
  }
}

/** Stop a guest listener and give back its hold on the VM. */
function end(l: { close(): void; lease: Lease }): void {
  l.close();
  l.lease.release();
}
