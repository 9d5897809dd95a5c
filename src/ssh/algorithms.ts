import type { Algorithms } from 'ssh2';

/**
 * What the front door offers, restricted to what ssh-audit passes without a
 * failure (test/e2e/ssh-audit.test.ts proves it): curve25519 key exchange
 * (ssh2 adds OpenSSH's strict-kex marker, the Terrapin fix, itself), the
 * ed25519 host key, AEAD ciphers first, and encrypt-then-MAC MACs only.
 * AES-CTR with an ETM MAC stays for clients without AEAD ciphers (paramiko
 * 2.x). NIST curves, SHA-1, CBC, and encrypt-and-MAC MACs are not offered.
 * The gateway's own hop to a guest's dropbear (loopback) keeps ssh2's defaults.
 */
export const SERVER_ALGORITHMS: Algorithms = {
  kex: ['curve25519-sha256', 'curve25519-sha256@libssh.org'],
  serverHostKey: ['ssh-ed25519'],
  cipher: ['chacha20-poly1305@openssh.com', 'aes256-gcm@openssh.com', 'aes128-gcm@openssh.com', 'aes256-ctr', 'aes192-ctr', 'aes128-ctr'],
  hmac: ['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-512-etm@openssh.com'],
  // zlib only after authentication: compression never touches pre-auth input.
  compress: ['none', 'zlib@openssh.com'],
};
