import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import ssh2, { type AuthContext, type Connection } from 'ssh2';
import type { Logger } from '../util/log.js';
import type { Authenticator } from './authenticator.js';
import { keyFingerprint } from './key-fingerprint.js';
import { parseUsername, type Route } from './routing.js';
import { fail, relaySession, type AcquireVm } from './session-relay.js';
import { RemoteForwards, relayDirectTcpip } from './forward-relay.js';
import { serveConsoleSession, type ConsoleAccess } from './console-session.js';
import { serveStatusSession, type StatusAccess } from './status-session.js';
import { serveAdminSession, type AdminAccess } from './admin-session.js';
import type { GrantPermission } from '../store/store.js';
import { serveTokenSession, type TokenIssuer } from './token-session.js';
import { PreauthGate, sourceKey, type PreauthLimits } from './connection-limits.js';
import { ConnectionChannels, UserSessions, type ChannelLimits } from './channel-limits.js';
import { LimitLog } from './limit-log.js';
import { SERVER_ALGORITHMS } from './algorithms.js';

const { Server, utils } = ssh2;

/** ssh2's channel-open rejection, as patched (patches/): an RFC 4254 §5.1 reason code and description. */
type RejectWithReason = (reasonCode?: number, description?: string) => void;
/**
 * Inbound packet limit once a client has authenticated (before: 256 KiB, as
 * sshd's throughout): the most an OpenSSH client can put in one command from
 * its arguments (ARG_MAX, 2 MiB on Linux), and a little more.
 */
const AUTHENTICATED_MAX_PACKET = 2 * 1024 * 1024 + 64 * 1024;
/** SSH_OPEN_ADMINISTRATIVELY_PROHIBITED (RFC 4254 §5.1), what sshd answers past MaxSessions. */
const ADMINISTRATIVELY_PROHIBITED = 1;

/**
 * The software version in our SSH identification string (RFC 4253 §4.2).
 * OpenSSH's client tells a server its output is gone (`eow@openssh.com`, so
 * `ssh host yes | head -1` returns) only when the server's version matches
 * its compat pattern `OpenSSH*` (compat.c, SSH_NEW_OPENSSH); this matches it
 * and names no OpenSSH release, so no client or scanner assumes one's bugs.
 */
export const SERVER_IDENT = 'OpenSSH_sshvisor';

export interface SshFrontDoorOptions {
  hostKey: Buffer;
  authenticator: Authenticator;
  acquire: AcquireVm;
  logger: Logger;
  /** Shown to every client before authentication (e.g. the auth=open warning). */
  banner?: string;
  console: ConsoleAccess;
  /** The image has no guest agent (a unikernel): a shell session opens the console instead. */
  consoleOnly: boolean;
  /** ssh -A (--agent-forwarding). */
  agentForwarding: boolean;
  /** ssh -R into the guest (--remote-forwarding). */
  remoteForwarding: boolean;
  /** What SSHVISOR_IMAGE may name at a first login (--image and --user-images). */
  userImages: readonly string[];
  /** NAME+status. */
  status: StatusAccess;
  /** The `admin` account (--admin-keys); without it every admin login is refused. */
  admin?: AdminAccess;
  /** NAME+token: HTTP API tokens (--http); without it +token is refused. */
  tokens?: TokenIssuer;
  /** Counters for /metrics. */
  stats?: { connection(): void; authFailure(): void };
  /** Pre-authentication and channel limits (README "Limits and hardening"). */
  limits: PreauthLimits & ChannelLimits;
}

/**
 * Why a connection that authenticated gets no VM. Names that can never be
 * valid are refused after authentication rather than during it, because
 * only then can the client be told why in words (stderr of its session).
 */
type Routing = { route: Route; fingerprint?: string } | { refusal: string };

/**
 * The SSH server: connection limits, authentication, routing by username,
 * and the channel relays. The TCP listener is ours, so the pre-auth limits
 * act on a socket before ssh2 spends a key exchange on it; accepted sockets
 * are handed to ssh2 with its public injectSocket().
 */
export function createSshServer(opts: SshFrontDoorOptions): NetServer {
  const limitLog = new LimitLog(opts.logger);
  const gate = new PreauthGate(opts.limits, limitLog);
  const userSessions = new UserSessions();
  const server = new Server({ hostKeys: [opts.hostKey], ident: SERVER_IDENT, banner: opts.banner, algorithms: SERVER_ALGORITHMS }, (client, info) => {
    const log = opts.logger.child({ conn: `${info.ip}:${info.port}` });
    opts.stats?.connection();
    log.info({ event: 'connect', client: info.header.versions.software }, 'connection');
    let routing: Routing | undefined;
    let user = '';

    client.on('authentication', (ctx) => {
      let result: Routing | undefined;
      try {
        result = authenticate(ctx, opts, log);
      } catch (err) {
        // The store could not be written (a full data dir: SQLITE_FULL): this login fails, the server goes on.
        log.error({ event: 'auth-error', err: String(err) }, 'authentication failed with an error');
        return ctx.reject(['publickey']);
      }
      if (!result) {
        // "none" is how every client asks which methods exist; OpenSSH does not count it either.
        if (ctx.method !== 'none') opts.stats?.authFailure();
        const more = ctx.method === 'none' || gate.authFailed(info.ip, info.port);
        ctx.reject(['publickey']);
        if (!more) client.end();
        return;
      }
      // Before accept(): ssh2 emits 'ready' from inside it.
      routing = result;
      user = ctx.username;
      ctx.accept();
    });
    client.on('ready', () => {
      gate.authenticated(info.ip, info.port);
      // An authenticated user may send a command too long for sshd's 256 KiB packets: take it, to
      // refuse it with a reason (session-relay.ts) instead of dropping the connection and its sessions.
      client.setMaxPacketSize(AUTHENTICATED_MAX_PACKET);
      if (!routing) return client.end();
      const vm = 'route' in routing && routing.route.kind === 'vm' ? routing.route.vm : undefined;
      const channels = new ConnectionChannels(opts.limits, userSessions, limitLog, sourceKey(info.ip), info.port, vm);
      client.once('close', () => channels.closeAll());
      onReady(client, routing, channels, opts, log.child({ user }));
    });
    client.on('error', (err) => log.info({ event: 'conn-error', err: err.message }, 'connection error'));
    client.on('close', () => log.info({ event: 'disconnect' }, 'connection closed'));
  });
  const listener = createNetServer({ pauseOnConnect: false }, (socket) => {
    if (gate.admit(socket)) server.injectSocket(socket);
  });
  return listener;
}

/** Decide one authentication attempt: how to route the connection if it is accepted, undefined to reject. */
function authenticate(ctx: AuthContext, opts: Pick<SshFrontDoorOptions, 'authenticator' | 'admin' | 'tokens'>, log: Logger): Routing | undefined {
  if (ctx.method !== 'publickey') {
    // Password and keyboard-interactive are never accepted; the rejection tells the client what is.
    return undefined;
  }
  const parsed = parseUsername(ctx.username);
  const signed = ctx.signature !== undefined;
  if (signed && !verifySignature(ctx)) {
    log.warn({ event: 'auth', result: 'bad-signature', user: ctx.username.slice(0, 64) }, 'bad signature');
    return undefined;
  }
  const fingerprint = keyFingerprint(ctx.key.data);
  if (!parsed.ok) {
    // Let the holder of any key in, only to be told why the name is wrong.
    if (signed) log.info({ event: 'auth', result: 'refused-name', fingerprint, reason: parsed.reason }, 'invalid username');
    return { refusal: parsed.reason };
  }
  if (parsed.route.kind === 'admin') {
    if (!opts.admin) {
      if (signed) log.info({ event: 'auth', result: 'refused-admin', fingerprint }, 'admin login refused');
      return { refusal: 'the admin account is not enabled on this server' };
    }
    if (!opts.admin.isAdminKey(ctx.key.data)) {
      // Let it in to be told: a plain "Permission denied" would not say that admin exists but wants another key.
      if (signed) log.warn({ event: 'auth', result: 'refused-admin', fingerprint, reason: 'not an admin key' }, 'admin login refused');
      return {
        refusal: `key ${fingerprint} is not an admin key on this server (holding several keys? pick the admin one: ssh -i KEY -o IdentitiesOnly=yes admin@host)`,
      };
    }
    if (signed) log.info({ event: 'auth', result: 'accepted', admin: true, fingerprint }, 'admin login accepted');
    return { route: parsed.route, fingerprint };
  }
  const { mode } = parsed.route;
  // +status shows what +logs shows and a little more: owners, and keys granted logs or watch, may read it.
  const permissions: (GrantPermission | undefined)[] = mode === 'watch' || mode === 'logs' ? [mode] : mode === 'status' ? ['logs', 'watch'] : [undefined];
  let decision = { allowed: false, reason: '' };
  for (const permission of permissions) {
    // Without --http, +token is refused after login: checked like a probe, so it never claims the name.
    // With it, +token claims like a login: a token for a name nobody owns would read its future owner's VM.
    decision = opts.authenticator.check(parsed.route.vm, ctx.key.algo, ctx.key.data, { probe: !signed || (mode === 'token' && !opts.tokens), permission });
    if (decision.allowed) break;
  }
  if (!decision.allowed) {
    if (signed) log.info({ event: 'auth', result: 'denied', vm: parsed.route.vm, fingerprint, reason: decision.reason }, 'auth denied');
    return undefined;
  }
  if (signed) log.info({ event: 'auth', result: 'accepted', vm: parsed.route.vm, fingerprint, reason: decision.reason }, 'auth accepted');
  return { route: parsed.route, fingerprint };
}

function verifySignature(ctx: AuthContext): boolean {
  if (ctx.method !== 'publickey' || !ctx.signature || !ctx.blob) return false;
  const key = utils.parseKey(ctx.key.data);
  if (key instanceof Error) return false;
  return key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) === true;
}

function onReady(client: Connection, routing: Routing, channels: ConnectionChannels, opts: SshFrontDoorOptions, log: Logger): void {
  const admin = 'route' in routing && routing.route.kind === 'admin' ? opts.admin : undefined;
  const route = 'route' in routing && routing.route.kind === 'vm' ? routing.route : undefined;
  const refusal =
    'refusal' in routing
      ? routing.refusal
      : route && route.mode === 'token' && !opts.tokens
        ? 'the HTTP API is not enabled on this server (sshvisor serve --http), so it has no tokens to give'
        : undefined;

  const remote = route && route.mode === 'shell' && !refusal && !opts.consoleOnly && opts.remoteForwarding ? new RemoteForwards(client, route.vm, opts.acquire, log.child({ vm: route.vm })) : undefined;
  client.on('session', (accept, reject) => {
    const allowed = channels.openSession();
    // As sshd past MaxSessions: the channel is refused (an OpenSSH ControlMaster client then opens a
    // connection of its own), with the reason as the refusal's description, which the client prints.
    if (!allowed.ok) return (reject as RejectWithReason)(ADMINISTRATIVELY_PROHIBITED, allowed.reason);
    const session = accept();
    session.once('close', allowed.release);
    if (admin && !refusal) return serveAdminSession(session, admin, log.child({ admin: true, fingerprint: 'route' in routing ? routing.fingerprint : undefined }));
    if (refusal || !route) return refuseSession(session, refusal ?? 'no VM for this login');
    const vlog = log.child({ vm: route.vm });
    if (route.mode === 'status') return serveStatusSession(session, route.vm, opts.status, vlog);
    if (route.mode === 'token' && opts.tokens) {
      return serveTokenSession(session, route.vm, 'fingerprint' in routing ? (routing.fingerprint ?? '') : '', opts.tokens, vlog);
    }
    if (route.mode === 'console' || route.mode === 'watch' || route.mode === 'logs') {
      return serveConsoleSession(session, route.vm, route.mode, opts.console, vlog);
    }
    if (opts.consoleOnly) {
      return serveConsoleSession(session, route.vm, 'console', opts.console, vlog, {
        execRefusal: `the image of ${route.vm} has no shell to run commands in; use \`ssh -t ${route.vm}@host\` for its console`,
      });
    }
    relaySession(session, route.vm, opts.acquire, vlog, client, {
      agentForwarding: opts.agentForwarding,
      earlierRequests: remote && (() => remote.settled()),
      refusals: () => told.splice(0),
      userImages: opts.userImages,
    });
  });
  client.on('tcpip', (accept, reject, info) => {
    if (refusal || !route || route.mode !== 'shell' || opts.consoleOnly) return reject();
    const release = channels.openChannel();
    if (!release) return reject();
    const counted = (): ssh2.ServerChannel => {
      const ch = accept();
      ch.once('close', release);
      return ch;
    };
    const refused = (): void => {
      release();
      reject();
    };
    relayDirectTcpip(counted, refused, info, route.vm, opts.acquire, log.child({ vm: route.vm }));
  });
  let refusedRequests = 0;
  /** Reasons for refused requests, told once on the connection's next session (a global request's refusal has no text). */
  const told: string[] = [];
  let toldRemote = false;
  client.on('request', (accept, reject, name, info) => {
    if (!remote && name === 'tcpip-forward' && route?.mode === 'shell' && !opts.remoteForwarding && !toldRemote) {
      toldRemote = true;
      told.push('remote port forwarding (ssh -R) is turned off on this server');
    }
    if (remote && name === 'tcpip-forward') {
      const { bindAddr, bindPort } = info as { bindAddr: string; bindPort: number };
      void remote.listen(bindAddr, bindPort).then(
        (port) => accept?.(bindPort === 0 ? port : undefined),
        (err) => {
          log.info({ event: 'remote-forward-refused', bind: `${bindAddr}:${bindPort}`, err: String(err) }, 'remote port forward refused');
          reject?.();
        },
      );
      return;
    }
    if (remote && name === 'cancel-tcpip-forward') {
      const { bindAddr, bindPort } = info as { bindAddr: string; bindPort: number };
      return remote.cancel(bindAddr, bindPort) ? accept?.() : reject?.();
    }
    // Logged once per connection: a client may loop.
    if (refusedRequests++ === 0) log.info({ event: 'global-request-refused', request: name }, 'refused global request');
    reject?.();
  });
}

/** A session that can only be told why it gets nothing. */
function refuseSession(session: ssh2.Session, reason: string): void {
  const refuse = (acc: (() => ssh2.ServerChannel) | undefined): void => {
    if (acc) fail(acc(), reason);
  };
  session.on('pty', (acc) => acc?.());
  session.on('env', (acc) => acc?.());
  session.on('shell', (acc) => refuse(acc));
  session.on('exec', (acc) => refuse(acc));
  session.on('subsystem', (acc) => refuse(acc));
}
