/**
 * SSH through sshvisor against OpenSSH's own sshd, same run, same OpenSSH
 * client binaries and client defaults for both:
 *
 *   (a) sshvisor: `sshvisor serve` (this build) on loopback; `ssh alice@...`
 *       boots alice's microVM and each session is relayed to a process the
 *       guest's sshvisor-agent starts (docs/guest-protocol.md), over the
 *       VM's virtio-serial port (DATA_DIR/vms/NAME/agent.sock on the host).
 *   (b) baseline: /usr/sbin/sshd -D with a generated config on loopback,
 *       `ssh root@127.0.0.1`.
 *   (c) raw virtio channel, no SSH: once (a) and (b) are done, `sshvisor
 *       serve` is SIGKILLed (its VM outlives it by design) and agent-raw.js
 *       connects to the VM's agent.sock with the gateway's own AgentConnection
 *       and runs `cat > /dev/null` / `head -c N /dev/zero` through it.
 *
 * Measured: first login (cold boot + login, sshvisor only), `ssh ... true`
 * on a warm VM (and the CPU each login costs the server), exec upload
 * (`head -c N /dev/zero | ssh ... 'cat > /dev/null'`), exec download
 * (`ssh ... 'head -c N /dev/zero' > /dev/null`), `sftp -b` put (+ rm) of an
 * N-byte file of zeros, and (c)'s upload and download. Plus the CPU time the
 * client, the server (or agent-raw.js) and QEMU spent on each transfer, per MB.
 *
 *   node dist/bench/ssh/ssh.js [--logins N] [--runs N] [--size-mib N] [--accel auto|kvm|tcg]
 *                              [--image-dir DIR] [--user NAME] [--json PATH]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { existsSync, mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus as hostCpus, loadavg, release as hostKernel } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import type { AccelMode } from '../../src/vm/driver.js';
import { resolveAccel } from '../../src/vm/accel.js';
import { STATIC_DEFAULTS } from '../../src/config/config-schema.js';
import { requireTool } from '../../src/util/tools.js';
import { UserError } from '../../src/util/errors.js';
import { formatTable, summarize, writeResultsJson, type Summary } from '../lib/table.js';
import { makeTempDir, runBench, removeTempDir } from '../lib/cleanup.js';
import { cpuTimes, mustSucceed, runClient, waitForNoChildren } from '../lib/proc.js';
import { BaselineSshd, SshvisorServe, clientOptions, makeKey, parseNegotiated, type Negotiated } from '../lib/ssh-servers.js';
import { accelOption, imageDirOption, intOption, loadBenchImage } from '../lib/options.js';
import { PREVIOUS_LABEL, PREVIOUS_SSH } from '../lib/previous.js';
import type { RawResult } from './agent-raw.js';

type Side = 'sshvisor' | 'baseline';
const SIDES: readonly Side[] = ['sshvisor', 'baseline'];
type Transfer = 'upload' | 'download' | 'sftp';
const TRANSFERS: readonly Transfer[] = ['upload', 'download', 'sftp'];
type RawDirection = 'up' | 'down';
const RAW_DIRECTIONS: readonly RawDirection[] = ['up', 'down'];

interface Options {
  logins: number;
  runs: number;
  sizeMiB: number;
  /** As given: passed on to `sshvisor serve --accel` only when given. */
  accelFlag?: AccelMode;
  imageDir: string;
  user: string;
  json?: string;
}

const USAGE =
  'usage: ssh.js [--logins N] [--runs N] [--size-mib N] [--accel auto|kvm|tcg] [--image-dir DIR] [--user NAME] [--json PATH]\n';

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      logins: { type: 'string', default: '10' },
      runs: { type: 'string', default: '3' },
      'size-mib': { type: 'string' },
      accel: { type: 'string' },
      'image-dir': { type: 'string' },
      user: { type: 'string', default: 'alice' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const accelFlag = accelOption(values.accel);
  // 256 MiB takes ~40 s a transfer through a TCG guest (~7 MB/s); 9 of them would blow the ~5 min budget.
  const defaultSize = resolveAccel(accelFlag ?? 'auto') === 'kvm' ? 256 : 128;
  return {
    logins: intOption('logins', values.logins),
    runs: intOption('runs', values.runs),
    sizeMiB: values['size-mib'] === undefined ? defaultSize : intOption('size-mib', values['size-mib']),
    accelFlag,
    imageDir: imageDirOption(values['image-dir']),
    user: values.user,
    json: values.json,
  };
}

/** CPU seconds spent during one transfer, by whom. */
interface CpuSplit {
  /** The OpenSSH client side: ssh / sftp (+ its ssh) / sh + head, all reaped by this process. */
  client: number;
  /** sshvisor: the `sshvisor serve` node process; baseline: sshd and everything it ran (session sshd, shell, cat, sftp-server). */
  server: number;
  /** sshvisor only: QEMU (vCPU + I/O threads): the guest's agent, sftp-server, cat, kernel, the virtio-serial device. */
  qemu?: number;
}

interface TransferSample {
  what: Transfer;
  side: Side;
  run: number;
  ms: number;
  mbPerS: number;
  cpu: CpuSplit;
}

/** One raw transfer through the agent channel (no SSH, no gateway). */
interface RawSample {
  direction: RawDirection;
  run: number;
  /** Wall time of agent-raw.js, spawn to exit (Node start-up and the handshake included). */
  wallMs: number;
  /** What agent-raw.js measured: handshake, exec open to exit, its CPU during the transfer. */
  raw: RawResult;
  /** MB/s over transferMs (the exec alone), and over wallMs. */
  mbPerS: number;
  mbPerSWall: number;
  cpu: {
    /** agent-raw.js, whole process (Node start-up included), seconds. */
    clientProcess: number;
    /** agent-raw.js during the transfer alone (process.cpuUsage), seconds. */
    clientTransfer: number;
    qemu?: number;
  };
}

/** CPU the servers (and QEMU) spent on the warm logins, per login. */
interface LoginCpu {
  sshvisor: { logins: number; gatewayS: number; qemuS: number };
  baseline: { logins: number; sshdS: number };
}

interface Target {
  side: Side;
  user: string;
  port: number;
  /** Where an sftp put lands. */
  sftpPath: string;
  /** For CPU accounting. */
  serverPid: number;
  qemuPid?: () => number | undefined;
}

class Bench {
  readonly bytes: number;
  readonly payload: string;

  constructor(
    readonly opts: Options,
    readonly dir: string,
    readonly key: string,
    readonly ssh: string,
    readonly sftp: string,
  ) {
    this.bytes = opts.sizeMiB * 1024 * 1024;
    // A sparse file: reading it costs no disk I/O, like /dev/zero.
    this.payload = join(dir, `zeros-${opts.sizeMiB}MiB`);
    writeFileSync(this.payload, '');
    truncateSync(this.payload, this.bytes);
  }

  options(t: Target, logLevel?: string): string[] {
    return clientOptions({ key: this.key, port: t.port, knownHosts: join(this.dir, `known_hosts-${t.side}`), logLevel });
  }

  sshArgv(t: Target, command: string, opts: { logLevel?: string; extra?: string[] } = {}): string[] {
    return [this.ssh, ...this.options(t, opts.logLevel), ...(opts.extra ?? []), `${t.user}@127.0.0.1`, command];
  }

  async login(t: Target, opts: { timeoutMs?: number; extra?: string[] } = {}): Promise<number> {
    const r = await runClient(this.sshArgv(t, 'true', { extra: opts.extra }), { timeoutMs: opts.timeoutMs ?? 60_000 });
    return mustSucceed(`${t.side}: ssh ${[...(opts.extra ?? []), `${t.user}@127.0.0.1`].join(' ')} true`, r).ms;
  }

  async negotiated(t: Target): Promise<Negotiated> {
    const r = mustSucceed(`${t.side}: ssh -v true`, await runClient(this.sshArgv(t, 'true', { logLevel: 'DEBUG1' }), { timeoutMs: 60_000 }));
    return parseNegotiated(r.stderr);
  }

  /** Every transfer's stdout is /dev/null (runClient's 'ignore'): the download is `ssh ... > /dev/null`. */
  private transferArgv(t: Target, what: Transfer, batch: string): string[] {
    switch (what) {
      case 'upload':
        // The literal pipeline, in its own process group: sh, head and ssh die together if the bench does.
        return ['/bin/sh', '-c', 'n=$1; shift; head -c "$n" /dev/zero | "$@"', 'sh', String(this.bytes), ...this.sshArgv(t, 'cat > /dev/null')];
      case 'download':
        // Busybox head in the guest, coreutils head for the baseline: both take -c.
        return this.sshArgv(t, `head -c ${this.bytes} /dev/zero`);
      case 'sftp':
        return [this.sftp, '-b', batch, ...this.options(t), `${t.user}@127.0.0.1`];
    }
  }

  async transfer(t: Target, what: Transfer, run: number): Promise<TransferSample> {
    const batch = join(this.dir, `sftp-batch-${t.side}`);
    if (what === 'sftp') writeFileSync(batch, `put ${this.payload} ${t.sftpPath}\nrm ${t.sftpPath}\n`);
    const argv = this.transferArgv(t, what, batch);
    const before = this.cpuNow(t);
    const r = mustSucceed(`${t.side} ${what} run ${run}`, await runClient(argv, { stdout: 'ignore', timeoutMs: 15 * 60_000 }));
    // sshd's per-connection processes count once sshd has reaped them.
    if (t.side === 'baseline') await waitForNoChildren(t.serverPid);
    const after = this.cpuNow(t);
    const cpu: CpuSplit = {
      client: after.client - before.client,
      server: after.server - before.server,
      ...(after.qemu !== undefined && before.qemu !== undefined ? { qemu: after.qemu - before.qemu } : {}),
    };
    return { what, side: t.side, run, ms: r.ms, mbPerS: this.bytes / 1e6 / (r.ms / 1000), cpu };
  }

  cpuNow(t: Target): { client: number; server: number; qemu?: number } {
    const self = cpuTimes('self');
    const server = cpuTimes(t.serverPid);
    const qpid = t.qemuPid?.();
    const qemu = qpid !== undefined ? cpuTimes(qpid) : undefined;
    return {
      client: self?.children ?? NaN,
      server: t.side === 'baseline' ? server?.children ?? NaN : server?.self ?? NaN,
      qemu: qemu?.self,
    };
  }
}

/** First non-empty line a program prints for its version (ssh -V writes to stderr). */
function versionOf(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return `${r.stdout ?? ''}\n${r.stderr ?? ''}`.split('\n').map((l) => l.trim()).find(Boolean) ?? 'unknown';
}

function ssh2Version(): string {
  try {
    return (createRequire(import.meta.url)('ssh2/package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** QEMUs already running (someone else's VMs): they compete for the same cores. */
function otherQemus(): number {
  try {
    return Number(execFileSync('pgrep', ['-c', '-f', '^[^ ]*qemu-system'], { encoding: 'utf8' }).trim()) || 0;
  } catch {
    return 0; // pgrep exits 1 when nothing matches
  }
}

const round = (n: number, digits = 1): number => Math.round(n * 10 ** digits) / 10 ** digits;

function cell(s: Summary | undefined, digits: number): string {
  if (!s || s.n === 0) return '-';
  const f = (n: number): string => n.toFixed(digits);
  return s.n === 1 ? f(s.median) : `${f(s.median)} [${f(s.min)}-${f(s.max)}]`;
}

function ratio(a: Summary | undefined, b: Summary | undefined): string {
  if (!a || !b || !(b.median > 0)) return '-';
  const r = a.median / b.median;
  return r >= 10 ? `${r.toFixed(0)}x` : r >= 0.1 ? `${r.toFixed(2)}x` : `${r.toFixed(3)}x`;
}

/** Percent of one core: CPU seconds over wall seconds. */
const pct = (cpuS: number | undefined, ms: number): string => (cpuS === undefined || Number.isNaN(cpuS) ? '-' : `${Math.round((cpuS / (ms / 1000)) * 100)}%`);

async function main(): Promise<void> {
  const opts = parseOptions();
  const image = loadBenchImage(opts.imageDir);
  const ssh = requireTool('ssh');
  requireTool('ssh-keygen');
  const sftp = join(dirname(ssh), 'sftp');
  if (!existsSync(sftp)) throw new UserError(`no sftp next to ${ssh} (install openssh-client)`);
  if (process.getuid?.() !== 0) throw new UserError('run the ssh bench as root: the sshd baseline needs it');

  const loadStart = loadavg();
  const qemusAtStart = otherQemus();
  const dir = makeTempDir('sshvisor-bench-ssh-');
  const key = makeKey(join(dir, 'client_ed25519'), 'sshvisor-bench-client');
  const bench = new Bench(opts, dir, key, ssh, sftp);
  const baselineSftpDir = join(dir, 'sftp-target');
  mkdirSync(baselineSftpDir);

  let sv: SshvisorServe | undefined;
  let sshd: BaselineSshd | undefined;
  try {
    process.stderr.write(`ssh bench: starting sshd baseline and sshvisor serve${opts.accelFlag ? ` --accel ${opts.accelFlag}` : ''} (image ${opts.imageDir})\n`);
    const svDir = join(dir, 'sshvisor');
    const sshdDir = join(dir, 'sshd');
    mkdirSync(svDir);
    mkdirSync(sshdDir);
    // One after the other: if the second fails to start, the first is already in `sshd` for the finally to stop.
    sshd = await BaselineSshd.start({ dir: sshdDir, authorizedKeys: readFileSync(`${key}.pub`, 'utf8') });
    sv = await SshvisorServe.start({ dir: svDir, imageDir: opts.imageDir, accel: opts.accelFlag });
    const server = sv;
    const targets: Record<Side, Target> = {
      sshvisor: { side: 'sshvisor', user: opts.user, port: sv.port, sftpPath: '/root/x', serverPid: sv.pid!, qemuPid: () => server.qemuPid(opts.user) },
      baseline: { side: 'baseline', user: 'root', port: sshd.port, sftpPath: join(baselineSftpDir, 'x'), serverPid: sshd.pid! },
    };
    process.stderr.write(`  sshvisor on 127.0.0.1:${sv.port} (accel ${sv.accel}), sshd on 127.0.0.1:${sshd.port}\n`);

    // 1. First login: claims the name with the bench key, boots the VM, logs in.
    const firstLoginMs = await bench.login(targets.sshvisor, { timeoutMs: 300_000 });
    const vmReadyMs = Number(sv.events('vm-ready')[0]?.ms ?? NaN);
    if (targets.sshvisor.qemuPid!() === undefined) throw new Error(`no QEMU pid file for VM ${opts.user} after the first login`);
    process.stderr.write(`  first login (cold boot + login): ${Math.round(firstLoginMs)} ms (server: VM ready after ${vmReadyMs} ms)\n`);
    await bench.login(targets.baseline); // warm-up, like the VM boot was for sshvisor
    const negotiated = { sshvisor: await bench.negotiated(targets.sshvisor), baseline: await bench.negotiated(targets.baseline) };

    // 2. Warm logins, alternating so drift (the host is shared) hits both sides. With client
    // defaults, and again with the KEX forced to what sshvisor negotiates if sshd's differs
    // (OpenSSH prefers sntrup761x25519, which ssh2 lacks): same handshake cost on both.
    const sameKex = negotiated.sshvisor.kex && negotiated.sshvisor.kex !== negotiated.baseline.kex ? negotiated.sshvisor.kex : undefined;
    const kexOpt = sameKex ? ['-o', `KexAlgorithms=${sameKex}`] : undefined;
    const logins: Record<Side, number[]> = { sshvisor: [], baseline: [] };
    const loginsSameKex: Record<Side, number[]> = { sshvisor: [], baseline: [] };
    // CPU per login: the gateway's own (it runs nothing else meanwhile) and QEMU's; sshd's is
    // sshd and the per-connection processes it reaped.
    const loginCpu: LoginCpu = { sshvisor: { logins: 0, gatewayS: 0, qemuS: 0 }, baseline: { logins: 0, sshdS: 0 } };
    for (let i = 1; i <= opts.logins; i++) {
      for (const side of SIDES) {
        const before = bench.cpuNow(targets[side]);
        logins[side].push(await bench.login(targets[side]));
        if (kexOpt) loginsSameKex[side].push(await bench.login(targets[side], { extra: kexOpt }));
        const n = kexOpt ? 2 : 1;
        if (side === 'baseline') await waitForNoChildren(targets[side].serverPid);
        const after = bench.cpuNow(targets[side]);
        if (side === 'sshvisor') {
          loginCpu.sshvisor.logins += n;
          loginCpu.sshvisor.gatewayS += after.server - before.server;
          loginCpu.sshvisor.qemuS += (after.qemu ?? NaN) - (before.qemu ?? NaN);
        } else {
          loginCpu.baseline.logins += n;
          loginCpu.baseline.sshdS += after.server - before.server;
        }
      }
    }
    const perLoginMs = {
      gateway: (loginCpu.sshvisor.gatewayS / loginCpu.sshvisor.logins) * 1000,
      qemu: (loginCpu.sshvisor.qemuS / loginCpu.sshvisor.logins) * 1000,
      sshd: (loginCpu.baseline.sshdS / loginCpu.baseline.logins) * 1000,
    };
    const med = (xs: number[]): number => Math.round(summarize(xs).median);
    process.stderr.write(`  warm login median: sshvisor ${med(logins.sshvisor)} ms, sshd ${med(logins.baseline)} ms\n`);
    if (kexOpt) process.stderr.write(`  with ${sameKex} on both: sshvisor ${med(loginsSameKex.sshvisor)} ms, sshd ${med(loginsSameKex.baseline)} ms\n`);
    process.stderr.write(
      `  CPU per login: gateway ${perLoginMs.gateway.toFixed(1)} ms + QEMU ${perLoginMs.qemu.toFixed(1)} ms; sshd (all its processes) ${perLoginMs.sshd.toFixed(1)} ms\n`,
    );

    // 3. Transfers: run r does upload, download, sftp, each on both sides.
    const transfers: TransferSample[] = [];
    const samplesOf = (what: Transfer, side: Side): TransferSample[] => transfers.filter((s) => s.side === side && s.what === what);
    for (let run = 1; run <= opts.runs; run++) {
      for (const what of TRANSFERS) {
        for (const side of SIDES) {
          const s = await bench.transfer(targets[side], what, run);
          transfers.push(s);
          const q = s.cpu.qemu !== undefined ? `, qemu ${pct(s.cpu.qemu, s.ms)}` : '';
          process.stderr.write(
            `  run ${run} ${what.padEnd(8)} ${side.padEnd(8)} ${s.mbPerS.toFixed(1).padStart(7)} MB/s (${(s.ms / 1000).toFixed(2)} s; cpu client ${pct(s.cpu.client, s.ms)}, server ${pct(s.cpu.server, s.ms)}${q})\n`,
          );
        }
      }
    }

    // 4. The raw virtio channel: the gateway goes (SIGKILL: its VM stays up, and the agent socket
    // takes one client), agent-raw.js talks to the agent through the same AgentConnection code.
    const agentSocket = join(sv.dataDir, 'vms', opts.user, 'agent.sock');
    const qemuPid = targets.sshvisor.qemuPid!();
    process.stderr.write(`  raw channel: SIGKILL sshvisor serve (pid ${sv.pid}); VM ${opts.user} (QEMU ${qemuPid}) stays up\n`);
    await sv.killGatewayOnly();
    if (qemuPid === undefined || cpuTimes(qemuPid) === undefined) throw new Error(`VM ${opts.user} did not survive the gateway's SIGKILL`);
    const rawSamples: RawSample[] = [];
    const agentRawJs = fileURLToPath(new URL('./agent-raw.js', import.meta.url));
    for (let run = 1; run <= opts.runs; run++) {
      for (const direction of RAW_DIRECTIONS) {
        const selfBefore = cpuTimes('self');
        const qBefore = cpuTimes(qemuPid);
        const r = mustSucceed(
          `raw ${direction} run ${run}`,
          await runClient([process.execPath, agentRawJs, '--socket', agentSocket, '--bytes', String(bench.bytes), '--direction', direction], {
            stdout: 'pipe',
            timeoutMs: 15 * 60_000,
          }),
        );
        const qAfter = cpuTimes(qemuPid);
        const selfAfter = cpuTimes('self');
        const raw = JSON.parse(r.stdout.trim().split('\n').pop()!) as RawResult;
        const s: RawSample = {
          direction,
          run,
          wallMs: r.ms,
          raw,
          mbPerS: bench.bytes / 1e6 / (raw.transferMs / 1000),
          mbPerSWall: bench.bytes / 1e6 / (r.ms / 1000),
          cpu: {
            clientProcess: (selfAfter?.children ?? NaN) - (selfBefore?.children ?? NaN),
            clientTransfer: raw.cpuS,
            ...(qBefore && qAfter ? { qemu: qAfter.self - qBefore.self } : {}),
          },
        };
        rawSamples.push(s);
        process.stderr.write(
          `  run ${run} raw ${direction.padEnd(4)}       ${s.mbPerS.toFixed(1).padStart(7)} MB/s (${(raw.transferMs / 1000).toFixed(2)} s + handshake ${Math.round(raw.handshakeMs)} ms; ` +
            `cpu agent-raw ${pct(raw.cpuS, raw.transferMs)}, qemu ${pct(s.cpu.qemu, raw.transferMs)})\n`,
        );
      }
    }

    // Report.
    const loginSum = { sshvisor: summarize(logins.sshvisor), baseline: summarize(logins.baseline) };
    const loginSameKexSum = { sshvisor: summarize(loginsSameKex.sshvisor), baseline: summarize(loginsSameKex.baseline) };
    const tSum = (what: Transfer, side: Side): Summary => summarize(samplesOf(what, side).map((s) => s.mbPerS));
    // Throughput without connection setup/teardown, approximated by the side's median warm `ssh true`.
    const netMbPerS = (s: TransferSample): number => bench.bytes / 1e6 / (Math.max(1, s.ms - loginSum[s.side].median) / 1000);
    const tNetSum = (what: Transfer, side: Side): Summary => summarize(samplesOf(what, side).map(netMbPerS));
    const label: Record<Transfer, string> = {
      upload: `exec upload ${opts.sizeMiB} MiB: head | ssh 'cat > /dev/null' (MB/s)`,
      download: `exec download ${opts.sizeMiB} MiB: ssh 'head -c' > /dev/null (MB/s)`,
      sftp: `sftp -b put ${opts.sizeMiB} MiB + rm (MB/s)`,
    };
    const rawOf = (d: RawDirection): RawSample[] => rawSamples.filter((x) => x.direction === d);
    const rawSum = (d: RawDirection): Summary => summarize(rawOf(d).map((x) => x.mbPerS));
    const prev: Record<Transfer, string> = { upload: PREVIOUS_SSH.uploadMBps, download: PREVIOUS_SSH.downloadMBps, sftp: PREVIOUS_SSH.sftpMBps };
    const rows = [
      [`first login, cold boot + login (ms)`, Math.round(firstLoginMs).toString(), '-', '-', PREVIOUS_SSH.firstLoginMs],
      [`ssh true, warm, n=${opts.logins} (ms)`, cell(loginSum.sshvisor, 0), cell(loginSum.baseline, 0), ratio(loginSum.sshvisor, loginSum.baseline), PREVIOUS_SSH.loginMs],
      ...(sameKex
        ? [[`ssh -o KexAlgorithms=${sameKex} true, warm (ms)`, cell(loginSameKexSum.sshvisor, 0), cell(loginSameKexSum.baseline, 0), ratio(loginSameKexSum.sshvisor, loginSameKexSum.baseline), PREVIOUS_SSH.loginSameKexMs]]
        : []),
      ...TRANSFERS.map((w) => [`${label[w]}, n=${opts.runs}`, cell(tSum(w, 'sshvisor'), 1), cell(tSum(w, 'baseline'), 1), ratio(tSum(w, 'sshvisor'), tSum(w, 'baseline')), prev[w]]),
      [`raw virtio channel up ${opts.sizeMiB} MiB: AgentConnection exec 'cat > /dev/null', no SSH (MB/s), n=${opts.runs}`, cell(rawSum('up'), 1), '-', '-', '-'],
      [`raw virtio channel down ${opts.sizeMiB} MiB: AgentConnection exec 'head -c', no SSH (MB/s), n=${opts.runs}`, cell(rawSum('down'), 1), '-', '-', '-'],
    ];
    process.stdout.write(
      '\n' + formatTable(['metric (median [min-max])', 'sshvisor (agent)', 'sshd baseline', 'ratio', PREVIOUS_LABEL], rows) + '\n' +
        '(last column: not measured by this run; the medians of this bench on this machine before the agent, sessions through dropbear, 128 MiB transfers)\n',
    );
    process.stdout.write(
      `\nnet of the median warm login (MB/s, sshvisor / sshd): ${TRANSFERS.map((w) => `${w} ${tNetSum(w, 'sshvisor').median.toFixed(1)} / ${tNetSum(w, 'baseline').median.toFixed(1)}`).join(', ')}\n` +
        `through the gateway vs the raw channel (net of login): upload ${ratio(tNetSum('upload', 'sshvisor'), rawSum('up'))}, download ${ratio(tNetSum('download', 'sshvisor'), rawSum('down'))}\n`,
    );

    // Cost per MB moved: CPU seconds per 10^6 bytes, as ms/MB.
    const mb = bench.bytes / 1e6;
    const perMb = (xs: Array<number | undefined>): string => {
      if (!xs.length || xs.some((x) => x === undefined || Number.isNaN(x))) return '-';
      return ((summarize(xs as number[]).median / mb) * 1000).toFixed(1);
    };
    const pctMed = (xs: Array<number | undefined>, ms: number[]): string => {
      if (!xs.length || xs.some((x) => x === undefined || Number.isNaN(x))) return '-';
      return `${Math.round(summarize(xs.map((x, i) => (x! / (ms[i]! / 1000)) * 100)).median)}%`;
    };
    const costRows: string[][] = [];
    for (const w of TRANSFERS) {
      for (const side of SIDES) {
        const ss = samplesOf(w, side);
        costRows.push([
          w,
          side === 'sshvisor' ? 'sshvisor: gateway' : 'sshd (all its processes)',
          tSum(w, side).median.toFixed(1),
          perMb(ss.map((x) => x.cpu.client)),
          perMb(ss.map((x) => x.cpu.server)),
          side === 'sshvisor' ? perMb(ss.map((x) => x.cpu.qemu)) : '-',
          pctMed(ss.map((x) => x.cpu.server), ss.map((x) => x.ms)),
          side === 'sshvisor' ? pctMed(ss.map((x) => x.cpu.qemu), ss.map((x) => x.ms)) : '-',
        ]);
      }
      const d: RawDirection | undefined = w === 'upload' ? 'up' : w === 'download' ? 'down' : undefined;
      if (d) {
        const rs = rawOf(d);
        costRows.push([
          w,
          'raw channel: agent-raw.js',
          rawSum(d).median.toFixed(1),
          '-',
          perMb(rs.map((x) => x.cpu.clientTransfer)),
          perMb(rs.map((x) => x.cpu.qemu)),
          pctMed(rs.map((x) => x.cpu.clientTransfer), rs.map((x) => x.raw.transferMs)),
          pctMed(rs.map((x) => x.cpu.qemu), rs.map((x) => x.wallMs)),
        ]);
      }
    }
    process.stdout.write(
      `\ncost per MB moved (median CPU ms per 10^6 bytes, and % of one core; host has ${hostCpus().length} cores)\n` +
        formatTable(['transfer', 'relay', 'MB/s', 'ssh client ms/MB', 'relay ms/MB', 'QEMU ms/MB', 'relay %', 'QEMU %'], costRows) +
        '\n' +
        '  relay: the `sshvisor serve` process (one whole SSH connection included), or sshd and everything it ran, or\n' +
        '  agent-raw.js during its exec (Node start-up and handshake excluded; the whole process is in the JSON)\n' +
        `per login (ssh true, CPU ms): gateway ${perLoginMs.gateway.toFixed(1)}, QEMU ${perLoginMs.qemu.toFixed(1)}; sshd and its processes ${perLoginMs.sshd.toFixed(1)}\n`,
    );
    const algo = (n: Negotiated): string => `${n.serverSoftware ?? '?'}: kex ${n.kex ?? '?'}, cipher ${n.cipherClientToServer ?? '?'}${n.macClientToServer && n.macClientToServer !== '<implicit>' ? `+${n.macClientToServer}` : ''}`;
    process.stdout.write(`\nclient <-> sshvisor ${algo(negotiated.sshvisor)}\nclient <-> sshd     ${algo(negotiated.baseline)}\n`);
    if (negotiated.sshvisor.cipherClientToServer !== negotiated.baseline.cipherClientToServer) {
      process.stdout.write('warning: the two sides negotiated different ciphers\n');
    }

    const host = {
      accel: sv.accel,
      cpuModel: hostCpus()[0]?.model.trim() ?? 'unknown',
      hostCpus: hostCpus().length,
      hostKernel: hostKernel(),
      node: process.version,
      ssh2: ssh2Version(),
      opensshClient: versionOf([ssh, '-V']),
      sshd: negotiated.baseline.serverSoftware ?? 'unknown',
      qemuVersion: versionOf(['qemu-system-x86_64', '--version']),
      guestKernel: image.manifest?.kernel.release ?? 'unknown',
      guestPackages: image.manifest?.packages ?? {},
      guest: { memoryMiB: STATIC_DEFAULTS.memory, cpus: STATIC_DEFAULTS.cpus, note: 'sshvisor serve defaults' },
      otherQemusAtStart: qemusAtStart,
      loadavgAtStart: loadStart.map((l) => round(l, 2)),
      loadavgAtEnd: loadavg().map((l) => round(l, 2)),
      date: new Date().toISOString(),
    };
    const out = writeResultsJson(
      'ssh',
      {
        bench: 'ssh',
        config: {
          logins: opts.logins,
          runs: opts.runs,
          sizeMiB: opts.sizeMiB,
          bytes: bench.bytes,
          user: opts.user,
          accelFlag: opts.accelFlag ?? null,
          imageDir: opts.imageDir,
          sshdConfig: readFileSync(sshd.configFile, 'utf8'),
          clientOptions: bench.options(targets.sshvisor).map((o) => o.replace(dir, '$TMP')),
          units: { ms: 'wall ms, spawn to exit of the client', mbPerS: '10^6 bytes / s of wall time, connection setup included', cpu: 'CPU seconds' },
        },
        host,
        negotiated,
        results: {
          firstLogin: { ms: firstLoginMs, serverVmReadyMs: vmReadyMs },
          loginCpu: { ...loginCpu, perLoginMs },
          raw: Object.fromEntries(RAW_DIRECTIONS.map((d) => [d, { mbPerS: rawSum(d), samples: rawOf(d) }])),
          previousDropbear: { ...PREVIOUS_SSH, note: 'not measured by this run: README.md before the agent (128 MiB, TCG, same machine)' },
          login: Object.fromEntries(SIDES.map((s) => [s, { ...loginSum[s], samples: logins[s] }])),
          loginSameKex: sameKex
            ? { kex: sameKex, ...Object.fromEntries(SIDES.map((s) => [s, { ...loginSameKexSum[s], samples: loginsSameKex[s] }])) }
            : null,
          ...Object.fromEntries(
            TRANSFERS.map((w) => [
              w,
              Object.fromEntries(
                SIDES.map((s) => [
                  s,
                  {
                    mbPerS: tSum(w, s),
                    mbPerSNetOfLogin: tNetSum(w, s),
                    samples: samplesOf(w, s).map((x) => ({ run: x.run, ms: x.ms, mbPerS: x.mbPerS, mbPerSNetOfLogin: netMbPerS(x), cpu: x.cpu })),
                  },
                ]),
              ),
            ]),
          ),
        },
      },
      opts.json,
    );
    process.stderr.write(`wrote ${out}\n`);
  } finally {
    process.stderr.write('  stopping sshd, and the VM the SIGKILLed gateway left (SIGKILL: its state goes with the temp dir)\n');
    await Promise.all([sv?.stop(), sshd?.stop()]);
    removeTempDir(dir);
  }
}

await runBench(main);
