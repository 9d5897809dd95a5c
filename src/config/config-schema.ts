import { z } from 'zod';

/**
 * The `sshvisor serve` configuration: one zod schema, plus the little table
 * load-config.ts needs to read each field from flags, env and a JSON file.
 * Every message is written to follow `invalid --port "70000": `, so it reads
 * the same whichever source the bad value came from.
 */

export const ACCEL_MODES = ['auto', 'kvm', 'tcg'] as const;
export const AUTH_MODES = ['claim', 'keys', 'open'] as const;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export type AuthMode = (typeof AUTH_MODES)[number];

function int(min: number, max?: number) {
  const msg = max === undefined ? `must be an integer >= ${min}` : `must be an integer from ${min} to ${max}`;
  const atLeast = z.int({ error: msg }).min(min, { error: msg });
  return max === undefined ? atLeast : atLeast.max(max, { error: msg });
}

function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, { error: `must be one of ${values.join(', ')}` });
}

const path = z.string({ error: 'must be a path' }).min(1, { error: 'must be a non-empty path' });

export const serveConfigSchema = z.strictObject({
  /** Address the SSH server binds. */
  listen: z.union([z.ipv4(), z.ipv6(), z.hostname()], { error: 'must be an IP address or hostname' }),
  port: int(1, 65535),
  dataDir: path,
  /** Guest memory, MiB. */
  memory: int(64, 65536),
  cpus: int(1, 64),
  maxVms: int(1),
  accel: oneOf(ACCEL_MODES),
  allowInternet: z.boolean({ error: 'must be true or false' }),
  auth: oneOf(AUTH_MODES),
  /** authorized_keys files, one per VM name; only read when auth=keys. */
  keysDir: path,
  /** Seconds without an SSH session before a VM is stopped; 0 never stops it. */
  idleTimeout: int(0),
  /** Size of each VM's persistent disk, MiB. */
  diskSize: int(16, 1024 * 1024),
  imageDir: path,
  /** Seconds a guest may take to become reachable before the login fails. */
  bootTimeout: int(1, 3600),
  logLevel: oneOf(LOG_LEVELS),
});

export type ServeConfig = Readonly<z.infer<typeof serveConfigSchema>>;
export type ServeConfigKey = keyof ServeConfig;

/**
 * How text from a flag or env var turns into the JSON type the schema checks
 * (`path` is also made absolute), and the flag's help line.
 */
export interface FieldInfo {
  kind: 'string' | 'path' | 'int' | 'bool';
  help: string;
  /** Value placeholder in --help; absent for boolean flags. */
  arg?: string;
}

export const SERVE_FIELDS: { readonly [K in ServeConfigKey]: FieldInfo } = {
  listen: { kind: 'string', arg: 'addr', help: 'address to listen on (default 127.0.0.1)' },
  port: { kind: 'int', arg: 'port', help: 'SSH port (default 2222)' },
  dataDir: { kind: 'path', arg: 'dir', help: 'state directory (default ~/.local/share/sshvisor, /var/lib/sshvisor for root)' },
  memory: { kind: 'int', arg: 'mib', help: 'memory per VM in MiB (default 256)' },
  cpus: { kind: 'int', arg: 'n', help: 'vCPUs per VM (default 1)' },
  maxVms: { kind: 'int', arg: 'n', help: 'most VMs running at once (default 8)' },
  accel: { kind: 'string', arg: 'mode', help: 'auto, kvm or tcg (default auto)' },
  allowInternet: { kind: 'bool', help: 'let guests reach the internet (default: no)' },
  auth: { kind: 'string', arg: 'mode', help: 'claim (first key owns a name), keys (KEYS_DIR/NAME) or open (default claim)' },
  keysDir: { kind: 'path', arg: 'dir', help: 'authorized_keys file per VM name, for --auth keys (default DATA_DIR/keys)' },
  idleTimeout: { kind: 'int', arg: 'secs', help: 'stop a VM this long after its last session ends, 0 = never (default 300)' },
  diskSize: { kind: 'int', arg: 'mib', help: 'persistent disk per VM in MiB (default 1024)' },
  imageDir: { kind: 'path', arg: 'dir', help: 'guest image (default DATA_DIR/images/default)' },
  bootTimeout: { kind: 'int', arg: 'secs', help: 'give up on a guest that is not up after this long (default 120)' },
  logLevel: { kind: 'string', arg: 'level', help: `${LOG_LEVELS.join(', ')} (default info)` },
};

/** Defaults that do not depend on another field (keysDir and imageDir follow dataDir). */
export const STATIC_DEFAULTS = {
  listen: '127.0.0.1',
  port: 2222,
  memory: 256,
  cpus: 1,
  maxVms: 8,
  accel: 'auto',
  allowInternet: false,
  auth: 'claim',
  idleTimeout: 300,
  diskSize: 1024,
  bootTimeout: 120,
  logLevel: 'info',
} as const satisfies Partial<ServeConfig>;
