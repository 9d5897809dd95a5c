import { readFileSync, statSync } from 'node:fs';
import { UserError, errorMessage } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { parseAuthorizedKeys } from './authenticator.js';

/**
 * The operators' keys: an authorized_keys file (--admin-keys). Read at start
 * (a missing or unreadable file stops the server from starting) and again
 * whenever it changes, so adding or removing an operator needs no restart.
 * If it later becomes unreadable, no key is an admin key until it is fixed.
 */
export class AdminKeys {
  private keys: Buffer[] = [];
  private stamp = '';

  constructor(
    readonly path: string,
    private readonly logger: Logger,
  ) {
    try {
      this.reload();
    } catch (err) {
      throw new UserError(`--admin-keys ${path}: ${errorMessage(err)}`);
    }
  }

  isAdminKey(blob: Buffer): boolean {
    try {
      this.reload();
    } catch (err) {
      this.logger.error({ file: this.path, err: errorMessage(err) }, 'cannot read the admin keys; admin logins refused');
      this.keys = [];
      this.stamp = '';
      return false;
    }
    return this.keys.some((k) => k.equals(blob));
  }

  get count(): number {
    return this.keys.length;
  }

  private reload(): void {
    const st = statSync(this.path);
    const stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
    if (stamp === this.stamp) return;
    const { keys, errors, withOptions } = parseAuthorizedKeys(readFileSync(this.path, 'utf8'));
    for (const e of errors) this.logger.warn({ file: this.path, line: e.line }, `skipping admin key line: ${e.message}`);
    if (withOptions > 0) this.logger.warn({ file: this.path }, `${withOptions} admin key line(s) have options (from=, restrict, ...); sshvisor ignores them`);
    if (keys.length === 0) this.logger.warn({ file: this.path }, 'the admin keys file has no keys: nobody can log in as admin');
    this.logger.info({ file: this.path, keys: keys.length }, 'loaded admin keys');
    this.keys = keys;
    this.stamp = stamp;
  }
}
