import type { ServerChannel, Session } from 'ssh2';
import { serveCommandSession } from './command-session.js';
import type { Logger } from '../util/log.js';
import { errorMessage } from '../util/errors.js';
import { formatStatus, statusJson, type VmStatusReport } from '../ops/vm-status.js';
import { splitCommandLine } from '../ops/admin-commands.js';
import { quoteForDisplay } from './routing.js';
import { fail } from './session-relay.js';

/** What `NAME+status` needs: a report that never boots or resumes the VM. */
export interface StatusAccess {
  report(name: string): VmStatusReport;
}

/**
 * `ssh alice+status@host`: alice's VM as a short report, then exit 0.
 * `ssh alice+status@host json` prints the same as one line of JSON.
 */
export function serveStatusSession(session: Session, vmName: string, access: StatusAccess, log: Logger): void {
  serveCommandSession(
    session,
    (stream, command, terminal) => respond(stream, vmName, command, access, terminal !== undefined, log),
    (stream, err) => fail(stream, errorMessage(err)),
  );
}

function respond(stream: ServerChannel, vmName: string, command: string, access: StatusAccess, pty: boolean, log: Logger): void {
  const words = splitCommandLine(command);
  const json = words.length === 1 && (words[0] === 'json' || words[0] === '--json');
  if (words.length > 0 && !json) {
    stream.stderr.write(`sshvisor: ${vmName}+status takes no command, or "json" for JSON; not ${quoteForDisplay(command.trim())}\r\n`);
    stream.exit(2);
    stream.end();
    return;
  }
  const eol = pty ? '\r\n' : '\n';
  const report = access.report(vmName);
  stream.write(json ? JSON.stringify(statusJson(report)) + eol : formatStatus(report, { color: pty, eol }));
  stream.exit(0);
  stream.end();
  log.info({ event: 'status', json, state: report.state }, 'status report sent');
}
