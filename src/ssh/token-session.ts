import type { ServerChannel, Session } from 'ssh2';
import { serveCommandSession } from './command-session.js';
import type { Logger } from '../util/log.js';
import { errorMessage } from '../util/errors.js';
import type { TokenAccess } from '../store/store.js';
import { splitCommandLine } from '../ops/admin-commands.js';
import { quoteForDisplay } from './routing.js';
import { fail } from './session-relay.js';

/** What `NAME+token` needs: the HTTP API's token store. */
export interface TokenIssuer {
  issue(vm: string, access: TokenAccess, fingerprint: string): string;
  revoke(vm: string): number;
}

const USAGE = 'takes no command (a read-only token), "rw" (a token that may also type into the console and stop, suspend or resume), or "revoke" (revoke all of its tokens)';

/**
 * `ssh alice+token@host`: a new HTTP API token for alice's VM, printed once
 * (only its hash is kept). Read-only by default: it reads alice's status and
 * console. `... rw` gives an owner token; `... revoke` revokes every token
 * of the VM. Only owners of the name get this far (server.ts).
 */
export function serveTokenSession(session: Session, vmName: string, fingerprint: string, issuer: TokenIssuer, log: Logger): void {
  serveCommandSession(
    session,
    (stream, command, terminal) => respond(stream, vmName, command, fingerprint, issuer, log, terminal ? '\r\n' : '\n'),
    (stream, err) => fail(stream, errorMessage(err)),
  );
}

function respond(stream: ServerChannel, vmName: string, command: string, fingerprint: string, issuer: TokenIssuer, log: Logger, eol: string): void {
  const words = splitCommandLine(command);
  const word = words[0];
  if (words.length > 1 || (word !== undefined && !['rw', 'revoke'].includes(word))) {
    stream.stderr.write(`sshvisor: ${vmName}+token ${USAGE}; not ${quoteForDisplay(command.trim())}\r\n`);
    stream.exit(2);
    stream.end();
    return;
  }
  if (word === 'revoke') {
    const n = issuer.revoke(vmName);
    stream.write(`revoked ${n} token${n === 1 ? '' : 's'} of ${vmName}${eol}`);
    log.info({ event: 'api-tokens-revoked', count: n, fingerprint }, 'API tokens revoked');
  } else {
    const access: TokenAccess = word === 'rw' ? 'owner' : 'read';
    stream.write(issuer.issue(vmName, access, fingerprint) + eol);
    log.info({ event: 'api-token-issued', access, fingerprint }, 'API token issued');
  }
  stream.exit(0);
  stream.end();
}
