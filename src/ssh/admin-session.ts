import type { ServerChannel, Session } from 'ssh2';
import type { Logger } from '../util/log.js';
import { errorMessage } from '../util/errors.js';
import {
  EXIT_FAILED,
  EXIT_USAGE,
  parseAdminCommand,
  runAdminCommand,
  splitCommandLine,
  usage,
  type AdminOps,
  type CommandIo,
} from '../ops/admin-commands.js';
import { quoteForDisplay } from './routing.js';
import { streamConsole, type ConsoleAccess } from './console-session.js';
import { serveCommandSession, type CommandTerminal } from './command-session.js';

/** What the `admin` account needs from the server. */
export interface AdminAccess {
  /** Whether a key (SSH wire blob) is one of the --admin-keys. */
  isAdminKey(blob: Buffer): boolean;
  ops: AdminOps;
  console: ConsoleAccess;
}

/**
 * `ssh admin@host CMD`: one operator command per session (ls, status, stop,
 * suspend, resume, rm, logs, watch); without a command, the list of them.
 */
export function serveAdminSession(session: Session, access: AdminAccess, log: Logger): void {
  serveCommandSession(
    session,
    (stream, command, terminal) => run(stream, command, access, terminal, log),
    (stream, err) => {
      log.error({ event: 'admin-error', err: errorMessage(err) }, 'admin command failed');
      end(stream, EXIT_FAILED, errorMessage(err));
    },
  );
}

function end(stream: ServerChannel, code: number, error?: string): void {
  if (stream.destroyed) return;
  if (error !== undefined) stream.stderr.write(`sshvisor: ${error}\r\n`);
  stream.exit(code);
  stream.end();
}

async function run(stream: ServerChannel, command: string, access: AdminAccess, pty: CommandTerminal, log: Logger): Promise<void> {
  const eol = pty ? '\r\n' : '\n';
  const argv = splitCommandLine(command);
  if (argv.length === 0) {
    stream.write(`sshvisor admin: run one command per login, e.g. ssh admin@host ls${eol}${usage(eol)}`);
    return end(stream, 0);
  }
  const parsed = parseAdminCommand(argv);
  if (!parsed.ok) {
    log.info({ event: 'admin-command', argv: argv.slice(0, 8), exit: EXIT_USAGE }, 'bad admin command');
    return end(stream, EXIT_USAGE, parsed.error);
  }
  const cmd = parsed.command;
  if (cmd.cmd === 'watch') {
    if (!access.ops.isKnown(cmd.name)) return end(stream, EXIT_USAGE, `no VM named ${quoteForDisplay(cmd.name)} (ls lists them)`);
    log.info({ event: 'admin-command', argv }, 'admin command');
    return streamConsole(stream, cmd.name, 'watch', access.console, log.child({ vm: cmd.name }));
  }
  const io: CommandIo = {
    out: (data) => {
      if (!stream.destroyed) stream.write(data);
    },
    err: (line) => {
      if (!stream.destroyed) stream.stderr.write(`sshvisor: ${line}\r\n`);
    },
    color: pty !== undefined,
    eol,
    columns: pty?.cols,
  };
  const started = Date.now();
  const code = await runAdminCommand(cmd, access.ops, io);
  log.info({ event: 'admin-command', argv, exit: code, ms: Date.now() - started }, 'admin command');
  end(stream, code);
}
