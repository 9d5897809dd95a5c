/**
 * Environment requests (SetEnv/SendEnv; RFC 4254 §6.4) for a guest session.
 * They reach the guest's agent as they came, byte for byte, in the exec
 * request (docs/guest-protocol.md, `exec`). What a server owns is not the
 * client's to set, as with sshd: `SHELL`, `HOME`, `USER`, `LOGNAME`, `MAIL`
 * (and `PATH`, `TERM`, `SSH_AUTH_SOCK`, which the agent sets), so
 * `ssh -o SetEnv=SHELL=/x` cannot break its own login.
 */

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Bounds on what one session may set, so a client cannot make the request huge. */
export const MAX_ENV_VARS = 64;
export const MAX_ENV_BYTES = 32 * 1024;

/** Names the server sets itself; a client's value is refused (sshd never takes them from AcceptEnv). */
export const SERVER_OWNED_ENV: ReadonlySet<string> = new Set(['SHELL', 'HOME', 'USER', 'LOGNAME', 'MAIL', 'PATH', 'TERM', 'SSH_AUTH_SOCK']);

/** One session's accepted environment, in the order the client sent it. */
export type SessionEnv = Map<string, Buffer>;

/**
 * Whether `key=value` may join `env`: a shell variable name the server does
 * not own, no NUL in the value (execve could not pass it), and within
 * MAX_ENV_VARS and MAX_ENV_BYTES in all.
 */
export function isAcceptableEnv(env: SessionEnv, key: string, value: Buffer): boolean {
  if (!NAME.test(key) || SERVER_OWNED_ENV.has(key) || value.includes(0)) return false;
  const count = env.size + (env.has(key) ? 0 : 1);
  let bytes = key.length + value.length;
  for (const [k, v] of env) if (k !== key) bytes += k.length + v.length;
  return count <= MAX_ENV_VARS && bytes <= MAX_ENV_BYTES;
}
