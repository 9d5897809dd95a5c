import type { Connection } from 'ssh2';
import type { Duplex } from 'node:stream';
import type { Logger } from '../util/log.js';
import { errorMessage } from '../util/errors.js';
import { splice } from './splice.js';

/**
 * `ssh -A`: one connection a guest process made to its session's
 * SSH_AUTH_SOCK (the agent's `auth-agent` stream, docs/guest-protocol.md)
 * becomes an `auth-agent@openssh.com` channel to the user's client
 * (OpenSSH's PROTOCOL file, §2.1; the client connects it to its own agent).
 */
export function relayAgentStream(client: Connection, stream: Duplex, log: Logger): void {
  client.openssh_authAgent((err, channel) => {
    if (err) {
      log.info({ event: 'agent-forward-refused', err: errorMessage(err) }, 'the client refused an agent channel');
      stream.destroy();
      return;
    }
    splice(channel, stream);
  });
}
