import { mkdirSync, chmodSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Where sshvisor keeps its state unless told otherwise: root gets the
 * conventional system location, everyone else an XDG data dir.
 */
export function defaultDataDir(): string {
  if (process.env.SSHVISOR_DATA_DIR) return process.env.SSHVISOR_DATA_DIR;
  if (process.getuid?.() === 0) return '/var/lib/sshvisor';
  const xdg = process.env.XDG_DATA_HOME ?? join(homedir(), '.local', 'share');
  return join(xdg, 'sshvisor');
}

export function defaultImageDir(dataDir: string): string {
  return join(dataDir, 'images', 'default');
}

/** mkdir -p, then force the mode (mkdir's mode is filtered by the umask). */
export function ensurePrivateDir(path: string): string {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  chmodSync(path, 0o700);
  return path;
}
