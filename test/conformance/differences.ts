/**
 * The differences between sshvisor and OpenSSH's sshd that stay, by id.
 * docs/ssh-differences.md documents each (a `### id` heading with its
 * reason); the conformance suite checks that the doc and this table name the
 * same ids, and a case may only tolerate a difference listed here.
 */
export const DIFFERENCES = {
  'accept-env-all':
    'sshvisor takes every env name a client sends (SetEnv/SendEnv) except the server-owned ones; the baseline sshd, configured as Debian ships it, takes only AcceptEnv LANG LC_*.',
  'big-transfer-size':
    'A quick run may set CONFORMANCE_BIG_MIB below the default 128 MiB each way: TCG guests move ~5-15 MB/s.',
} as const;

export type DifferenceId = keyof typeof DIFFERENCES;
