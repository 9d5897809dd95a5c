import type { ServerChannel, Session } from 'ssh2';

/** The client's terminal, if it asked for one; `cols` follows its window changes. */
export type CommandTerminal = { cols: number } | undefined;

/**
 * A session that runs one command of the gateway's own (+status, +token,
 * admin), not a program in a VM. Terminal, environment, window changes and
 * signals are accepted (and only the terminal's width is kept); X11, agent
 * forwarding and subsystems are refused. The first shell or exec request runs
 * `run` (a shell with the command ""); a second is refused. A throw or
 * rejection from `run` goes to `onError`.
 */
export function serveCommandSession(
  session: Session,
  run: (stream: ServerChannel, command: string, terminal: CommandTerminal) => void | Promise<void>,
  onError: (stream: ServerChannel, err: unknown) => void,
): void {
  let terminal: CommandTerminal;
  let started = false;
  session.on('pty', (accept, _reject, info) => {
    terminal = { cols: info.cols };
    accept?.();
  });
  session.on('env', (accept) => accept?.());
  session.on('window-change', (accept, _reject, info) => {
    if (terminal) terminal.cols = info.cols;
    accept?.();
  });
  session.on('signal', (accept) => accept?.());
  session.on('x11', (_a, reject) => reject?.());
  session.on('auth-agent', (_a, reject) => reject?.());
  session.on('subsystem', (_a, reject) => reject?.());
  const begin = (stream: ServerChannel, command: string): void => {
    started = true;
    try {
      void Promise.resolve(run(stream, command, terminal)).catch((err: unknown) => onError(stream, err));
    } catch (err) {
      onError(stream, err);
    }
  };
  session.on('shell', (accept, reject) => (started ? reject?.() : begin(accept(), '')));
  session.on('exec', (accept, reject, info) => (started ? reject?.() : begin(accept(), info.command)));
}
