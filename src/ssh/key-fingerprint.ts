import { createHash } from 'node:crypto';
import ssh2 from 'ssh2';
import type { ParsedKey } from 'ssh2';
import { UserError } from '../util/errors.js';

/**
 * Public keys arrive as ssh2 ParsedKeys (from files) or as the raw SSH wire
 * blob (ctx.key.data during auth). Everything sshvisor stores or compares is
 * derived from the blob, so both forms name the same key.
 */
export type SshPublicKey = ParsedKey | Buffer;

export function publicKeyBlob(key: SshPublicKey): Buffer {
  return Buffer.isBuffer(key) ? key : key.getPublicSSH();
}

/** OpenSSH's `SHA256:...` form, as `ssh-keygen -l` and sshd logs print it. */
export function keyFingerprint(key: SshPublicKey): string {
  const digest = createHash('sha256').update(publicKeyBlob(key)).digest('base64');
  return `SHA256:${digest.replace(/=+$/, '')}`;
}

/**
 * The authorized_keys form, `ssh-ed25519 AAAA...`, without a comment. The
 * type comes from inside the blob, not from the auth request's algorithm
 * name, which for RSA says rsa-sha2-256 rather than the key type.
 */
export function publicKeyLine(key: SshPublicKey): string {
  const parsed = Buffer.isBuffer(key) ? ssh2.utils.parseKey(key) : key;
  if (parsed instanceof Error) throw new UserError(`not an SSH public key: ${parsed.message}`);
  return `${parsed.type} ${publicKeyBlob(parsed).toString('base64')}`;
}
