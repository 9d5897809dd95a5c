import type { Readable } from 'node:stream';
import type { Connection, ServerChannel, Session } from 'ssh2';
import type { Logger } from '../util/log.js';
import { errorMessage } from '../util/errors.js';
import type { AcquireOptions, Lease } from '../manager/vm-manager.js';
import type { AgentExecOptions, AgentProcess } from '../guest/agent-connection.js';
import { BootProgress } from './boot-progress.js';
import { isAcceptableEnv, type SessionEnv } from './guest-env.js';
import { relayAgentStream } from './agent-forward.js';
import { cutNotice } from './cut-notice.js';
import type { GuestImage } from '../image/image.js';

/** What the relay needs from the VM manager: a lease on a named VM (see VmManager.acquire). */
export type AcquireVm = (name: string, options?: AcquireOptions) => Promise<Lease>;

type Start = { kind: 'shell' } | { kind: 'exec'; command: Buffer } | { kind: 'subsystem'; name: 'sftp' };

/**
 * The longest command accepted: what fits in one of sshd's packets
 * (PACKET_MAX_SIZE, 256 KiB, in OpenSSH's packet.c). sshd drops the whole
 * connection on a longer one; sshvisor takes packets up to about 2 MiB from an
 * authenticated client (server.ts) so that it can refuse the command with a
 * reason instead, before any VM is woken, and the connection's other
 * sessions live on.
 */
export const MAX_COMMAND_BYTES = 256 * 1024;

/** Session options the server decides (flags). */
export interface RelayPolicy {
  /** Honour `auth-agent-req@openssh.com` (ssh -A); sshd's AllowAgentForwarding, default yes. */
  agentForwarding: boolean;
  /** Resolves when this connection's earlier requests are done (its `ssh -R` listeners: RemoteForwards.settled). */
  earlierRequests?: () => Promise<void>;
  /** Why this connection's earlier requests were refused (e.g. `-R` turned off), told once on a session's stderr. */
  refusals?: () => string[];
  /** Images a user may name with SSHVISOR_IMAGE for a new VM (the server's default image among them). */
  userImages: readonly string[];
}

/**
 * One SSH session channel of a user (RFC 4254 §6), relayed to a process in
 * the guest through its agent (docs/guest-protocol.md, `exec`): pty with the
 * client's terminal modes, environment, window changes, signals, break
 * (RFC 4335), stdin EOF, `eow@openssh.com`, agent forwarding,
 * stdout/stderr apart, and the exit status or signal after the last byte.
 * A channel the client closes hangs the guest's session up, as sshd does.
 */
export function relaySession(session: Session, vmName: string, acquire: AcquireVm, log: Logger, client: Connection, policy: RelayPolicy): void {
  let pty: AgentExecOptions['pty'];
  const env: SessionEnv = new Map();
  let agentForward = false;
  let proc: AgentProcess | undefined;
  let started = false;

  session.on('pty', (accept, _reject, info) => {
    // Patched ssh2 (patches/): the RFC 4254 §8 encoded modes as the client sent them; the agent applies them.
    pty = { term: info.term, cols: info.cols, rows: info.rows, width: info.width, height: info.height, modes: info.rawModes ?? Buffer.alloc(0) };
    accept?.();
  });
  session.on('env', (accept, reject, info) => {
    const value = info.rawVal ?? Buffer.from(info.val);
    if (!isAcceptableEnv(env, info.key, value)) return reject?.();
    env.set(info.key, value);
    accept?.();
  });
  session.on('window-change', (accept, _reject, info) => {
    if (pty) Object.assign(pty, { rows: info.rows, cols: info.cols, height: info.height, width: info.width });
    proc?.resize({ rows: info.rows, cols: info.cols, height: info.height, width: info.width });
    accept?.();
  });
  session.on('signal', (accept, _reject, info) => {
    proc?.signal(info.name);
    accept?.();
  });
  session.on('break', (accept, _reject, info) => {
    // After the input that came before it: ssh2 emits a channel's data a tick later than a request.
    setImmediate(() => proc?.sendBreak(info.length));
    accept?.();
  });
  session.on('eow', () => {
    if (!proc) return;
    proc.outputClosed();
    proc.stdout.unpipe();
    proc.stdout.resume();
  });
  session.on('x11', (_accept, reject) => reject?.());
  let agentRefused = false;
  session.on('auth-agent', (accept, reject) => {
    // OpenSSH's client asks without wanting a reply, so a refusal alone would be silent: say it on stderr.
    if (!policy.agentForwarding) {
      agentRefused = true;
      return reject?.();
    }
    agentForward = true;
    accept?.();
  });

  const begin = (stream: ServerChannel, start: Start): void => {
    started = true;
    if (start.kind === 'exec' && start.command.length > MAX_COMMAND_BYTES) {
      return fail(stream, `the command is too long: ${start.command.length} bytes, at most ${MAX_COMMAND_BYTES} are taken`);
    }
    void run(stream, start).catch((err) => {
      log.error({ err: errorMessage(err) }, 'session relay failed');
      fail(stream, errorMessage(err));
    });
  };
  session.on('shell', (accept, reject) => (started ? reject?.() : begin(accept(), { kind: 'shell' })));
  session.on('exec', (accept, reject, info) => (started ? reject?.() : begin(accept(), { kind: 'exec', command: info.rawCommand ?? Buffer.from(info.command) })));
  session.on('subsystem', (accept, reject, info) => {
    if (started || info.name !== 'sftp') return reject?.();
    begin(accept(), { kind: 'subsystem', name: 'sftp' });
  });

  async function run(stream: ServerChannel, start: Start): Promise<void> {
    const openedAt = Date.now();
    const wanted = env.get(IMAGE_ENV)?.toString('utf8');
    if (wanted !== undefined && !policy.userImages.includes(wanted)) {
      return fail(stream, `image ${JSON.stringify(wanted)} is not offered here; ${IMAGE_ENV} may name: ${policy.userImages.join(', ')}`);
    }
    const progress = pty ? new BootProgress(stream, vmName) : undefined;
    let lease: Lease;
    try {
      lease = await acquire(vmName, { onWaiting: () => progress?.start(), onNotice: (line) => notice(stream, line), create: wanted ? { image: wanted } : undefined });
    } catch (err) {
      progress?.stop(false);
      return fail(stream, errorMessage(err));
    } finally {
      progress?.stop(true);
    }
    if (stream.destroyed) return lease.release();
    stream.once('close', () => lease.release());
    if (!lease.agent) return fail(stream, `the VM ${vmName} has no guest agent`);
    await policy.earlierRequests?.();
    if (agentRefused) notice(stream, 'agent forwarding (ssh -A) is turned off on this server');
    if (wanted && lease.shape.image !== wanted) notice(stream, `VM ${vmName} already exists with image ${lease.shape.image}; ${IMAGE_ENV} only chooses the image of a new VM`);
    for (const line of policy.refusals?.() ?? []) notice(stream, line);

    let p: AgentProcess;
    try {
      p = await lease.agent.exec({
        command: start.kind === 'exec' ? start.command : undefined,
        subsystem: start.kind === 'subsystem' ? start.name : undefined,
        // The image's environment (an OCI config's Env) first: what the client sends wins, as `docker run -e` over ENV.
        env: [...imageEnv(lease.image), ...[...env].map(([name, value]) => ({ name, value }))],
        cwd: lease.image.rootfs?.workingDir,
        pty,
        onAuthAgent: agentForward ? (s) => relayAgentStream(client, s, log) : undefined,
      });
    } catch (err) {
      return fail(stream, `cannot start a session in VM ${vmName}: ${errorMessage(err)}`);
    }
    proc = p;
    log.info({ event: 'session-start', kind: start.kind, pty: !!pty, pid: p.pid }, 'session started');
    if (stream.destroyed) return p.hangUp();

    stream.pipe(p.stdin);
    p.stdout.pipe(stream, { end: false });
    p.stderr.pipe(stream.stderr, { end: false });
    const ended = (r: Readable): Promise<void> => new Promise((res) => (r.readableEnded ? res() : r.once('close', res).once('end', res)));
    stream.once('close', () => p.hangUp());
    void Promise.all([p.closed, ended(p.stdout), ended(p.stderr)]).then(async () => {
      const exit = await p.exit;
      if (stream.destroyed) return;
      if (!exit) {
        // The guest went away under the session (suspend, stop, panic, lost agent): say so, as a hypervisor can.
        notice(stream, await cutNotice(vmName, lease.vm));
      } else if ('code' in exit) stream.exit(exit.code);
      else stream.exit(exit.signal, exit.core, '');
      stream.end();
      log.info({ event: 'session-end', kind: start.kind, exit, ms: Date.now() - openedAt }, 'session ended');
    });
  }
}

/** The variable a client sets (ssh -o SetEnv=SSHVISOR_IMAGE=NAME) to choose the image of its new VM. */
export const IMAGE_ENV = 'SSHVISOR_IMAGE';

/** An image's session environment (KEY=VALUE strings from its manifest) as exec env entries; malformed ones are skipped. */
function imageEnv(image: GuestImage): Array<{ name: string; value: Buffer }> {
  const out: Array<{ name: string; value: Buffer }> = [];
  for (const kv of image.rootfs?.env ?? []) {
    const eq = kv.indexOf('=');
    if (eq > 0) out.push({ name: kv.slice(0, eq), value: Buffer.from(kv.slice(eq + 1)) });
  }
  return out;
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
