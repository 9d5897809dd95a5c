import { existsSync, readFileSync } from 'node:fs';
import type { Command } from 'commander';
import ssh2 from 'ssh2';
import { Store, type GrantPermission } from '../store/store.js';
import { assertVmName } from '../vm/vm-name.js';
import { keyFingerprint } from '../ssh/key-fingerprint.js';
import { defaultDataDir } from '../util/paths.js';
import { UserError } from '../util/errors.js';

const PERMISSIONS: readonly GrantPermission[] = ['watch', 'logs'];

/** A public key given as a file path or as the `ssh-ed25519 AAAA...` line itself. */
function readPublicKey(arg: string): Buffer {
  const text = existsSync(arg) ? readFileSync(arg, 'utf8') : arg;
  const parsed = ssh2.utils.parseKey(text.trim());
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key instanceof Error || key.isPrivateKey()) {
    throw new UserError(`--key ${JSON.stringify(arg.slice(0, 60))}: not an OpenSSH public key line or .pub file`);
  }
  return key.getPublicSSH();
}

function permission(value: string): GrantPermission {
  if (!PERMISSIONS.includes(value as GrantPermission)) throw new UserError(`permission must be one of ${PERMISSIONS.join(', ')}, not ${JSON.stringify(value)}`);
  return value as GrantPermission;
}

/** `sshvisor grant` / `revoke`: let another key watch a VM's console or read its log (a customer, a colleague). */
export function registerGrantCommands(program: Command): void {
  program
    .command('grant')
    .description("let a key use NAME+watch or NAME+logs (e.g. a customer following their image's console)")
    .argument('<name>', 'VM name')
    .argument('<permission>', 'watch or logs')
    .requiredOption('--key <key>', 'public key: a .pub file or the key line')
    .option('--data-dir <dir>', 'data directory', defaultDataDir())
    .action((name: string, perm: string, opts: { key: string; dataDir: string }) => {
      assertVmName(name);
      const key = readPublicKey(opts.key);
      const store = Store.open(opts.dataDir);
      try {
        const added = store.grant(name, key, permission(perm));
        process.stdout.write(`${added ? 'granted' : 'already granted'}: ${perm} on ${name} to ${keyFingerprint(key)}\n`);
      } finally {
        store.close();
      }
    });
  program
    .command('revoke')
    .description('take back what grant gave')
    .argument('<name>', 'VM name')
    .argument('[permission]', 'watch or logs (default: both)')
    .requiredOption('--key <key>', 'public key: a .pub file or the key line')
    .option('--data-dir <dir>', 'data directory', defaultDataDir())
    .action((name: string, perm: string | undefined, opts: { key: string; dataDir: string }) => {
      assertVmName(name);
      const key = readPublicKey(opts.key);
      const store = Store.open(opts.dataDir);
      try {
        const n = store.revoke(name, key, perm === undefined ? undefined : permission(perm));
        process.stdout.write(`revoked ${n} grant(s) on ${name} from ${keyFingerprint(key)}\n`);
      } finally {
        store.close();
      }
    });
}
