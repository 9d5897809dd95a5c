/**
 * Cold boot time of a guest, sshvisor's QEMU driver against QEMU started by hand.
 *
 *   (a) sshvisor: QemuDriver.create(spec) + vm.start(), timed from just before
 *       start() to the guest's markers on vm.on('console').
 *   (b) baseline: qemu-system-x86_64 with the same kernel, initrd, memory,
 *       machine, accel, CPU and kernel arguments and `-serial stdio`, timed
 *       from spawn to the same markers on its stdout.
 *
 * Both are measured to GUEST_INIT_MARKER (first userspace line) and to
 * GUEST_READY_MARKER (sshd listening), runs alternating a, b, a, b, ...
 *
 *   node dist/bench/boot/boot.js [--runs N] [--accel auto|kvm|tcg] [--image-dir DIR]
 *                                [--timeout SECONDS] [--json PATH]
 */
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { release as hostKernel, cpus as hostCpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { Accel, VmSpec } from '../../src/vm/driver.js';
import { QemuDriver } from '../../src/vm/qemu/qemu-driver.js';
import { hostTscKhz, resolveAccel } from '../../src/vm/accel.js';
import type { GuestImage } from '../../src/image/image.js';
import { GUEST_INIT_MARKER, GUEST_READY_MARKER } from '../../src/image/guest-contract.js';
import { requireTool } from '../../src/util/tools.js';
import { UserError } from '../../src/util/errors.js';
import { formatTable, ms, summarize, writeResultsJson } from '../lib/table.js';
import { makeTempDir, runBench, removeTempDir, trackChild, trackPid, untrackPid } from '../lib/cleanup.js';
import { accelOption, imageDirOption, loadBenchImage } from '../lib/options.js';

const MEMORY_MIB = 256;
const CPUS = 1;

type Which = 'sshvisor' | 'baseline';

interface Sample {
  which: Which;
  run: number;
  initMs: number;
  readyMs: number;
  /** sshvisor only: when vm.start() resolved (QEMU spawned, QMP and console attached, `cont` sent). */
  startResolvedMs?: number;
}

interface Options {
  runs: number;
  accel: Accel;
  imageDir: string;
  timeoutMs: number;
  json?: string;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '5' },
      accel: { type: 'string', default: 'auto' },
      'image-dir': { type: 'string' },
      timeout: { type: 'string', default: '180' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write('usage: boot.js [--runs N] [--accel auto|kvm|tcg] [--image-dir DIR] [--timeout SECONDS] [--json PATH]\n');
    process.exit(0);
  }
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new UserError(`--runs must be a positive integer, not ${values.runs}`);
  const timeout = Number(values.timeout);
  if (!(timeout > 0)) throw new UserError(`--timeout must be a positive number of seconds, not ${values.timeout}`);
  const mode = accelOption(values.accel) ?? 'auto';
  const imageDir = imageDirOption(values['image-dir']);
  return { runs, accel: resolveAccel(mode), imageDir, timeoutMs: timeout * 1000, json: values.json };
}

/**
 * Watches a console byte stream for the two markers and records when each
 * first appears, relative to t0. Settles when READY is seen, the stream's
 * owner reports an exit, or the timeout passes.
 */
class MarkerClock {
  initMs?: number;
  readyMs?: number;
  private text = '';
  readonly done: Promise<void>;
  private settle!: (err?: Error) => void;
  private timer: NodeJS.Timeout;

  constructor(
    private readonly t0: number,
    private readonly label: string,
    timeoutMs: number,
  ) {
    this.done = new Promise<void>((resolve, reject) => {
      this.settle = (err) => (err ? reject(err) : resolve());
    });
    // A failure nobody waits for (start() threw first) must not become an unhandled rejection.
    this.done.catch(() => {});
    this.timer = setTimeout(() => this.fail(`no ${this.readyMs === undefined && this.initMs !== undefined ? 'ready' : 'init'} marker within ${timeoutMs / 1000} s`), timeoutMs);
  }

  feed(chunk: Buffer): void {
    const now = performance.now() - this.t0;
    this.text += chunk.toString('latin1');
    if (this.initMs === undefined && this.text.includes(GUEST_INIT_MARKER)) this.initMs = now;
    if (this.readyMs === undefined && this.text.includes(GUEST_READY_MARKER)) {
      this.readyMs = now;
      clearTimeout(this.timer);
      this.settle();
    }
    // Keep only what a marker split across chunks could still need.
    if (this.text.length > 4096) this.text = this.text.slice(-1024);
  }

  fail(why: string): void {
    clearTimeout(this.timer);
    const tail = this.text.trim().split('\n').slice(-5).join('\n    ');
    this.settle(new UserError(`${this.label}: ${why}${tail ? `; console ended with:\n    ${tail}` : ''}`));
  }

  cancel(): void {
    clearTimeout(this.timer);
  }
}

function kernelArgs(image: GuestImage, accel: Accel, tscKhz: number | undefined, name: string): string[] {
  // What buildQemuArgs (src/vm/qemu/qemu-args.ts) puts on the command line for a VM with this spec.
  const args = ['console=ttyS0', 'panic=-1', 'reboot=t'];
  if (accel === 'tcg' && tscKhz) args.push(`tsc_early_khz=${tscKhz}`);
  return [...args, ...image.append, `sshvisor.name=${name}`];
}

/** The plain-QEMU command line: the driver's machine, without -S, QMP, the pid file or the console socket. */
function baselineArgs(image: GuestImage, accel: Accel, tscKhz: number | undefined, name: string): string[] {
  const tcg = accel === 'tcg';
  const args = [
    '-M', tcg ? 'microvm,pit=on,pic=on,rtc=on' : 'microvm',
    '-accel', accel,
    '-cpu', tcg ? 'max' : 'host',
    '-m', String(MEMORY_MIB),
    '-smp', String(CPUS),
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-no-reboot',
    '-serial', 'stdio',
    '-kernel', image.kernel,
    '-append', kernelArgs(image, accel, tscKhz, name).join(' '),
    // The driver gives every guest a virtio RNG; the guest's sshd key generation leans on it.
    '-object', 'rng-random,id=rng0,filename=/dev/urandom',
    '-device', 'virtio-rng-device,rng=rng0',
  ];
  if (image.initrd) args.push('-initrd', image.initrd);
  return args;
}

async function runSshvisor(driver: QemuDriver, image: GuestImage, opts: Options, run: number, workDir: string): Promise<Sample> {
  const name = `bench-a${run}`;
  const spec: VmSpec = {
    name,
    dir: join(workDir, name),
    image,
    memoryMiB: MEMORY_MIB,
    cpus: CPUS,
    accel: opts.accel,
    network: { allowInternet: false },
    kernelArgs: [`sshvisor.name=${name}`],
  };
  const vm = driver.create(spec);
  const t0 = performance.now();
  const clock = new MarkerClock(t0, `sshvisor run ${run}`, opts.timeoutMs);
  vm.on('console', (b) => clock.feed(b));
  void vm.exited.then((info) => clock.fail(`VM exited before it was ready (${info.detail})`));
  let pid: number | undefined;
  try {
    const started = vm.start();
    pid = vm.pid; // spawn happens synchronously inside start()
    if (pid !== undefined) trackPid(pid);
    await started;
    const startResolvedMs = performance.now() - t0;
    await clock.done;
    return { which: 'sshvisor', run, initMs: clock.initMs!, readyMs: clock.readyMs!, startResolvedMs };
  } finally {
    clock.cancel();
    await vm.kill();
    if (pid !== undefined) untrackPid(pid);
    removeTempDir(spec.dir);
  }
}

async function runBaseline(qemu: string, image: GuestImage, opts: Options, tscKhz: number | undefined, run: number): Promise<Sample> {
  const args = baselineArgs(image, opts.accel, tscKhz, `bench-b${run}`);
  const t0 = performance.now();
  const child = spawn(qemu, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  trackChild(child);
  const clock = new MarkerClock(t0, `baseline run ${run}`, opts.timeoutMs);
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => clock.feed(b));
  child.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-2000)));
  child.stdin.on('error', () => {});
  child.once('error', (err) => clock.fail(`could not run ${qemu}: ${err.message}`));
  child.once('exit', (code, signal) => {
    const why = stderr.trim().split('\n').pop() ?? '';
    clock.fail(`qemu exited before the guest was ready (${signal ?? `code ${code}`}${why ? `: ${why}` : ''})`);
  });
  try {
    await clock.done;
    return { which: 'baseline', run, initMs: clock.initMs!, readyMs: clock.readyMs! };
  } finally {
    clock.cancel();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (child.pid !== undefined) await exited;
  }
}

function cpuModel(): string {
  return hostCpus()[0]?.model.trim() ?? 'unknown';
}

function qemuVersion(qemu: string): string {
  try {
    return execFileSync(qemu, ['--version'], { encoding: 'utf8' }).split('\n')[0]!.trim();
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  const opts = parseOptions();
  const image = loadBenchImage(opts.imageDir);
  const qemu = requireTool('qemu-system-x86_64');
  const driver = new QemuDriver();
  const tscKhz = hostTscKhz();
  // Both sides should read the kernel and initrd from the page cache, not only the runs after the first.
  for (const f of [image.kernel, image.initrd]) if (f) readFileSync(f);

  const host = {
    accel: opts.accel,
    cpuModel: cpuModel(),
    hostCpus: hostCpus().length,
    hostKernel: hostKernel(),
    qemuVersion: qemuVersion(qemu),
    guestKernel: image.manifest?.kernel.release ?? 'unknown',
    tscKhz: opts.accel === 'tcg' ? tscKhz ?? null : null,
    node: process.version,
    loadavgAtStart: loadavg().map((l) => Math.round(l * 100) / 100),
    date: new Date().toISOString(),
  };
  process.stderr.write(
    `boot bench: ${opts.runs} runs each, accel ${host.accel}, ${MEMORY_MIB} MiB, ${CPUS} vCPU, guest ${host.guestKernel}, ${host.qemuVersion}\n`,
  );

  const workDir = makeTempDir('sshvisor-bench-boot-');
  const samples: Sample[] = [];
  try {
    for (let run = 1; run <= opts.runs; run++) {
      for (const which of ['sshvisor', 'baseline'] as const) {
        const s = which === 'sshvisor' ? await runSshvisor(driver, image, opts, run, workDir) : await runBaseline(qemu, image, opts, tscKhz, run);
        samples.push(s);
        const extra = s.startResolvedMs !== undefined ? `, start() ${ms(s.startResolvedMs)} ms` : '';
        process.stderr.write(`  run ${run} ${which.padEnd(8)} init ${ms(s.initMs)} ms, ready ${ms(s.readyMs)} ms${extra}\n`);
      }
    }
  } finally {
    removeTempDir(workDir);
  }

  const results = (['sshvisor', 'baseline'] as const).map((which) => {
    const mine = samples.filter((s) => s.which === which);
    return {
      what: which === 'sshvisor' ? 'sshvisor (QemuDriver)' : 'baseline (raw qemu)',
      runs: mine.length,
      init: summarize(mine.map((s) => s.initMs)),
      ready: summarize(mine.map((s) => s.readyMs)),
      ...(which === 'sshvisor' ? { startResolved: summarize(mine.map((s) => s.startResolvedMs!)) } : {}),
      samples: mine.map(({ run, initMs, readyMs, startResolvedMs }) => ({ run, initMs, readyMs, startResolvedMs })),
    };
  });

  process.stdout.write(
    '\n' +
      formatTable(
        ['what', 'runs', 'median ms to init', 'median ms to ready', 'min ready', 'max ready'],
        results.map((r) => [r.what, r.runs, ms(r.init.median), ms(r.ready.median), ms(r.ready.min), ms(r.ready.max)]),
      ) +
      '\n',
  );
  const [a, b] = results;
  if (a && b) {
    process.stdout.write(
      `\nsshvisor overhead (median): ${ms(a.init.median - b.init.median)} ms to init, ${ms(a.ready.median - b.ready.median)} ms to ready\n`,
    );
  }

  const out = writeResultsJson('boot', {
    bench: 'boot',
    config: { runs: opts.runs, memoryMiB: MEMORY_MIB, cpus: CPUS, imageDir: opts.imageDir, timeoutMs: opts.timeoutMs, order: 'alternating sshvisor, baseline' },
    host,
    markers: { init: GUEST_INIT_MARKER, ready: GUEST_READY_MARKER },
    results,
  }, opts.json);
  process.stderr.write(`wrote ${out}\n`);
}

await runBench(main);
