/**
 * The two SSH servers the ssh bench talks to, each a real process in a
 * process group of its own (so a kill of the group also takes what it
 * started, e.g. sshvisor's QEMU):
 *
 *   - SshvisorServe: `node dist/src/cli/main.js serve` with a private data dir.
 *   - BaselineSshd: OpenSSH's own sshd -D on loopback with a generated config,
 *     host key and AuthorizedKeysFile.
 *
 * Plus the OpenSSH client options both are driven with.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freeLoopbackPort } from '../../src/vm/qemu/free-port.js';
import { HOST_KEY_FILE } from '../../src/ssh/host-key.js';
import { atCleanup, trackGroup, trackPid, untrackGroup, untrackPid } from './cleanup.js';

/** A new passphrase-less ed25519 key pair; returns the private key path (public: PATH.pub). */
export function makeKey(path: string, comment = 'sshvisor-bench'): string {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path], { stdio: 'ignore' });
  return path;
}

/**
 * OpenSSH client options for a bench connection: no user or system
 * ssh_config (-F /dev/null), so both servers get exactly the client's
 * compiled-in defaults (ciphers, KEX, MACs, IPQoS) and nothing else.
 */
export function clientOptions(o: { key: string; port: number; knownHosts: string; logLevel?: string }): string[] {
  return [
    '-F', '/dev/null',
    '-o', `Port=${o.port}`,
    '-o', `IdentityFile=${o.key}`,
    '-o', 'IdentitiesOnly=yes',
    '-o', 'IdentityAgent=none',
    '-o', 'BatchMode=yes',
    '-o', 'StrictHostKeyChecking=accept-new',
    '-o', `UserKnownHostsFile=${o.knownHosts}`,
    '-o', 'ConnectTimeout=30',
    '-o', `LogLevel=${o.logLevel ?? 'ERROR'}`,
  ];
}

/** Negotiated algorithms, from the `debug1: kex: ...` lines of `ssh -v`. */
export interface Negotiated {
  serverSoftware?: string;
  kex?: string;
  hostKey?: string;
  cipherClientToServer?: string;
  cipherServerToClient?: string;
  macClientToServer?: string;
  macServerToClient?: string;
}

export function parseNegotiated(verboseStderr: string): Negotiated {
  const m = (re: RegExp): RegExpExecArray | null => re.exec(verboseStderr);
  const cs = m(/kex: client->server cipher: (\S+) MAC: (\S+)/);
  const sc = m(/kex: server->client cipher: (\S+) MAC: (\S+)/);
  return {
    serverSoftware: m(/remote software version (\S+)/)?.[1],
    kex: m(/kex: algorithm: (\S+)/)?.[1],
    hostKey: m(/kex: host key algorithm: (\S+)/)?.[1],
    cipherClientToServer: cs?.[1],
    macClientToServer: cs?.[2],
    cipherServerToClient: sc?.[1],
    macServerToClient: sc?.[2],
  };
}

function waitForLine(child: ChildProcess, label: string, seen: () => boolean, log: () => string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const tail = (): string => log().trim().split('\n').slice(-8).join('\n    ');
    const timer = setTimeout(() => finish(new Error(`${label} did not start listening within ${timeoutMs / 1000} s:\n    ${tail()}`)), timeoutMs);
    const onData = (): void => {
      if (seen()) finish();
    };
    const onExit = (code: number | null, signal: string | null): void =>
      finish(new Error(`${label} exited (${signal ?? `code ${code}`}) before listening:\n    ${tail()}`));
    const onError = (err: Error): void => finish(new Error(`cannot run ${label}: ${err.message}`));
    function finish(err?: Error): void {
      clearTimeout(timer);
      child.stderr!.off('data', onData);
      child.off('exit', onExit);
      child.off('error', onError);
      if (err) reject(err);
      else resolve();
    }
    child.stderr!.on('data', onData);
    child.once('exit', onExit);
    child.once('error', onError);
  });
}

/** SIGTERM the leader, give it `graceMs` to exit, then SIGKILL whatever is left of its group. */
async function stopGroup(child: ChildProcess | undefined, graceMs: number): Promise<void> {
  if (!child || child.pid === undefined) return; // never spawned: nothing to stop
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
  untrackGroup(child);
}

export interface SshvisorServeOptions {
  /** An empty dir of the bench's: gets data/ (state, keys, VM disks). */
  dir: string;
  imageDir: string;
  /** Passed as --accel only when set: otherwise the server picks (auto). */
  accel?: string;
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
}

/** `sshvisor serve` from this build's dist/, on a free loopback port. */
export class SshvisorServe {
  readonly dataDir: string;
  port = 0;
  log = '';
  /** The accelerator the server reported in its "listening" event. */
  accel = '';
  private child?: ChildProcess;
  private qemuPids = new Set<number>();

  private constructor(private readonly opts: SshvisorServeOptions) {
    this.dataDir = join(opts.dir, 'data');
  }

  static mainJs(): string {
    return fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
  }

  static async start(opts: SshvisorServeOptions): Promise<SshvisorServe> {
    const s = new SshvisorServe(opts);
    try {
      await s.spawn();
    } catch (err) {
      // A server that started but never said it listens must not keep the bench alive.
      await s.stop();
      throw err;
    }
    return s;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  private async spawn(): Promise<void> {
    mkdirSync(this.dataDir, { recursive: true, mode: 0o700 });
    // The server would make these itself with ssh2's generateKeyPairSync('ed25519'), which emits
    // an unparseable key ~1 time in 256 (mscdex/ssh2#1390) and the server then refuses to start.
    // ssh-keygen's keys are what a real install might hold anyway.
    for (const file of [HOST_KEY_FILE]) {
      makeKey(join(this.dataDir, file), `sshvisor-bench ${file}`);
      rmSync(join(this.dataDir, `${file}.pub`), { force: true });
    }
    this.port = await freeLoopbackPort();
    const args = [
      SshvisorServe.mainJs(), 'serve',
      '--data-dir', this.dataDir,
      '--image-dir', this.opts.imageDir,
      '--listen', '127.0.0.1',
      '--port', String(this.port),
      // The bench's sessions are seconds apart; the VM must not be stopped between them.
      '--idle-timeout', '0',
      '--log-level', 'info',
      ...(this.opts.accel ? ['--accel', this.opts.accel] : []),
      ...(this.opts.extraArgs ?? []),
    ];
    const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', 'ignore', 'pipe'], env: this.opts.env ?? process.env });
    this.child = child;
    trackGroup(child);
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (this.log += s));
    await waitForLine(child, 'sshvisor serve', () => this.log.includes('"event":"listening"'), () => this.log, 30_000);
    this.accel = String(this.events('listening')[0]?.accel ?? '');
  }

  /** Lines of the server's JSON log with this `event`. */
  events(event: string): Array<Record<string, unknown>> {
    return this.log
      .split('\n')
      .filter((l) => l.includes(`"event":"${event}"`))
      .map((l) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch {
          return {};
        }
      });
  }

  /**
   * The QEMU pid of VM `name`, from its pid file, if it runs. Also tracked
   * for cleanup, in case QEMU ever leaves the server's process group.
   */
  qemuPid(name: string): number | undefined {
    try {
      const pid = Number(readFileSync(join(this.dataDir, 'vms', name, 'qemu.pid'), 'utf8').trim());
      if (!(pid > 0)) return undefined;
      if (!this.qemuPids.has(pid)) {
        this.qemuPids.add(pid);
        trackPid(pid);
      }
      return pid;
    } catch {
      return undefined;
    }
  }

  /**
   * SIGKILL the server process alone, as a crash would: its QEMUs run in
   * process groups of their own and outlive it by design (they stay tracked,
   * and stop() still kills them). Resolves once the server has exited.
   */
  async killGatewayOnly(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }

  /** SIGTERM (the server powers its VMs off), then SIGKILL of the group after 30 s; QEMU pids seen are checked too. */
  async stop(): Promise<void> {
    await stopGroup(this.child, 30_000);
    for (const pid of this.qemuPids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone, as it should be
      }
      untrackPid(pid);
    }
    this.qemuPids.clear();
  }
}

const PRIVSEP_DIR = '/run/sshd';
const SFTP_SERVERS = ['/usr/lib/openssh/sftp-server', '/usr/libexec/openssh/sftp-server', '/usr/libexec/sftp-server'];

/** Fast teardown: SIGKILL the server's process group (its QEMUs with it), for a bench whose VMs' state goes with its temp dir anyway. */
export async function killServer(sv: SshvisorServe | undefined): Promise<void> {
  if (!sv) return;
  if (sv.pid !== undefined) {
    try {
      process.kill(-sv.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await sv.stop();
}

export interface BaselineSshdOptions {
  /** An empty dir of the bench's: gets the config, host key and authorized_keys. */
  dir: string;
  /** Public key line(s) allowed to log in as root. */
  authorizedKeys: string;
  sshd?: string;
  /** More sshd_config lines; a keyword given here replaces the default line with that keyword. */
  extraConfig?: string[];
}

/** OpenSSH's sshd in the foreground (-D -e) on a free 127.0.0.1 port, as root. */
export class BaselineSshd {
  port = 0;
  log = '';
  readonly configFile: string;
  readonly sshd: string;
  /** Set while /run/sshd (privilege separation dir) is ours to remove: removes it. */
  private dropPrivsepDir?: () => void;
  private child?: ChildProcess;

  private constructor(private readonly opts: BaselineSshdOptions) {
    this.configFile = join(opts.dir, 'sshd_config');
    this.sshd = opts.sshd ?? '/usr/sbin/sshd';
  }

  static async start(opts: BaselineSshdOptions): Promise<BaselineSshd> {
    const s = new BaselineSshd(opts);
    try {
      await s.spawn();
    } catch (err) {
      // A server that started but never said it listens must not keep the bench alive.
      await s.stop();
      throw err;
    }
    return s;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get sftpServer(): string {
    return SFTP_SERVERS.find((p) => existsSync(p)) ?? 'internal-sftp';
  }

  private async spawn(): Promise<void> {
    if (process.getuid?.() !== 0) throw new Error('the sshd baseline needs root (privilege separation, root login)');
    if (!existsSync(this.sshd)) throw new Error(`no sshd at ${this.sshd} (install openssh-server)`);
    const hostKey = makeKey(join(this.opts.dir, 'ssh_host_ed25519_key'), 'sshvisor-bench-sshd');
    const authorizedKeys = join(this.opts.dir, 'authorized_keys');
    writeFileSync(authorizedKeys, this.opts.authorizedKeys.trim() + '\n', { mode: 0o600 });
    this.port = await freeLoopbackPort();
    const extra = this.opts.extraConfig ?? [];
    const overridden = new Set(extra.map((l) => l.split(/\s+/)[0]!.toLowerCase()));
    const config = [
      ...extra,
      `ListenAddress 127.0.0.1:${this.port}`,
      `HostKey ${hostKey}`,
      'PidFile none',
      `AuthorizedKeysFile ${authorizedKeys}`,
      // The key files live in a temp dir under /tmp, which StrictModes would refuse.
      'StrictModes no',
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'UseDNS no',
      'PrintMotd no',
      'PrintLastLog no',
      'X11Forwarding no',
      'MaxStartups 100',
      // bash sources ~/.bashrc for commands sshd runs (Debian's SSH_SOURCE_BASHRC), but not in a
      // nested shell: SHLVL=1 makes it one. A host's rc files (here: pyenv init, ~100 ms) are not
      // SSH cost, and the guest's busybox `sh -c` reads none either.
      'SetEnv SHLVL=1',
      // Same sftp-server binary as the guest image ships (openssh-sftp-server).
      `Subsystem sftp ${this.sftpServer}`,
      'LogLevel INFO',
    ]
      // sshd takes some keywords from their first line and others from their last: keep one of each.
      .filter((line, i) => i < extra.length || !overridden.has(line.split(/\s+/)[0]!.toLowerCase()))
      .concat('')
      .join('\n');
    writeFileSync(this.configFile, config, { mode: 0o600 });
    if (!existsSync(PRIVSEP_DIR)) {
      mkdirSync(PRIVSEP_DIR, { mode: 0o755 });
      // rmdir, not rm -r: only if nothing else has put anything in it since. Also on Ctrl-C.
      const remove = (): void => {
        try {
          rmdirSync(PRIVSEP_DIR);
        } catch {
          // in use or gone: leave it
        }
      };
      const unhook = atCleanup(remove);
      this.dropPrivsepDir = () => {
        unhook();
        remove();
      };
    }
    try {
      execFileSync(this.sshd, ['-t', '-f', this.configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      const why = String((err as { stderr?: Buffer }).stderr ?? '').trim();
      throw new Error(`sshd rejects the generated ${this.configFile}: ${why || (err as Error).message}`);
    }
    const child = spawn(this.sshd, ['-D', '-e', '-f', this.configFile], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    trackGroup(child);
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (this.log = (this.log + s).slice(-65536)));
    await waitForLine(child, 'sshd', () => /Server listening on 127\.0\.0\.1 port/.test(this.log), () => this.log, 15_000);
  }

  async stop(): Promise<void> {
    await stopGroup(this.child, 5_000);
    this.dropPrivsepDir?.();
    this.dropPrivsepDir = undefined;
  }
}
