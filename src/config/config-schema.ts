import { z } from 'zod';
import { parseMaxStartups } from '../ssh/connection-limits.js';
import { IMAGE_NAME_PATTERN } from '../image/image-name.js';

/**
 * The `sshvisor serve` configuration: one zod schema, plus the little table
 * load-config.ts needs to read each field from flags, env and a JSON file.
 * Every message is written to follow `invalid --port "70000": `, so it reads
 * the same whichever source the bad value came from.
 */

export const ACCEL_MODES = ['auto', 'kvm', 'tcg'] as const;
export const AUTH_MODES = ['claim', 'keys', 'open'] as const;
export const RESTART_POLICIES = ['never', 'on-failure'] as const;
export const ON_OFF = ['on', 'off'] as const;
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

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kib: 1024, kb: 1000, m: 1024 ** 2, mib: 1024 ** 2, mb: 1000 ** 2, g: 1024 ** 3, gib: 1024 ** 3, gb: 1000 ** 3 };

/** A byte count written as 1048576, "1MiB", "512KiB" or "2M" (binary units unless "KB"/"MB"/"GB"). */
export function parseSize(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  const m = /^\s*(\d+)\s*([a-z]*)\s*$/i.exec(value);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  return m && unit !== undefined ? Number(m[1]) * unit : value;
}

function size(min: number, max: number) {
  const msg = `must be a size from ${min} bytes to ${max / 1024 ** 2} MiB, like 1MiB, 512KiB or a number of bytes`;
  return z.preprocess(parseSize, z.int({ error: msg }).min(min, { error: msg }).max(max, { error: msg }));
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
  /** Seconds without an SSH session before a VM is suspended to disk; 0 keeps it running. */
  idleTimeout: int(0),
  /** Seconds a suspended VM's snapshot is kept; then it is deleted (the disk stays). */
  snapshotRetention: int(1),
  /** Size of each VM's persistent disk, MiB. */
  diskSize: int(16, 1024 * 1024),
  imageDir: path,
  /** Seconds a guest may take to become reachable before the login fails. */
  bootTimeout: int(1, 3600),
  logLevel: oneOf(LOG_LEVELS),
  /** Bytes of console history kept in memory per VM. */
  consoleBuffer: size(4096, 1024 ** 3),
  /** Lines replayed to a console viewer before live output. */
  consoleReplay: int(0, 100_000),
  /** console.log is rotated past this size; a few old files are kept. */
  consoleLogSize: size(4096, 1024 ** 3),
  /** host:port for the plain-text, read-only console stream; off when absent. */
  consoleTcp: z.string().regex(/^(\[[0-9a-f:]+\]|[^:\s]+):\d{1,5}$/i, { error: 'must be HOST:PORT, e.g. 127.0.0.1:7022' }).optional(),
  /** Allow --console-tcp on a non-loopback address (it is unauthenticated plaintext). */
  consoleTcpPublic: z.boolean({ error: 'must be true or false' }),
  /** host:port for the HTTP API, /metrics and the web console; off when absent. */
  http: z.string().regex(/^(\[[0-9a-f:]+\]|[^:\s]+):\d{1,5}$/i, { error: 'must be HOST:PORT, e.g. 127.0.0.1:8080' }).optional(),
  /** Allow --http on a non-loopback address (plain HTTP: tokens would cross the network in the clear). */
  httpPublic: z.boolean({ error: 'must be true or false' }),
  /** Boot this kernel instead of the image in imageDir (e.g. a unikernel). */
  kernel: path.optional(),
  initrd: path.optional(),
  /** Kernel arguments for --kernel. */
  append: z.string().optional(),
  /** The guest has no SSH daemon: sessions go to its serial console. */
  consoleOnly: z.boolean({ error: 'must be true or false' }),
  /** Start new VMs as clones of a booted template snapshot instead of booting each. */
  templates: z.boolean({ error: 'must be true or false' }),
  /** authorized_keys file of the operators who may log in as `admin`; the admin account is off without it. */
  adminKeys: path.optional(),
  /** Seconds a running VM may go without answering (QMP, or its SSH daemon) before it is reported hung; 0 = not watched. */
  hungTimeout: int(0, 86400),
  /** never, or on-failure: restart a VM after a guest panic or a QEMU crash, with backoff. */
  restart: oneOf(RESTART_POLICIES),
  /** More restarts than this within restartWindow seconds is a crash loop: the VM stays crashed. */
  restartMax: int(1, 1000),
  restartWindow: int(1, 7 * 86400),
  /** Seconds a connection has to authenticate (OpenSSH LoginGraceTime); 0 = no limit. */
  loginGraceTime: int(0, 3600),
  /** Unauthenticated connections: START:RATE:FULL random early drop, or N (OpenSSH MaxStartups). */
  maxStartups: z.string({ error: 'must be N or START:RATE:FULL, e.g. 10:30:100' }).check((ctx) => {
    const parsed = parseMaxStartups(ctx.value);
    if ('error' in parsed) ctx.issues.push({ code: 'custom', message: parsed.error, input: ctx.value });
  }),
  /** Failed authentication attempts per connection (OpenSSH MaxAuthTries). */
  maxAuthTries: int(1, 1000),
  /** Failed authentications per source address per authFailureWindow; then its connections are refused. */
  maxAuthFailures: int(1, 1_000_000),
  authFailureWindow: int(1, 86_400),
  /** Session channels open at once on one connection (OpenSSH MaxSessions). */
  maxSessions: int(1, 10_000),
  /** Channels of any kind (sessions, -L forwards) open at once on one connection. */
  maxChannels: int(1, 10_000),
  /** Session channels open at once for one VM name over all its connections. */
  maxUserSessions: int(1, 1_000_000),
  /** ssh -A: sshd's AllowAgentForwarding. */
  agentForwarding: oneOf(ON_OFF),
  /** ssh -R: listeners inside the guest (sshd's AllowTcpForwarding remote). */
  remoteForwarding: oneOf(ON_OFF),
  /** The catalogue image (DATA_DIR/images/NAME) new VMs get. */
  image: z.string().regex(IMAGE_NAME_PATTERN, { error: 'must be an image name (lower-case letters, digits, . _ -)' }),
  /** Images a user may pick at first login with SetEnv SSHVISOR_IMAGE=NAME (besides the default image). */
  userImages: z.array(z.string().regex(IMAGE_NAME_PATTERN, { error: 'must be image names separated by commas' })),
  /** An ext4 root filesystem to import as image `rootfs` and make the default (the ssh-hypervisor seed's -rootfs). */
  rootfs: path.optional(),
  /** The most memory (MiB), vCPUs and disk (MiB) a VM created with its own shape may have. */
  maxMemory: int(64, 1024 * 1024),
  maxCpus: int(1, 256),
  maxDiskSize: int(16, 16 * 1024 * 1024),
});

export type ServeConfig = Readonly<z.infer<typeof serveConfigSchema>>;
export type ServeConfigKey = keyof ServeConfig;

/**
 * How text from a flag or env var turns into the JSON type the schema checks
 * (`path` is also made absolute), and the flag's help line.
 */
export interface FieldInfo {
  kind: 'string' | 'path' | 'int' | 'bool' | 'list';
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
  idleTimeout: { kind: 'int', arg: 'secs', help: 'suspend a VM to disk this long after its last session ends, 0 = never (default 300)' },
  snapshotRetention: { kind: 'int', arg: 'secs', help: 'delete a suspended VM\'s snapshot after this long; its disk stays (default 604800, 7 days)' },
  diskSize: { kind: 'int', arg: 'mib', help: 'persistent disk per VM in MiB (default 1024)' },
  imageDir: { kind: 'path', arg: 'dir', help: 'guest image (default DATA_DIR/images/default)' },
  bootTimeout: { kind: 'int', arg: 'secs', help: 'give up on a guest that is not up after this long (default 120)' },
  logLevel: { kind: 'string', arg: 'level', help: `${LOG_LEVELS.join(', ')} (default info)` },
  consoleBuffer: { kind: 'string', arg: 'size', help: 'console history kept in memory per VM (default 1MiB)' },
  consoleReplay: { kind: 'int', arg: 'lines', help: 'console lines replayed to a new viewer (default 100)' },
  consoleLogSize: { kind: 'string', arg: 'size', help: 'rotate DATA_DIR/vms/NAME/console.log past this size (default 4MiB)' },
  consoleTcp: { kind: 'string', arg: 'host:port', help: 'also serve consoles read-only as plain text on this address (off by default)' },
  consoleTcpPublic: { kind: 'bool', help: 'allow --console-tcp on a non-loopback address' },
  http: { kind: 'string', arg: 'host:port', help: 'serve the JSON API, /metrics and the web console on this address (off by default)' },
  httpPublic: { kind: 'bool', help: 'allow --http on a non-loopback address' },
  kernel: { kind: 'path', arg: 'file', help: 'boot this kernel (e.g. a unikernel) instead of the image' },
  initrd: { kind: 'path', arg: 'file', help: 'initramfs for --kernel' },
  append: { kind: 'string', arg: 'args', help: 'kernel arguments for --kernel' },
  consoleOnly: { kind: 'bool', help: 'the guest has no SSH daemon: ssh NAME@ opens its console' },
  templates: { kind: 'bool', help: 'start new VMs as clones of a booted template (default on)' },
  adminKeys: { kind: 'path', arg: 'file', help: 'authorized_keys file of the operators who may log in as admin (admin is off without it)' },
  hungTimeout: { kind: 'int', arg: 'secs', help: 'report a running VM as hung when it has not answered for this long, 0 = off (default 30)' },
  restart: { kind: 'string', arg: 'policy', help: 'never, or on-failure: restart a VM after a panic or crash, with backoff (default never)' },
  restartMax: { kind: 'int', arg: 'n', help: 'with on-failure, give up after this many restarts within --restart-window (default 5)' },
  restartWindow: { kind: 'int', arg: 'secs', help: 'the window --restart-max counts restarts in (default 600)' },
  loginGraceTime: { kind: 'int', arg: 'secs', help: 'close a connection that has not authenticated after this long, 0 = never (default 60)' },
  maxStartups: { kind: 'string', arg: 'start:rate:full', help: 'unauthenticated connections: drop new ones with RATE% chance past START, all past FULL (default 256:30:1024)' },
  maxAuthTries: { kind: 'int', arg: 'n', help: 'failed authentication attempts per connection (default 6)' },
  maxAuthFailures: { kind: 'int', arg: 'n', help: 'failed authentications per source address per --auth-failure-window before it is refused (default 30)' },
  authFailureWindow: { kind: 'int', arg: 'secs', help: 'window of --max-auth-failures; a refused source recovers as it passes (default 60)' },
  maxSessions: { kind: 'int', arg: 'n', help: 'sessions open at once on one connection (default 10)' },
  maxChannels: { kind: 'int', arg: 'n', help: 'channels (sessions and -L forwards) open at once on one connection (default 32)' },
  maxUserSessions: { kind: 'int', arg: 'n', help: 'sessions open at once for one VM name over all connections (default 256)' },
  agentForwarding: { kind: 'string', arg: 'on|off', help: 'let ssh -A reach the guest as SSH_AUTH_SOCK (default on)' },
  remoteForwarding: { kind: 'string', arg: 'on|off', help: 'let ssh -R listen on ports inside the user\'s VM, never on the host (default on)' },
  image: { kind: 'string', arg: 'name', help: 'image new VMs get, from `sshvisor image ls` (default: default)' },
  userImages: { kind: 'list', arg: 'a,b', help: 'images a user may pick at first login with ssh -o SetEnv=SSHVISOR_IMAGE=NAME (default: none but --image)' },
  rootfs: { kind: 'path', arg: 'file', help: 'import this ext4 root filesystem as image rootfs and make it the default' },
  maxMemory: { kind: 'int', arg: 'mib', help: 'most memory a VM created with its own shape may have (default 4096)' },
  maxCpus: { kind: 'int', arg: 'n', help: 'most vCPUs a VM created with its own shape may have (default 4)' },
  maxDiskSize: { kind: 'int', arg: 'mib', help: 'largest disk a VM created with its own shape may have (default 65536)' },
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
  snapshotRetention: 7 * 24 * 3600,
  diskSize: 1024,
  bootTimeout: 120,
  logLevel: 'info',
  consoleBuffer: 1024 ** 2,
  consoleReplay: 100,
  consoleLogSize: 4 * 1024 ** 2,
  consoleTcpPublic: false,
  httpPublic: false,
  consoleOnly: false,
  templates: true,
  hungTimeout: 30,
  restart: 'never',
  restartMax: 5,
  restartWindow: 600,
  loginGraceTime: 60,
  maxStartups: '256:30:1024',
  maxAuthTries: 6,
  maxAuthFailures: 30,
  authFailureWindow: 60,
  maxSessions: 10,
  maxChannels: 32,
  maxUserSessions: 256,
  agentForwarding: 'on',
  remoteForwarding: 'on',
  image: 'default',
  userImages: [],
  maxMemory: 4096,
  maxCpus: 4,
  maxDiskSize: 65536,
} as const satisfies Partial<ServeConfig>;
