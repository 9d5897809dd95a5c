/**
 * Environment requests (SetEnv/SendEnv) for the guest. The image's dropbear
 * ignores "env" channel requests, so the gateway carries them in the command
 * it asks the guest to run: `export K='v'; <command>`. The user's command is
 * still interpreted by the guest shell exactly as it would be without env.
 */

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Bounds on what one session may set, so a client cannot make the command line huge. */
export const MAX_ENV_VARS = 64;
export const MAX_ENV_BYTES = 32 * 1024;

export function isAcceptableEnv(env: Readonly<Record<string, string>>, key: string, value: string): boolean {
  if (!NAME.test(key) || value.includes('\0')) return false;
  const count = Object.keys(env).length + (key in env ? 0 : 1);
  const bytes = Object.entries({ ...env, [key]: value }).reduce((n, [k, v]) => n + k.length + v.length, 0);
  return count <= MAX_ENV_VARS && bytes <= MAX_ENV_BYTES;
}

function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The command for the guest: `command` (or a login shell when undefined) with `env` exported first. */
export function commandWithEnv(command: string | undefined, env: Readonly<Record<string, string>>): string | undefined {
  const entries = Object.entries(env);
  if (entries.length === 0) return command;
  const exports = `export ${entries.map(([k, v]) => `${k}=${shellQuote(v)}`).join(' ')}`;
  return `${exports}; ${command ?? 'exec "$SHELL" -l'}`;
}

/** The longest command the guest's dropbear runs (its MAX_CMD_LEN); past it, dropbear only says "Unable to exec". */
export const MAX_GUEST_COMMAND = 9000;

/** Why the guest would refuse this command with `env` exported first, or undefined. Checked before any VM is woken. */
export function commandProblem(command: string | undefined, env: Readonly<Record<string, string>>, kind: 'shell' | 'exec' | 'subsystem'): string | undefined {
  if (kind === 'subsystem') return undefined;
  const full = commandWithEnv(command, env);
  const bytes = full === undefined ? 0 : Buffer.byteLength(full);
  if (bytes <= MAX_GUEST_COMMAND) return undefined;
  const what = Object.keys(env).length > 0 ? 'the command with its environment (SetEnv/SendEnv)' : 'the command';
  return `${what} is too long: ${bytes} bytes, the VM's SSH daemon takes at most ${MAX_GUEST_COMMAND}`;
}
