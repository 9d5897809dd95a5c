import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Store, TokenAccess } from '../store/store.js';
import { UserError } from '../util/errors.js';

/**
 * Bearer tokens for the HTTP API. The admin token lives in
 * DATA_DIR/http-admin-token (0600, made on first start) and may do
 * everything. A VM token is issued by `ssh NAME+token@host` to an owner of
 * NAME and reaches that VM only: 'read' tokens read its status and console,
 * 'owner' tokens may also type into the console and stop, suspend or resume
 * it. Only a SHA-256 of a VM token is stored, so state.db leaks none.
 */

export const ADMIN_TOKEN_FILE = 'http-admin-token';

export type Principal = { kind: 'admin' } | { kind: 'vm'; vm: string; access: TokenAccess };

/** What a principal may do to one VM: 'ok', or why not (403 for another VM, or read-only). */
export type Decision = 'ok' | 'other-vm' | 'read-only';

const newSecret = (prefix: string): string => `${prefix}_${randomBytes(32).toString('base64url')}`;

export const hashToken = (token: string): string => createHash('sha256').update(token, 'utf8').digest('hex');

/** The admin token from DATA_DIR/http-admin-token, created (0600) if there is none. */
export function loadOrCreateAdminToken(dataDir: string): string {
  const path = join(dataDir, ADMIN_TOKEN_FILE);
  try {
    const token = readFileSync(path, 'utf8').trim();
    if (token.length < 16) throw new UserError(`${path} holds no usable token (delete it to have a new one made)`);
    chmodSync(path, 0o600);
    return token;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const token = newSecret('sva');
  // 'wx': never overwrite a token another process has just written.
  writeFileSync(path, token + '\n', { mode: 0o600, flag: 'wx' });
  return token;
}

/** The token in an `Authorization: Bearer TOKEN` header; undefined when there is none or it is not that form. */
export function bearerToken(header: string | undefined): string | undefined {
  const m = /^Bearer ([A-Za-z0-9._~+/=-]{1,512})$/.exec(header ?? '');
  return m?.[1];
}

export class TokenAuth {
  private readonly adminDigest: Buffer;

  constructor(
    adminToken: string,
    private readonly store: Pick<Store, 'findApiToken' | 'addApiToken' | 'revokeApiTokens'>,
  ) {
    this.adminDigest = createHash('sha256').update(adminToken).digest();
  }

  /** Who holds `token`, or undefined for an unknown, revoked or absent one. */
  resolve(token: string | undefined): Principal | undefined {
    if (token === undefined) return undefined;
    // Compared as digests: equal length, and the time taken says nothing about the admin token.
    if (timingSafeEqual(createHash('sha256').update(token).digest(), this.adminDigest)) return { kind: 'admin' };
    // Looked up by hash: the lookup's timing depends on the hash, which an attacker cannot steer toward a real token.
    const found = this.store.findApiToken(hashToken(token));
    return found && { kind: 'vm', vm: found.vm, access: found.access };
  }

  /** A new token for `vm`, asked for by the owner key `fingerprint`; shown once, stored as a hash. */
  issue(vm: string, access: TokenAccess, fingerprint: string): string {
    const token = newSecret(access === 'owner' ? 'svo' : 'svr');
    this.store.addApiToken(vm, hashToken(token), access, fingerprint);
    return token;
  }

  /** Revoke every token of `vm`; returns how many there were. */
  revoke(vm: string): number {
    return this.store.revokeApiTokens(vm);
  }
}

/** May `p` read `vm` (status, console)? */
export function mayRead(p: Principal, vm: string): Decision {
  if (p.kind === 'admin') return 'ok';
  return p.vm === vm ? 'ok' : 'other-vm';
}

/** May `p` control `vm` (type into its console, stop, suspend, resume)? */
export function mayControl(p: Principal, vm: string): Decision {
  const read = mayRead(p, vm);
  if (read !== 'ok' || p.kind === 'admin') return read;
  return p.access === 'owner' ? 'ok' : 'read-only';
}
