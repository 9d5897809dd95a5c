/**
 * Serial console throughput: how fast a guest's console output reaches
 * sshvisor's SSH console viewers, against the rate QEMU itself delivers it.
 *
 * The guest writes --size-mib of 80-byte lines to /dev/ttyS0 as fast as it
 * can, between two marker lines that carry a fresh nonce; every reader
 * counts the bytes between the markers and times them by arrival.
 *
 *   (a) sshvisor, 1 viewer: `ssh NAME+watch@host` (stdout counted here),
 *       the output started by `ssh NAME@host '...'` as the writer.
 *   (b) sshvisor, N viewers (--viewers, default 20) at once, each counted.
 *   (c) raw QEMU: qemu-system-x86_64 with the driver's own command line, its
 *       console chardev socket read by a plain net.Socket; the same command
 *       typed into the guest's console shell through that socket.
 *
 * (c) runs first in its own QEMU, which is then ended; (a) and (b) share
 * one VM of `sshvisor serve --no-templates` (cold-booted like (c)). Nothing
 * else runs meanwhile.
 *
 *   node dist/bench/console/console.js [--size-mib N] [--viewers N] [--runs N] [--accel auto|kvm|tcg]
 *                                      [--image-dir DIR] [--user NAME] [--stall-timeout SECONDS] [--json PATH]
 */
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { release as hostKernel, cpus as hostCpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { Accel } from '../../src/vm/driver.js';
import { hostTscKhz, resolveAccel } from '../../src/vm/accel.js';
import type { GuestImage } from '../../src/image/image.js';
import { GUEST_READY_MARKER } from '../../src/image/guest-contract.js';
import { isValidVmName } from '../../src/vm/vm-name.js';
import { requireTool } from '../../src/util/tools.js';
import { UserError, errorMessage } from '../../src/util/errors.js';
import { formatTable, summarize, writeResultsJson, type Summary } from '../lib/table.js';
import { interruptedBy, makeTempDir, runBench, removeTempDir } from '../lib/cleanup.js';
import { cpuTimes, mustSucceed, runClient } from '../lib/proc.js';
import { SshvisorServe, clientOptions, makeKey } from '../lib/ssh-servers.js';
import { PayloadMeter, cpuBetween, guestCommand, hostJiffies, markersFor, otherQemuPids, threadCpu, wireBytes, type CpuUse } from './measure.js';
import { RawQemu, TextTail, stopChild, track } from './raw-qemu.js';
import { accelOption, imageDirOption, intOption, loadBenchImage } from '../lib/options.js';

/** What `sshvisor serve` gives a VM by default; the raw QEMU gets the same. */
const MEMORY_MIB = 256;
const CPUS = 1;
const MIB = 1024 * 1024;
/** Under TCG the guest's serial port moves a few hundred KB/s: 64 MiB would take minutes per run. */
const DEFAULT_SIZE_MIB = { kvm: 64, tcg: 16 } as const;

interface Options {
  sizeMiB: number;
  sizeDefaulted: boolean;
  viewers: number;
  runs: number;
  accel: Accel;
  imageDir: string;
  user: string;
  stallMs: number;
  json?: string;
}

const USAGE =
  'usage: console.js [--size-mib N] [--viewers N] [--runs N] [--accel auto|kvm|tcg] [--image-dir DIR] [--user NAME] [--stall-timeout SECONDS] [--json PATH]\n';

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      'size-mib': { type: 'string' },
      viewers: { type: 'string', default: '20' },
      runs: { type: 'string', default: '1' },
      accel: { type: 'string', default: 'auto' },
      'image-dir': { type: 'string' },
      user: { type: 'string', default: 'alice' },
      'stall-timeout': { type: 'string', default: '60' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const mode = accelOption(values.accel) ?? 'auto';
  const accel = resolveAccel(mode);
  const stall = Number(values['stall-timeout']);
  if (!(stall > 0)) throw new UserError(`--stall-timeout must be a positive number of seconds, not ${values['stall-timeout']}`);
  if (!isValidVmName(values.user) || values.user === 'admin') throw new UserError(`--user ${values.user} is not a usable VM name`);
  return {
    sizeMiB: values['size-mib'] === undefined ? DEFAULT_SIZE_MIB[accel] : intOption('size-mib', values['size-mib'], 1),
    sizeDefaulted: values['size-mib'] === undefined,
    viewers: intOption('viewers', values.viewers, 1),
    runs: intOption('runs', values.runs, 1),
    accel,
    imageDir: imageDirOption(values['image-dir']),
    user: values.user,
    stallMs: stall * 1000,
    json: values.json,
  };
}

type Target = 'sshvisor' | 'raw';

interface ReceiverSample {
  /** Payload bytes as received (the tty's \r\n included; skip notes included). */
  bytes: number;
  /** What the payload is on the wire when nothing is lost. */
  expectedBytes: number;
  /** Every payload byte arrived: nothing skipped, nothing short. (Extra lines amid the payload, e.g. a kernel message, may add bytes.) */
  complete: boolean;
  skippedBytes: number;
  seconds: number;
  mibPerS: number;
  /** Reads that carried payload, and their mean size: small reads mean the reader waits for the producer. */
  reads: number;
  meanReadBytes: number;
  /** The viewer's `ssh` process (decryption, writing to our pipe). */
  sshCpuS?: number;
  /** Lines amid the payload that were not payload (why a count differs), the first few. */
  foreignLines: string[];
}

interface RunSample {
  target: Target;
  viewers: number;
  run: number;
  receivers: ReceiverSample[];
  /** First start marker to last end marker, over all receivers. */
  spanSeconds: number;
  aggregateMiBPerS: number;
  /** CPU over the run (from starting the writer to the last end marker). */
  wallSeconds: number;
  cpu: {
    qemu: CpuUse;
    /** `sshvisor serve` (node: the gateway, all its SSH sessions, the console ring and log). */
    serverS?: number;
    /** All viewer `ssh` processes together. */
    viewersSshS?: number;
    /** This process (the readers' counting; for raw, the plain reader itself). */
    benchS: number;
    /** Share of all the host's cores that was busy. */
    hostBusyPercent: number;
  };
  /** Other QEMU processes running when the run started (another bench or test run skews the numbers). */
  otherQemu: number[];
}

/** Wait for every meter's end marker; fail when one gets no bytes for `stallMs`, or `failed()` has a reason. */
async function allDone(meters: PayloadMeter[], stallMs: number, what: string, failed: () => string | undefined): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const tick = setInterval(() => {
      const why = failed();
      const now = performance.now();
      const stalled = meters.findIndex((m) => m.state !== 'done' && now - m.lastDataAt > stallMs);
      if (why) finish(new UserError(`${what}: ${why}`));
      else if (stalled >= 0) {
        const m = meters[stalled]!;
        finish(new UserError(`${what}: reader ${stalled + 1} got no bytes for ${stallMs / 1000} s (${m.state}, ${m.bytes} payload bytes so far)`));
      }
    }, 500);
    const finish = (err?: Error): void => {
      clearInterval(tick);
      if (err) reject(err);
      else resolve();
    };
    void Promise.all(meters.map((m) => m.done)).then(() => finish());
  });
}

function receiverSample(m: PayloadMeter, expected: number, sshCpuS?: number): ReceiverSample {
  return {
    bytes: m.bytes,
    expectedBytes: expected,
    complete: m.bytes >= expected && m.skipped === 0,
    skippedBytes: m.skipped,
    seconds: m.seconds,
    mibPerS: m.bytes / MIB / m.seconds,
    reads: m.chunks,
    meanReadBytes: m.chunks ? m.bytes / m.chunks : 0,
    sshCpuS,
    foreignLines: m.foreign,
  };
}

function span(meters: PayloadMeter[]): number {
  return (Math.max(...meters.map((m) => m.endAt)) - Math.min(...meters.map((m) => m.startAt))) / 1000;
}

class CpuProbe {
  private readonly t0 = performance.now();
  private readonly qemu0: Map<number, number>;
  private readonly server0?: number;
  private readonly bench0 = process.cpuUsage();
  private readonly host0 = hostJiffies();
  /** Other QEMU processes seen at the start or the end of the run. */
  readonly otherQemu: number[];

  constructor(
    private readonly qemuPid: number,
    private readonly serverPid?: number,
  ) {
    this.otherQemu = otherQemuPids(new Set([qemuPid]));
    this.qemu0 = threadCpu(qemuPid);
    this.server0 = serverPid === undefined ? undefined : cpuTimes(serverPid)?.self;
  }

  done(): { wallSeconds: number; cpu: RunSample['cpu'] } {
    const wallSeconds = (performance.now() - this.t0) / 1000;
    const server1 = this.serverPid === undefined ? undefined : cpuTimes(this.serverPid)?.self;
    const bench = process.cpuUsage(this.bench0);
    const host1 = hostJiffies();
    for (const pid of otherQemuPids(new Set([this.qemuPid]))) if (!this.otherQemu.includes(pid)) this.otherQemu.push(pid);
    return {
      wallSeconds,
      cpu: {
        qemu: cpuBetween(this.qemuPid, this.qemu0, threadCpu(this.qemuPid), wallSeconds),
        serverS: server1 !== undefined && this.server0 !== undefined ? server1 - this.server0 : undefined,
        benchS: (bench.user + bench.system) / 1e6,
        hostBusyPercent: (100 * (host1.busy - this.host0.busy)) / (host1.total - this.host0.total),
      },
    };
  }
}

// ---------------------------------------------------------------- raw QEMU

async function rawRuns(qemu: string, image: GuestImage, opts: Options, tscKhz: number | undefined, workDir: string): Promise<RunSample[]> {
  const dir = join(workDir, 'raw');
  mkdirSync(dir, { mode: 0o700 });
  process.stderr.write('  raw qemu: booting\n');
  const vm = await RawQemu.start({ qemu, dir, image, accel: opts.accel, tscKhz, memoryMiB: MEMORY_MIB, cpus: CPUS, name: 'bench-raw' });
  const samples: RunSample[] = [];
  try {
    let sink: (b: Buffer) => void = (b) => vm.tail.feed(b);
    vm.console.on('data', (b: Buffer) => sink(b));
    const gone = (): string | undefined => vm.exitReason ?? (vm.console.destroyed ? 'the console socket closed' : undefined);
    await vm.tail.waitFor(new RegExp(GUEST_READY_MARKER), 180_000, 'raw qemu: guest not ready', gone);
    // The console's shell starts once rcS is done; until it reads, typed lines could be lost.
    for (let attempt = 1; ; attempt++) {
      vm.write('echo CB-PROBE-$((6*7))\n');
      try {
        await vm.tail.waitFor(/CB-PROBE-42/, 3000, 'raw qemu: no shell on the console', gone);
        break;
      } catch (err) {
        if (attempt >= 20 || gone()) throw err;
      }
    }
    for (let r = 1; r <= opts.runs; r++) {
      const nonce = randomBytes(6).toString('hex');
      const meter = new PayloadMeter(markersFor(nonce));
      sink = (b) => meter.feed(b);
      const probe = new CpuProbe(vm.pid!);
      vm.write(guestCommand(nonce, opts.sizeMiB * MIB) + '\n');
      await allDone([meter], opts.stallMs, `raw qemu run ${r}`, gone);
      const { wallSeconds, cpu } = probe.done();
      sink = (b) => vm.tail.feed(b);
      const s: RunSample = {
        target: 'raw',
        viewers: 1,
        run: r,
        receivers: [receiverSample(meter, wireBytes(opts.sizeMiB * MIB))],
        spanSeconds: meter.seconds,
        aggregateMiBPerS: meter.bytes / MIB / meter.seconds,
        wallSeconds,
        cpu,
        otherQemu: probe.otherQemu,
      };
      samples.push(s);
      progress(s);
    }
  } finally {
    await vm.stop();
    removeTempDir(dir);
  }
  return samples;
}

// ---------------------------------------------------------------- sshvisor

/** The server and how the bench's OpenSSH client reaches it. */
interface Gateway {
  server: SshvisorServe;
  key: string;
  knownHosts: string;
}

/** `ssh` arguments up to and including the destination: the client's defaults (-F /dev/null) and the bench key. */
function sshArgs(gw: Gateway, user: string): string[] {
  return [...clientOptions({ key: gw.key, port: gw.server.port, knownHosts: gw.knownHosts }), `${user}@127.0.0.1`];
}

interface ViewerProc {
  child: ChildProcess;
  meter: PayloadMeter;
  header: TextTail;
  attached: boolean;
  stderr: string;
}

function startViewer(gw: Gateway, user: string, meter: PayloadMeter): ViewerProc {
  // stdin stays an open pipe: the viewer must not send EOF. -T: no pty, the bytes arrive as the guest wrote them.
  const child = track(spawn('ssh', ['-T', ...sshArgs(gw, `${user}+watch`)], { stdio: ['pipe', 'pipe', 'pipe'] }));
  const v: ViewerProc = { child, meter, header: new TextTail(), attached: false, stderr: '' };
  child.stdin!.on('error', () => {});
  child.stdout!.on('data', (b: Buffer) => {
    if (!v.attached) v.header.feed(b);
    meter.feed(b);
  });
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (v.stderr = (v.stderr + s).slice(-4096)));
  return v;
}

function viewerGone(v: ViewerProc): string | undefined {
  if (v.child.exitCode === null && v.child.signalCode === null) return undefined;
  const why = v.stderr.trim().split('\n').pop() ?? '';
  return `a viewer's ssh exited (${v.child.signalCode ?? `code ${v.child.exitCode}`})${why ? `: ${why}` : ''}`;
}

async function sshvisorRun(gw: Gateway, opts: Options, viewers: number, r: number, qemuPid: number): Promise<RunSample> {
  const nonce = randomBytes(6).toString('hex');
  const markers = markersFor(nonce);
  const procs: ViewerProc[] = [];
  try {
    for (let i = 0; i < viewers; i++) procs.push(startViewer(gw, opts.user, new PayloadMeter(markers)));
    const watching = new RegExp(`watching ${opts.user}'s console`);
    await Promise.all(
      procs.map(async (v) => {
        await v.header.waitFor(watching, 60_000, 'a viewer did not attach', () => viewerGone(v));
        v.attached = true;
      }),
    );
    const probe = new CpuProbe(qemuPid, gw.server.pid);
    let writerFailure: string | undefined;
    const writer = runClient(['ssh', ...sshArgs(gw, opts.user), guestCommand(nonce, opts.sizeMiB * MIB)], { timeoutMs: 3_600_000 }).then(
      (res) => {
        try {
          mustSucceed('the writer session', res);
        } catch (err) {
          writerFailure = errorMessage(err);
        }
      },
      (err: unknown) => void (writerFailure = errorMessage(err)),
    );
    const meters = procs.map((v) => v.meter);
    await allDone(meters, opts.stallMs, `sshvisor run ${r} with ${viewers} viewer(s)`, () => writerFailure ?? procs.map(viewerGone).find(Boolean));
    const { wallSeconds, cpu } = probe.done();
    const sshCpu = procs.map((v) => cpuTimes(v.child.pid!)?.self);
    await writer;
    if (writerFailure) throw new UserError(writerFailure);
    const expected = wireBytes(opts.sizeMiB * MIB);
    const receivers = procs.map((v, i) => receiverSample(v.meter, expected, sshCpu[i]));
    const total = receivers.reduce((s, x) => s + x.bytes, 0);
    const spanSeconds = span(meters);
    const known = sshCpu.filter((c): c is number => c !== undefined);
    return {
      target: 'sshvisor',
      viewers,
      run: r,
      receivers,
      spanSeconds,
      aggregateMiBPerS: total / MIB / spanSeconds,
      wallSeconds,
      cpu: { ...cpu, viewersSshS: known.reduce((s, c) => s + c, 0) },
      otherQemu: probe.otherQemu,
    };
  } finally {
    await Promise.all(procs.map((v) => stopChild(v.child)));
  }
}

/** Extra `sshvisor serve` flags (besides the ones SshvisorServe always passes). */
const SERVE_ARGS = [
  '--auth', 'claim',
  // Cold boot like the raw QEMU: no template is built in the background (a second QEMU competing
  // for the CPUs during the first run), and how the VM came up does not touch its console path.
  '--no-templates',
];

async function sshvisorRuns(opts: Options, workDir: string): Promise<{ samples: RunSample[]; firstLoginMs: number }> {
  const dir = join(workDir, 'sshvisor');
  mkdirSync(dir, { mode: 0o700 });
  process.stderr.write('  sshvisor: starting the server, first login boots the VM\n');
  const key = makeKey(join(dir, 'client_ed25519'), 'sshvisor-bench-console');
  const server = await SshvisorServe.start({ dir, imageDir: opts.imageDir, accel: opts.accel, extraArgs: SERVE_ARGS });
  const gw: Gateway = { server, key, knownHosts: join(dir, 'known_hosts') };
  const samples: RunSample[] = [];
  try {
    const login = mustSucceed(
      `the first login (ssh ${opts.user}@127.0.0.1 true)`,
      await runClient(['ssh', ...sshArgs(gw, opts.user), 'true'], { timeoutMs: 300_000 }),
    );
    const qemuPid = server.qemuPid(opts.user);
    if (qemuPid === undefined) throw new UserError(`sshvisor runs no VM ${opts.user} after the first login`);
    const counts = opts.viewers === 1 ? [1] : [1, opts.viewers];
    for (let r = 1; r <= opts.runs; r++) {
      for (const n of counts) {
        const s = await sshvisorRun(gw, opts, n, r, qemuPid);
        samples.push(s);
        progress(s);
      }
    }
    return { samples, firstLoginMs: login.ms };
  } catch (err) {
    const tail = server.log.trim().split('\n').slice(-8).join('\n    ');
    if (tail && !interruptedBy()) process.stderr.write(`  sshvisor serve log, last lines:\n    ${tail}\n`);
    throw err;
  } finally {
    await server.stop();
    removeTempDir(dir);
  }
}

// ---------------------------------------------------------------- report

const f3 = (n: number): string => (Number.isFinite(n) ? n.toFixed(3) : '-');
const f1 = (n: number): string => (Number.isFinite(n) ? n.toFixed(1) : '-');

function progress(s: RunSample): void {
  const rates = summarize(s.receivers.map((x) => x.mibPerS));
  const lost = s.receivers.filter((x) => !x.complete).length;
  const foreign = s.receivers.flatMap((x) => x.foreignLines).find((l) => !l.includes('bytes skipped]'));
  const who = s.target === 'raw' ? 'raw qemu socket' : `sshvisor ${s.viewers} viewer(s)`;
  process.stderr.write(
    `  run ${s.run} ${who}: ${f3(rates.median)} MiB/s per reader (min ${f3(rates.min)}), aggregate ${f3(s.aggregateMiBPerS)} MiB/s, ` +
      `${f1(s.spanSeconds)} s, qemu vCPU thread ${f1(s.cpu.qemu.busiestOther?.percentOfWall ?? NaN)}%, main ${f1(s.cpu.qemu.main?.percentOfWall ?? NaN)}%` +
      `${s.cpu.serverS !== undefined ? `, serve ${f1((100 * s.cpu.serverS) / s.wallSeconds)}%` : ''}, host busy ${f1(s.cpu.hostBusyPercent)}%` +
      `${lost ? `, ${lost} reader(s) missed bytes` : ''}${foreign ? `, not payload amid it: ${JSON.stringify(foreign)}` : ''}` +
      `${s.otherQemu.length ? ` (WARNING: ${s.otherQemu.length} other QEMU running: pids ${s.otherQemu.join(' ')})` : ''}\n`,
  );
}

interface Row {
  what: string;
  target: Target;
  viewers: number;
  runs: number;
  perViewerMiBPerS: Summary;
  aggregateMiBPerS: Summary;
  seconds: Summary;
  incompleteReceivers: number;
  /** A line amid the payload that is not payload and not a skip note (a kernel message), if any reader got one. */
  foreignExample?: string;
  skippedBytes: number;
  /** CPU as % of one core over the run. */
  qemuVcpuThreadPercent: Summary;
  qemuMainThreadPercent: Summary;
  qemuPercent: Summary;
  serverPercent?: Summary;
  viewersSshPercent?: Summary;
  benchPercent: Summary;
  /** % of all host cores busy. */
  hostBusyPercent: Summary;
  meanReadBytes: Summary;
  runsWithOtherQemu: number;
}

function row(what: string, mine: RunSample[]): Row {
  const pct = (f: (s: RunSample) => number | undefined): Summary =>
    summarize(
      mine.flatMap((s) => {
        const v = f(s);
        return v === undefined ? [] : [(100 * v) / s.wallSeconds];
      }),
    );
  const first = mine[0]!;
  return {
    what,
    target: first.target,
    viewers: first.viewers,
    runs: mine.length,
    perViewerMiBPerS: summarize(mine.flatMap((s) => s.receivers.map((x) => x.mibPerS))),
    aggregateMiBPerS: summarize(mine.map((s) => s.aggregateMiBPerS)),
    seconds: summarize(mine.map((s) => s.spanSeconds)),
    incompleteReceivers: mine.reduce((n, s) => n + s.receivers.filter((x) => !x.complete).length, 0),
    foreignExample: mine.flatMap((s) => s.receivers.flatMap((x) => x.foreignLines)).find((l) => !l.includes('bytes skipped]')),
    skippedBytes: mine.reduce((n, s) => n + s.receivers.reduce((k, x) => k + x.skippedBytes, 0), 0),
    qemuVcpuThreadPercent: summarize(mine.map((s) => s.cpu.qemu.busiestOther?.percentOfWall ?? NaN)),
    qemuMainThreadPercent: summarize(mine.map((s) => s.cpu.qemu.main?.percentOfWall ?? NaN)),
    qemuPercent: summarize(mine.map((s) => s.cpu.qemu.percentOfWall)),
    ...(first.target === 'sshvisor' ? { serverPercent: pct((s) => s.cpu.serverS), viewersSshPercent: pct((s) => s.cpu.viewersSshS) } : {}),
    benchPercent: pct((s) => s.cpu.benchS),
    hostBusyPercent: summarize(mine.map((s) => s.cpu.hostBusyPercent)),
    meanReadBytes: summarize(mine.flatMap((s) => s.receivers.map((x) => x.meanReadBytes))),
    runsWithOtherQemu: mine.filter((s) => s.otherQemu.length > 0).length,
  };
}

function qemuVersion(qemu: string): string {
  try {
    return execFileSync(qemu, ['--version'], { encoding: 'utf8' }).split('\n')[0]!.trim();
  } catch {
    return 'unknown';
  }
}

function opensshVersion(): string {
  // `ssh -V` prints to stderr.
  const r = spawnSync('ssh', ['-V'], { encoding: 'utf8' });
  return `${r.stderr ?? ''}${r.stdout ?? ''}`.trim() || 'unknown';
}

/** % of all the host's cores busy over the next `ms`. */
async function hostBusyOver(ms: number): Promise<number> {
  const a = hostJiffies();
  await new Promise((r) => setTimeout(r, ms));
  const b = hostJiffies();
  return (100 * (b.busy - a.busy)) / (b.total - a.total);
}

async function main(): Promise<void> {
  const opts = parseOptions();
  const image = loadBenchImage(opts.imageDir);
  const qemu = requireTool('qemu-system-x86_64');
  requireTool('ssh');
  requireTool('ssh-keygen');
  const tscKhz = hostTscKhz();
  for (const f of [image.kernel, image.initrd]) if (f) readFileSync(f);

  const host = {
    accel: opts.accel,
    cpuModel: hostCpus()[0]?.model.trim() ?? 'unknown',
    hostCpus: hostCpus().length,
    hostKernel: hostKernel(),
    qemuVersion: qemuVersion(qemu),
    openssh: opensshVersion(),
    guestKernel: image.manifest?.kernel.release ?? 'unknown',
    tscKhz: opts.accel === 'tcg' ? (tscKhz ?? null) : null,
    node: process.version,
    loadavgAtStart: loadavg().map((l) => Math.round(l * 100) / 100),
    otherQemuAtStart: otherQemuPids().length,
    hostBusyPercentBefore: await hostBusyOver(1000),
    date: new Date().toISOString(),
  };
  if (host.otherQemuAtStart > 0) {
    process.stderr.write(`WARNING: ${host.otherQemuAtStart} other QEMU process(es) running; they compete for the CPUs this bench measures\n`);
  }
  if (host.hostBusyPercentBefore > 15) {
    process.stderr.write(`WARNING: the host was ${Math.round(host.hostBusyPercentBefore)}% busy before the bench started; the numbers will be skewed\n`);
  }
  const payload = opts.sizeMiB * MIB;
  process.stderr.write(
    `console bench: ${opts.sizeMiB} MiB per run${opts.sizeDefaulted && opts.accel === 'tcg' ? ' (TCG default; --size-mib 64 for the full size)' : ''}, ` +
      `${wireBytes(payload)} bytes on the wire, 1 and ${opts.viewers} viewers, ${opts.runs} run(s), accel ${opts.accel}, ${host.qemuVersion}\n`,
  );

  const workDir = makeTempDir('sshvisor-bench-console-');
  let raw: RunSample[];
  let ssh: { samples: RunSample[]; firstLoginMs: number };
  try {
    raw = await rawRuns(qemu, image, opts, tscKhz, workDir);
    ssh = await sshvisorRuns(opts, workDir);
  } finally {
    removeTempDir(workDir);
  }

  const rows: Row[] = [row(`sshvisor, ssh ${opts.user}+watch`, ssh.samples.filter((s) => s.viewers === 1))];
  if (opts.viewers > 1) rows.push(row(`sshvisor, ${opts.viewers} x ssh ${opts.user}+watch`, ssh.samples.filter((s) => s.viewers === opts.viewers)));
  rows.push(row('raw qemu chardev socket, plain reader', raw));

  process.stdout.write(
    '\n' +
      formatTable(
        ['what', 'viewers', 'MiB/s per viewer', 'min per viewer', 'aggregate MiB/s', 'seconds', 'skipped bytes', 'qemu vCPU %', 'serve CPU %', 'host busy %'],
        rows.map((r) => [
          r.what,
          r.viewers,
          f3(r.perViewerMiBPerS.median),
          f3(r.perViewerMiBPerS.min),
          f3(r.aggregateMiBPerS.median),
          f1(r.seconds.median),
          r.skippedBytes,
          f1(r.qemuVcpuThreadPercent.median),
          r.serverPercent ? f1(r.serverPercent.median) : '-',
          f1(r.hostBusyPercent.median),
        ]),
      ) +
      '\n',
  );
  const rawRate = rows[rows.length - 1]!.perViewerMiBPerS.median;
  const notes = [
    `${opts.sizeMiB} MiB of 80-byte lines per run (${wireBytes(payload)} bytes with the tty's \\r\\n); MiB/s = 2^20 bytes/s, timed start marker to end marker at each reader.`,
    `qemu vCPU % / serve CPU %: % of one core over the run (QEMU's vCPU thread runs the guest and its per-byte serial port writes; serve is the whole gateway process); host busy %: of all ${hostCpus().length} cores.`,
  ];
  for (const r of rows.slice(0, -1)) {
    notes.push(`${r.what}: ${Math.round((100 * r.perViewerMiBPerS.median) / rawRate)}% of the raw rate per viewer.`);
  }
  notes.push(
    `mean bytes per read: ${rows.map((r) => `${r.target === 'raw' ? 'plain reader' : `${r.viewers} viewer(s)`} ${Math.round(r.meanReadBytes.median)}`).join(', ')} ` +
      `(QEMU writes the chardev socket a byte at a time; a reader that keeps up gets a few bytes per read).`,
  );
  const incomplete = rows.filter((r) => r.incompleteReceivers > 0);
  for (const r of rows.filter((x) => x.runsWithOtherQemu > 0)) notes.push(`${r.what}: other QEMU processes were running during ${r.runsWithOtherQemu} run(s); the numbers are skewed.`);
  for (const r of incomplete) notes.push(`${r.what}: ${r.incompleteReceivers} reader(s) did not get every byte (${r.skippedBytes} bytes skipped by the gateway: those viewers fell too far behind).`);
  for (const r of rows.filter((x) => x.foreignExample !== undefined)) {
    notes.push(`${r.what}: the guest printed something else amid the payload (counted in the rate): ${JSON.stringify(r.foreignExample)}.`);
  }
  if (opts.sizeDefaulted && opts.accel === 'tcg') {
    notes.push(`TCG: default size ${opts.sizeMiB} MiB instead of 64 (at the raw rate 64 MiB takes ~${Math.round(64 / rawRate)} s per run); --size-mib 64 measures the full size.`);
  }
  process.stdout.write('\n' + notes.map((n) => `- ${n}`).join('\n') + '\n');

  const out = writeResultsJson(
    'console',
    {
      bench: 'console',
      config: {
        sizeMiB: opts.sizeMiB,
        sizeDefaulted: opts.sizeDefaulted,
        payloadBytes: payload,
        wireBytes: wireBytes(payload),
        viewers: opts.viewers,
        runs: opts.runs,
        user: opts.user,
        memoryMiB: MEMORY_MIB,
        cpus: CPUS,
        imageDir: opts.imageDir,
        serveArgs: SERVE_ARGS,
        stallTimeoutMs: opts.stallMs,
        guestCommand: guestCommand('NONCE', payload),
        order: 'raw qemu runs, then sshvisor runs (1 viewer, N viewers per run) in one VM',
      },
      host,
      firstLoginMs: ssh.firstLoginMs,
      results: rows,
      samples: [...ssh.samples, ...raw],
    },
    opts.json,
  );
  process.stderr.write(`wrote ${out}\n`);
}

await runBench(main);
