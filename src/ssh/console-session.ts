import type { ServerChannel, Session } from 'ssh2';
import type { Logger } from '../util/log.js';
import { errorMessage } from '../util/errors.js';
import type { ConsoleHub } from '../console/console-hub.js';
import { formatNotice } from '../console/marker.js';
import type { Lease } from '../manager/vm-manager.js';
import { fail, notice, type AcquireVm } from './session-relay.js';
import { coalescingWriter } from './coalescing-writer.js';

export type ConsoleMode = 'console' | 'watch' | 'logs';

export interface ConsoleAccess {
  hub: ConsoleHub;
  acquire: AcquireVm;
  /** Lines of history a new viewer sees before live output. */
  replayLines: number;
}

/**
 * A session on a VM's serial console instead of a shell in it:
 * - console: interactive; boots the VM if needed, keystrokes go to the guest.
 * - watch: read-only and passive (never boots anything); many may watch.
 * - logs: the retained history, then exit 0, for `ssh alice+logs@host > crash.txt`.
 */
export function serveConsoleSession(
  session: Session,
  vmName: string,
  mode: ConsoleMode,
  access: ConsoleAccess,
  log: Logger,
  options: { execRefusal?: string } = {},
): void {
  let started = false;
  /** Set while an interactive console is attached: sends a serial break to its VM. */
  const breaker: { send?: () => void } = {};
  session.on('pty', (accept) => accept?.());
  // RFC 4335 (`~B` in OpenSSH's client): a serial break on an interactive console, so Linux's Magic
  // SysRq works from it; read-only viewers can send nothing, so it is a no-op there.
  session.on('break', (accept) => {
    // After the keystrokes that came before it: ssh2 emits a channel's data a tick later than a request.
    setImmediate(() => breaker.send?.());
    accept?.();
  });
  session.on('env', (accept) => accept?.());
  session.on('window-change', (accept) => accept?.());
  session.on('signal', (accept) => accept?.());
  session.on('x11', (_a, reject) => reject?.());
  session.on('auth-agent', (_a, reject) => reject?.());
  session.on('subsystem', (_a, reject) => reject?.());
  const begin = (stream: ServerChannel): void => {
    started = true;
    void streamConsole(stream, vmName, mode, access, log, breaker).catch((err) => fail(stream, errorMessage(err)));
  };
  session.on('shell', (accept, reject) => (started ? reject?.() : begin(accept())));
  session.on('exec', (accept, reject) => {
    if (started) return reject?.();
    if (options.execRefusal) return fail(accept(), options.execRefusal);
    begin(accept());
  });
}

/**
 * Serve one console mode on an accepted channel (also used by the admin's
 * `watch NAME`). With `breaker`, an interactive console sets its `send` to
 * send its VM a serial break.
 */
export async function streamConsole(stream: ServerChannel, vmName: string, mode: ConsoleMode, access: ConsoleAccess, log: Logger, breaker?: { send?: () => void }): Promise<void> {
  if (mode === 'logs') {
    stream.write(access.hub.history(vmName));
    stream.exit(0);
    stream.end();
    log.info({ event: 'console-logs' }, 'console history sent');
    return;
  }

  let lease: Lease | undefined;
  if (mode === 'console') {
    // The console is how one reaches a guest with no SSH daemon, or a broken one: don't wait for SSH.
    lease = await access.acquire(vmName, { guest: false, onNotice: (line) => notice(stream, line) });
    if (stream.destroyed) return lease.release();
    const vm = lease.vm;
    if (breaker) breaker.send = () => vm.sendBreak();
  }
  const channel = access.hub.channel(vmName);
  const readOnly = mode === 'watch';
  stream.write(
    formatNotice(
      readOnly
        ? `watching ${vmName}'s console, read-only: input is discarded; detach with ~.`
        : `${vmName}'s console: keystrokes go to the VM; detach with ~. (the VM keeps running)`,
    ),
  );
  const viewer = channel.addViewer({
    write: coalescingWriter(stream),
    onClose: (reason) => fail(stream, reason),
    replayLines: access.replayLines,
    readOnly,
    overflow: 'skip',
  });
  stream.on('drain', () => viewer.drain());
  stream.on('data', (data: Buffer) => {
    if (!readOnly) viewer.input(data);
  });
  log.info({ event: 'console-attach', mode }, 'console viewer attached');
  stream.once('close', () => {
    viewer.close();
    lease?.release();
    log.info({ event: 'console-detach', mode }, 'console viewer detached');
  });
}
