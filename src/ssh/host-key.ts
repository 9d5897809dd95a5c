import { chmodSync, closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { UserError } from '../util/errors.js';
import { ensurePrivateDir } from '../util/paths.js';
import { keyFingerprint, publicKeyLine } from './key-fingerprint.js';

export interface KeyPair {
  /** OpenSSH private key file contents, as ssh2 wants them (hostKeys, privateKey). */
  privateKey: Buffer;
  /** `ssh-ed25519 AAAA...` */
  publicKey: string;
  /** `SHA256:...`, what clients show when they first connect. */
  fingerprint: string;
  path: string;
}

export const HOST_KEY_FILE = 'ssh_host_ed25519_key';

/** The SSH server's identity. Changing it makes every client warn, so it is made once and kept. */
export function loadOrCreateHostKey(dataDir: string): KeyPair {
  return loadOrCreate(join(ensurePrivateDir(dataDir), HOST_KEY_FILE), 'sshvisor host key');
}

function loadOrCreate(path: string, comment: string): KeyPair {
  let privateKey: Buffer;
  try {
    privateKey = readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new UserError(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
    }
    privateKey = generateEd25519(comment);
    writePrivateFile(path, privateKey);
  }
  // A private key readable by others is a leaked key; OpenSSH refuses such files, we just fix the mode.
  chmodSync(path, 0o600);
  const parsed = ssh2.utils.parseKey(privateKey);
  if (parsed instanceof Error || Array.isArray(parsed) || !parsed.isPrivateKey()) {
    const why = parsed instanceof Error ? parsed.message : 'not a single private key';
    throw new UserError(`${path} is not a usable private key (${why}): move it away to generate a new one`);
  }
  return { privateKey, publicKey: publicKeyLine(parsed), fingerprint: keyFingerprint(parsed), path };
}

/** Write under a temporary name and rename, so a crash never leaves a truncated key behind. */
function writePrivateFile(path: string, contents: Buffer): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, contents);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

/**
 * ssh2's generator drops leading zero bytes of the public key, so about one
 * key in 256 cannot be read back by ssh2 or OpenSSH (mscdex/ssh2#1390):
 * generate until the key parses.
 */
function generateEd25519(comment: string): Buffer {
  for (;;) {
    const key = Buffer.from(ssh2.utils.generateKeyPairSync('ed25519', { comment }).private);
    const parsed = ssh2.utils.parseKey(key);
    if (!(parsed instanceof Error) && !Array.isArray(parsed) && parsed.isPrivateKey() && parsed.getPublicSSH().length === 51) return key;
  }
}
