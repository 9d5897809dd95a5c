import type { ClientChannel, ServerChannel, PseudoTtyInfo, Session } from 'ssh2';
import type { Logger } from '../util/log.js';
import { errorMessage } from '../util/errors.js';
import type { AcquireOptions, Lease } from '../manager/vm-manager.js';
import type { GuestClient } from '../manager/guest-connection.js';
import { BootProgress } from './boot-progress.js';
import { commandProblem, commandWithEnv, isAcceptableEnv } from './guest-env.js';

/** What the relay needs from the VM manager: a lease on a named VM (see VmManager.acquire). */
export type AcquireVm = (name: string, options?: AcquireOptions) => Promise<Lease>;

type GuestChannel = ClientChannel;

type Start =
  | { kind: 'shell' }
  | { kind: 'exec'; command: string }
  | { kind: 'subsystem'; name: string };

/**
 * One SSH session channel of a user, relayed to a session channel on the
 * guest's own SSH daemon: pty, environment, window changes, signals, EOF,
 * stdout/stderr and the exit status all pass through.
 */
export function relaySession(session: Session, vmName: string, acquire: AcquireVm, log: Logger): void {
  let pty: PseudoTtyInfo | undefined;
  const env: Record<string, string> = {};
  let guest: GuestChannel | undefined;
  let started = false;

  session.on('pty', (accept, _reject, info) => {
    pty = info;
    accept?.();
  });
  session.on('env', (accept, reject, info) => {
    if (!isAcceptableEnv(env, info.key, info.val)) return reject?.();
    env[info.key] = info.val;
    accept?.();
  });
  session.on('window-change', (accept, _reject, info) => {
    if (pty) Object.assign(pty, { rows: info.rows, cols: info.cols, height: info.height, width: info.width });
    guest?.setWindow(info.rows, info.cols, info.height, info.width);
    accept?.();
  });
  session.on('signal', (accept, _reject, info) => {
    guest?.signal(info.name);
    accept?.();
  });
  session.on('x11', (_accept, reject) => reject?.());
  session.on('auth-agent', (_accept, reject) => reject?.());

  const begin = (stream: ServerChannel, start: Start): void => {
    started = true;
    const tooLong = commandProblem(start.kind === 'exec' ? start.command : undefined, env, start.kind);
    if (tooLong) return fail(stream, tooLong);
    void run(stream, start).catch((err) => {
      log.error({ err: errorMessage(err) }, 'session relay failed');
      fail(stream, errorMessage(err));
    });
  };
  session.on('shell', (accept, reject) => (started ? reject?.() : begin(accept(), { kind: 'shell' })));
  session.on('exec', (accept, reject, info) => (started ? reject?.() : begin(accept(), { kind: 'exec', command: info.command })));
  session.on('subsystem', (accept, reject, info) => {
    if (started || info.name !== 'sftp') return reject?.();
    begin(accept(), { kind: 'subsystem', name: info.name });
  });

  async function run(stream: ServerChannel, start: Start): Promise<void> {
    const openedAt = Date.now();
    const progress = pty ? new BootProgress(stream, vmName) : undefined;
    let lease: Lease;
    try {
      lease = await acquire(vmName, { onWaiting: () => progress?.start(), onNotice: (line) => notice(stream, line) });
    } catch (err) {
      progress?.stop(false);
      return fail(stream, errorMessage(err));
    } finally {
      progress?.stop(true);
    }
    if (stream.destroyed) return lease.release();
    stream.once('close', () => lease.release());

    let opened: GuestSession;
    try {
      opened = await openGuestChannel(lease, start, pty, env);
    } catch (err) {
      return fail(stream, `cannot open a session in VM ${vmName}: ${errorMessage(err)}`);
    }
    const { channel, drained } = opened;
    guest = channel;
    log.info({ event: 'session-start', kind: start.kind, pty: !!pty }, 'session started');

    stream.pipe(channel);
    channel.pipe(stream, { end: false });
    channel.stderr.pipe(stream.stderr, { end: false });
    void opened.closed.then(async () => {
      // 'close' can come while output still sits in the pipes; the exit status must follow the last byte.
      await Promise.race([drained, new Promise((r) => setTimeout(r, 5000))]);
      const exit = opened.exit;
      if (exit && 'code' in exit) stream.exit(exit.code);
      else if (exit) stream.exit(exit.signal, exit.core, exit.message);
      stream.end();
      log.info({ event: 'session-end', kind: start.kind, exit, ms: Date.now() - openedAt }, 'session ended');
    });
    stream.once('close', () => {
      channel.close();
      // dropbear keeps a pty session until its command exits, whatever the client says (a `cat` waits on
      // the terminal for good): hang the lent connection up, as sshd hangs up a pty whose client went.
      const hangUp = setTimeout(opened.hangUp, HANG_UP_MS);
      void opened.closed.then(() => clearTimeout(hangUp));
    });
  }
}

/** How long a guest session may outlive its user's channel before its guest connection is ended. */
const HANG_UP_MS = 3000;

type GuestExit = { code: number } | { signal: string; core: boolean; message: string };

/** A guest channel with what it reported from its first packet on. */
interface GuestSession {
  channel: GuestChannel;
  exit?: GuestExit;
  closed: Promise<unknown>;
  drained: Promise<unknown>;
  /** End the guest connection under the session: its processes get SIGHUP, the channel closes. */
  hangUp: () => void;
}

/** A session channel in the guest, on a guest connection lent to this session alone (guest-session-pool.ts); given back when the channel closes. */
async function openGuestChannel(lease: Lease, start: Start, pty: PseudoTtyInfo | undefined, env: Record<string, string>): Promise<GuestSession> {
  if (!lease.guestSession) throw new Error('the VM has no SSH daemon');
  const lent = await lease.guestSession();
  try {
    const session = await openChannel(lent.client, start, pty, env);
    void session.closed.then(() => lent.release());
    // The same object: its `exit` is filled in as the guest reports it.
    return Object.assign(session, { hangUp: () => lent.release(true) });
  } catch (err) {
    lent.release(true);
    throw err;
  }
}

function openChannel(guest: GuestClient, start: Start, pty: PseudoTtyInfo | undefined, env: Record<string, string>): Promise<Omit<GuestSession, 'hangUp'>> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | undefined, channel: GuestChannel): void => {
      if (err) return reject(err);
      // Listen now, not after an await: a quick command's exit status and close can arrive in the same
      // read as the reply to exec, and ssh2 emits them before a promise continuation runs.
      const session: Omit<GuestSession, 'hangUp'> = {
        channel,
        // Plain promises, not events.once: that one rejects on 'error', and nothing may reject unheard here.
        closed: new Promise((r) => channel.once('close', r)),
        drained: Promise.all([new Promise((r) => channel.once('end', r)), new Promise((r) => channel.stderr.once('end', r))]),
      };
      channel.on('exit', (code: number | null, signal?: string, core?: boolean, message?: string) => {
        session.exit = code !== null && code !== undefined ? { code } : { signal: signal ?? 'KILL', core: !!core, message: message ?? '' };
      });
      resolve(session);
    };
    const ptyOpts = pty ? { rows: pty.rows, cols: pty.cols, height: pty.height, width: pty.width, term: pty.term, modes: pty.modes } : undefined;
    const withEnv = commandWithEnv(start.kind === 'exec' ? start.command : undefined, env);
    switch (start.kind) {
      case 'shell':
        if (withEnv === undefined) guest.shell(ptyOpts ?? false, done);
        else guest.exec(withEnv, { pty: ptyOpts }, done);
        break;
      case 'exec':
        guest.exec(withEnv ?? start.command, { pty: ptyOpts }, done);
        break;
      case 'subsystem':
        guest.subsys(start.name, done);
        break;
    }
  });
}

/** One line for the user on stderr, beside whatever the session prints. */
export function notice(stream: ServerChannel, line: string): void {
  if (!stream.destroyed) stream.stderr.write(`sshvisor: ${line}\r\n`);
}

/** End a user's session with a one-line reason on stderr and a non-zero status. */
export function fail(stream: ServerChannel, message: string): void {
  if (stream.destroyed) return;
  stream.stderr.write(`sshvisor: ${message}\r\n`);
  stream.exit(1);
  stream.end();
}
