import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import type { AuthMode } from '../config/config-schema.js';
import type { GrantPermission, Store } from '../store/store.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { isValidVmName } from '../vm/vm-name.js';
import { keyFingerprint } from './key-fingerprint.js';

/**
 * Who may log in as which VM name, by public key only. Kept apart from
 * ssh2's connection object so the policy can be tested on its own; the
 * caller still has to verify the signature (ctx.signature) itself.
 */

export interface AuthDecision {
  allowed: boolean;
  /** One line for the log (and, if the caller chooses, the client). */
  reason: string;
  /** True when this call made the key the VM's owner. */
  claimed?: boolean;
}

export interface CheckOptions {
  /**
   * The client is only asking whether the key would do (publickey auth
   * without a signature). Answer without claiming: ownership must only go to
   * a key whose holder has proved it by signing.
   */
  probe?: boolean;
  /**
   * The login asks only to watch or read the console log (+watch, +logs):
   * owners may, and so may keys granted that permission. It never claims a name.
   */
  permission?: GrantPermission;
}

export interface Authenticator {
  check(vmName: string, keyAlgo: string, keyBlob: Buffer, options?: CheckOptions): AuthDecision;
}

export interface AuthenticatorOptions {
  mode: AuthMode;
  store: Pick<Store, 'claim' | 'ownersOf' | 'grantsFor'>;
  /** Only used in keys mode: KEYS_DIR/NAME is NAME's authorized_keys file. */
  keysDir: string;
  logger: Logger;
}

export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const { mode, store, keysDir, logger } = options;
  if (mode === 'open') {
    logger.warn('auth=open: ANY public key can log in as ANY name and get a VM; use only on a trusted network');
  }
  const keyFiles = mode === 'keys' ? new KeyFileCache(keysDir, logger) : undefined;

  return {
    check(vmName, keyAlgo, keyBlob, { probe = false, permission } = {}) {
      // Also what keeps keys mode's path inside keysDir: no '/', no '..'.
      if (!isValidVmName(vmName)) return { allowed: false, reason: 'invalid VM name' };
      const fingerprint = keyFingerprint(keyBlob);
      const log = logger.child({ vm: vmName, keyAlgo, fingerprint, probe });

      if (mode === 'open') return { allowed: true, reason: 'auth=open allows every key' };
      if (permission) {
        if (store.grantsFor(vmName).some((g) => g.fingerprint === fingerprint && g.permission === permission)) {
          return { allowed: true, reason: `key ${fingerprint} is granted ${permission} on ${vmName}` };
        }
        if (mode === 'claim') {
          const owner = store.ownersOf(vmName).some((o) => o.fingerprint === fingerprint);
          return owner
            ? { allowed: true, reason: `key ${fingerprint} owns ${vmName}` }
            : { allowed: false, reason: `key ${fingerprint} may not ${permission} ${vmName}` };
        }
      }

      if (mode === 'keys') {
        const found = keyFiles!.keysFor(vmName);
        if ('error' in found) return { allowed: false, reason: found.error };
        const allowed = found.keys.some((k) => k.equals(keyBlob));
        return allowed
          ? { allowed, reason: `key ${fingerprint} is listed in ${found.path}` }
          : { allowed, reason: `key ${fingerprint} is not listed in ${found.path}` };
      }

      if (probe) {
        const owners = store.ownersOf(vmName);
        if (owners.length === 0) return { allowed: true, reason: `${vmName} is unclaimed` };
        const owner = owners.some((o) => o.fingerprint === fingerprint);
        return owner
          ? { allowed: true, reason: `key ${fingerprint} owns ${vmName}` }
          : { allowed: false, reason: `${vmName} belongs to another key` };
      }
      switch (store.claim(vmName, keyBlob)) {
        case 'claimed':
          log.info('key claimed a new VM name');
          return { allowed: true, reason: `key ${fingerprint} claimed ${vmName}`, claimed: true };
        case 'owner':
          return { allowed: true, reason: `key ${fingerprint} owns ${vmName}` };
        case 'denied':
          return { allowed: false, reason: `${vmName} belongs to another key` };
      }
    },
  };
}

interface CachedFile {
  mtimeMs: number;
  size: number;
  ino: number;
  keys: Buffer[];
}

type KeysLookup = { path: string; keys: Buffer[] } | { error: string };

/** Per-name authorized_keys files, re-read only when a file changes. */
class KeyFileCache {
  private readonly cache = new Map<string, CachedFile>();

  constructor(
    private readonly keysDir: string,
    private readonly logger: Logger,
  ) {}

  keysFor(name: string): KeysLookup {
    const path = join(this.keysDir, name);
    try {
      const st = statSync(path);
      const cached = this.cache.get(name);
      // mtime alone misses a rewrite within the same timestamp tick; size and
      // inode catch most of those (and editors that replace the file).
      if (cached && cached.mtimeMs === st.mtimeMs && cached.size === st.size && cached.ino === st.ino) {
        return { path, keys: cached.keys };
      }
      const { keys, errors, withOptions } = parseAuthorizedKeys(readFileSync(path, 'utf8'));
      for (const e of errors) this.logger.warn({ file: path, line: e.line }, `skipping authorized_keys line: ${e.message}`);
      if (withOptions > 0) {
        this.logger.warn({ file: path }, `${withOptions} key line(s) have options (from=, restrict, ...); sshvisor ignores them`);
      }
      this.logger.info({ file: path, keys: keys.length }, 'loaded authorized keys');
      this.cache.set(name, { mtimeMs: st.mtimeMs, size: st.size, ino: st.ino, keys });
      return { path, keys };
    } catch (err) {
      this.cache.delete(name);
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return { error: `no keys file ${path}` };
      this.logger.error({ file: path, err: errorMessage(err) }, 'cannot read authorized keys');
      return { error: `cannot read ${path}: ${code ?? errorMessage(err)}` };
    }
  }
}

export interface ParsedAuthorizedKeys {
  /** Public key blobs (SSH wire format), in file order. */
  keys: Buffer[];
  errors: { line: number; message: string }[];
  /** How many key lines carried an options prefix. */
  withOptions: number;
}

/**
 * OpenSSH authorized_keys: `[options] type base64 [comment]` per line, '#'
 * comments and blank lines ignored. Options are skipped, not enforced.
 */
export function parseAuthorizedKeys(text: string): ParsedAuthorizedKeys {
  const result: ParsedAuthorizedKeys = { keys: [], errors: [], withOptions: 0 };
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    let key = parsePublicKey(line);
    if (key instanceof Error) {
      const rest = skipOptions(line);
      const withoutOptions = rest === '' ? key : parsePublicKey(rest);
      if (!(withoutOptions instanceof Error)) result.withOptions++;
      key = withoutOptions;
    }
    if (key instanceof Error) result.errors.push({ line: i + 1, message: key.message });
    else result.keys.push(key);
  });
  return result;
}

/** `type base64 [comment]` (any whitespace) to the key's blob, via ssh2. */
function parsePublicKey(text: string): Buffer | Error {
  const [type, data] = text.split(/\s+/);
  if (!type || !data) return new Error('expected "TYPE BASE64 [COMMENT]"');
  const parsed = ssh2.utils.parseKey(`${type} ${data}`);
  if (parsed instanceof Error) return parsed;
  // parseKey accepts other formats too; only a single public key belongs here.
  if (Array.isArray(parsed) || parsed.isPrivateKey()) return new Error('not a single public key');
  return parsed.getPublicSSH();
}

/** Drop the options field: everything up to the first whitespace outside double quotes. */
function skipOptions(line: string): string {
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted && c === '\\' && line[i + 1] === '"') i++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && (c === ' ' || c === '\t')) return line.slice(i).trimStart();
  }
  return '';
}
