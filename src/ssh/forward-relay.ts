import type { Connection, TcpipRequestInfo, AcceptConnection, RejectConnection, ServerChannel } from 'ssh2';
import type { Logger } from '../util/log.js';
import { errorMessage } from '../util/errors.js';
import type { AcquireVm } from './session-relay.js';

/**
 * `ssh -L`: a direct-tcpip channel from the user becomes a direct-tcpip
 * channel opened by the gateway on the guest's SSH daemon, so "localhost"
 * means the guest's own loopback.
 */
export function relayDirectTcpip(
  accept: AcceptConnection<ServerChannel>,
  reject: RejectConnection,
  info: TcpipRequestInfo,
  vmName: string,
  acquire: AcquireVm,
  log: Logger,
): void {
  void (async () => {
    const lease = await acquire(vmName);
    if (!lease.guest) {
      lease.release();
      throw new Error('the VM has no SSH daemon to forward through');
    }
    lease.guest.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (err, guestCh) => {
      if (err) {
        lease.release();
        log.info({ event: 'forward-refused', dest: `${info.destIP}:${info.destPort}`, err: errorMessage(err) }, 'guest refused a forward');
        return reject();
      }
      const ch = accept();
      log.info({ event: 'forward-open', dest: `${info.destIP}:${info.destPort}` }, 'port forward opened');
      ch.pipe(guestCh).pipe(ch);
      let closed = false;
      const close = (): void => {
        if (closed) return;
        closed = true;
        ch.close();
        guestCh.close();
        lease.release();
      };
      ch.once('close', close);
      guestCh.once('close', close);
    });
  })().catch((err) => {
    log.info({ event: 'forward-refused', err: errorMessage(err) }, 'port forward refused');
    reject();
  });
}

export type { Connection };
