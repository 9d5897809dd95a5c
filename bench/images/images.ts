/**
 * What an image costs, for the default image, a Debian image built in this
 * run and an ext4 image imported in this run, each beside the default
 * image's figure measured in the same run:
 *
 *   - making the image: `image build --debian` (once) and `image import
 *     FILE.ext4` (--runs times, a small busybox rootfs; and once the Debian
 *     image's own rootfs.ext4), beside copying the same file (cp + sync);
 *     and the image's size on disk;
 *   - per VM, with `sshvisor serve --no-templates`: a new VM's cold boot to
 *     login (`ssh -o SetEnv=SSHVISOR_IMAGE=I NAME@host true`), its disk on the
 *     host, `sshvisor suspend` and the resume to login, then 100 MiB written
 *     inside (`dd if=/dev/urandom ... && sync`) and its disk again;
 *   - per VM, with `sshvisor serve --templates` (after each image's
 *     template-ready): a new VM's clone to login, its disk, a clone's first
 *     `sshvisor suspend` (RAM into its state) and resume to login.
 *
 * Runs are interleaved (default, debian, busybox, default, ...) so drift
 * hits every image alike; only one VM of the bench runs at a time (each ends
 * suspended). Everything lives in one temp dir, removed at the end however
 * the bench ends (mounts a killed mmdebstrap left in it are unmounted first).
 *
 *   node dist/bench/images/images.js [--runs N] [--accel auto|kvm|tcg] [--image-dir DIR]
 *                                    [--suite SUITE] [--mirror URL] [--json PATH]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync } from 'node:fs';
import { cpus as hostCpus, loadavg, release as hostKernel, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { AccelMode } from '../../src/vm/driver.js';
import { requireTool } from '../../src/util/tools.js';
import { UserError } from '../../src/util/errors.js';
import { removeWorkDir } from '../../src/image/work-dir.js';
import { makeBusyboxExt4 } from '../../test/helpers/image-fixtures.js';
import { formatTable, summarize, writeResultsJson, type Summary } from '../lib/table.js';
import { atCleanup, runBench } from '../lib/cleanup.js';
import { mustSucceed, runClient, type ClientResult } from '../lib/proc.js';
import { SshvisorServe, clientOptions, makeKey } from '../lib/ssh-servers.js';
import { accelOption, imageDirOption, intOption, loadBenchImage } from '../lib/options.js';
import { ForeignQemuMonitor, dirUsage, fileSize, findEvent, waitForEvent, type DirUsage, type FileSize, type LogEvent } from '../startup/observe.js';

/** The images compared, the default (the baseline of every row) first. */
const IMAGES = ['default', 'debian', 'busybox'] as const;
type ImageName = (typeof IMAGES)[number];
const LABEL: Record<ImageName, string> = { default: 'default', debian: 'debian', busybox: 'busybox ext4' };

const WRITE_MIB = 100;
const WRITE_CMD = `dd if=/dev/urandom of=/root/x bs=1M count=${WRITE_MIB} && sync`;
const BUSYBOX_FS_MIB = 64;

interface Options {
  runs: number;
  accelFlag?: AccelMode;
  imageDir: string;
  suite?: string;
  mirror?: string;
  json?: string;
}

const USAGE = 'usage: images.js [--runs N] [--accel auto|kvm|tcg] [--image-dir DIR] [--suite SUITE] [--mirror URL] [--json PATH]\n';

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '3' },
      accel: { type: 'string' },
      'image-dir': { type: 'string' },
      suite: { type: 'string' },
      mirror: { type: 'string' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  return {
    runs: intOption('runs', values.runs),
    accelFlag: accelOption(values.accel),
    imageDir: imageDirOption(values['image-dir']),
    suite: values.suite,
    mirror: values.mirror,
    json: values.json,
  };
}

const log = (s: string): boolean => process.stderr.write(s + '\n');
const mib = (bytes: number | undefined, digits = 1): string => (bytes === undefined || Number.isNaN(bytes) ? '-' : (bytes / 1024 ** 2).toFixed(digits));

/** `sshvisor ARGS` from this build, in its own process group, timed. */
function cli(args: string[], timeoutMs = 300_000): Promise<ClientResult> {
  return runClient([process.execPath, SshvisorServe.mainJs(), ...args], { stdout: 'pipe', timeoutMs });
}

/** Allocated and apparent bytes of a VM's disk file(s) (disk.img for the default image, disk.qcow2 over a rootfs). */
function vmDisk(vmDir: string): FileSize & { files: string[] } {
  const files = readdirSync(vmDir).filter((f) => /^disk\.(img|qcow2)$/.test(f));
  let allocated = 0;
  let apparent = 0;
  for (const f of files) {
    const s = fileSize(join(vmDir, f));
    allocated += s?.allocated ?? 0;
    apparent += s?.apparent ?? 0;
  }
  return { allocated, apparent, files };
}

function du(path: string): number {
  return Number(execFileSync('du', ['-s', '-B1', path], { encoding: 'utf8' }).split(/\s/)[0]);
}

// ---------------------------------------------------------------------------------------------
// Per-VM measurements through one server.

interface VmSample {
  image: ImageName;
  server: 'cold' | 'templates';
  run: number;
  vm: string;
  /** `ssh -o SetEnv=SSHVISOR_IMAGE=I NAME@host true` for a new NAME: client spawn to exit. */
  startMs: number;
  /** The server event that started the VM (must be vm-boot, resp. vm-clone). */
  startEvent?: string;
  /** The disk file(s) right after the first login. */
  diskNew: FileSize & { files: string[] };
  /** `du` of DATA_DIR/vms/NAME then (RAM file, console log, sockets...). */
  vmDirNew: number;
  /** `sshvisor suspend NAME`: the CLI's wall time (Node start-up and control socket included). */
  suspendMs: number;
  /** The server's vm-suspend event's ms (QMP stop, state written and synced, QEMU gone). */
  suspendServerMs?: number;
  /** `ssh NAME@host true` of the suspended VM. */
  resumeMs: number;
  resumeEvent?: string;
  /** Cold server only: the 100 MiB write and the disk after it. */
  writeMs?: number;
  diskWritten?: FileSize & { files: string[] };
  /** The VM suspended once more at the end (so it uses no CPU); not in the tables. */
  finalSuspendMs?: number;
  finalSuspendServerMs?: number;
  foreignQemus: number;
  load1: number;
}

class VmBench {
  readonly samples: VmSample[] = [];

  constructor(
    readonly dir: string,
    readonly key: string,
    readonly ssh: string,
    readonly foreign: ForeignQemuMonitor,
  ) {}

  argv(sv: SshvisorServe, knownHosts: string, user: string, command: string, extra: string[] = []): string[] {
    return [this.ssh, ...clientOptions({ key: this.key, port: sv.port, knownHosts }), ...extra, `${user}@127.0.0.1`, command];
  }

  /** `ssh [extra] USER@host COMMAND`, timed; throws unless it exits 0; returns the VM start event seen meanwhile. */
  async run(sv: SshvisorServe, knownHosts: string, user: string, command: string, extra: string[] = []): Promise<{ ms: number; event?: string }> {
    const since = Date.now();
    const r = await runClient(this.argv(sv, knownHosts, user, command, extra), { timeoutMs: 300_000 });
    mustSucceed(`ssh ${[...extra, `${user}@127.0.0.1`].join(' ')} ${command}`, r);
    sv.qemuPid(user); // tracked: killed if the bench ends while it runs
    const ev = (['vm-boot', 'vm-clone', 'vm-resume'] as const).find((e) => findEvent(sv, e, since, (x) => x.vm === user));
    return { ms: r.ms, event: ev };
  }

  /** `sshvisor suspend USER`, timed, and the server's vm-suspend ms. */
  async suspend(sv: SshvisorServe, user: string): Promise<{ ms: number; serverMs?: number }> {
    const since = Date.now();
    const r = mustSucceed(`sshvisor suspend ${user}`, await cli(['suspend', user, '--data-dir', sv.dataDir]));
    const ev = await waitForEvent(sv, 'vm-suspend', since, (e: LogEvent) => e.vm === user, {
      timeoutMs: 10_000,
      failOn: ['vm-suspend-failed'],
      what: `${user}: suspend`,
      vm: user,
    }).catch(() => undefined);
    return { ms: r.ms, serverMs: ev ? Number(ev.ms) : undefined };
  }

  /**
   * A new VM of `image` through `sv` and what follows: its disk, suspend and
   * resume, (cold server) 100 MiB written and its disk again; it ends suspended.
   */
  async vm(sv: SshvisorServe, server: VmSample['server'], image: ImageName, run: number): Promise<VmSample> {
    const user = `${server === 'cold' ? 'cold' : 'clone'}-${image}-${run}`;
    const kh = join(this.dir, `known_hosts-${server}`);
    const foreignQemus = this.foreign.sample();
    const load1 = loadavg()[0]!;
    const start = await this.run(sv, kh, user, 'true', ['-o', `SetEnv=SSHVISOR_IMAGE=${image}`]);
    const want = server === 'cold' ? 'vm-boot' : 'vm-clone';
    if (start.event !== want) throw new Error(`${user}: expected ${want}, the server logged ${start.event ?? 'no VM start'}`);
    const vmDir = join(sv.dataDir, 'vms', user);
    const diskNew = vmDisk(vmDir);
    const vmDirNew = du(vmDir);
    const sus = await this.suspend(sv, user);
    const resume = await this.run(sv, kh, user, 'true');
    if (resume.event !== 'vm-resume') throw new Error(`${user}: expected vm-resume, the server logged ${resume.event ?? 'no VM start'}`);
    const s: VmSample = {
      image,
      server,
      run,
      vm: user,
      startMs: start.ms,
      startEvent: start.event,
      diskNew,
      vmDirNew,
      suspendMs: sus.ms,
      suspendServerMs: sus.serverMs,
      resumeMs: resume.ms,
      resumeEvent: resume.event,
      foreignQemus,
      load1,
    };
    if (server === 'cold') {
      const w = await this.run(sv, kh, user, WRITE_CMD);
      s.writeMs = w.ms;
      s.diskWritten = vmDisk(vmDir);
    }
    const fin = await this.suspend(sv, user);
    s.finalSuspendMs = fin.ms;
    s.finalSuspendServerMs = fin.serverMs;
    this.samples.push(s);
    log(
      `  ${user}: ${server === 'cold' ? 'cold boot' : 'clone'} + login ${Math.round(s.startMs)} ms, disk ${mib(diskNew.allocated)} MiB; ` +
        `suspend ${Math.round(s.suspendMs)} ms (server ${s.suspendServerMs ?? '-'}), resume + login ${Math.round(s.resumeMs)} ms` +
        (s.writeMs !== undefined ? `; ${WRITE_MIB} MiB written in ${Math.round(s.writeMs)} ms, disk ${mib(s.diskWritten?.allocated)} MiB` : ''),
    );
    return s;
  }
}

/** Fast teardown: SIGKILL the server's process group (and the QEMUs it tracked); the VMs' state goes with the temp dir. */
async function killServer(sv: SshvisorServe | undefined): Promise<void> {
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

// ---------------------------------------------------------------------------------------------
// Making the images.

interface MakeSample {
  what: 'build-debian' | 'import-busybox' | 'import-debian-rootfs';
  run: number;
  ms: number;
  /** Baseline: `cp --sparse=always FILE COPY && sync COPY` of the same file, just before. */
  copyMs?: number;
  stdout: string;
}

/** `cp --sparse=always src dst && sync dst`, timed (the floor of an import: the copy alone, flushed). */
async function timedCopy(src: string, dst: string): Promise<number> {
  const r = mustSucceed('cp', await runClient(['sh', '-c', 'cp --sparse=always "$1" "$2" && sync "$2"', 'sh', src, dst]));
  return r.ms;
}

interface ImageSize {
  /** `du -s -B1` of the image's directory. */
  du: number;
  /** Apparent size of rootfs.ext4 (the file system's size) for a rootfs image. */
  fsBytes?: number;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const opts = parseOptions();
  const defaultImage = loadBenchImage(opts.imageDir);
  const ssh = requireTool('ssh');
  requireTool('ssh-keygen');
  requireTool('mkfs.ext4');
  if (process.getuid?.() !== 0) throw new UserError('run the images bench as root: building a Debian image needs it (mmdebstrap --mode=root)');

  const loadStart = loadavg();
  const benchStart = Date.now();
  // Not makeTempDir: a Debian build killed half-way may leave /proc, /sys, /dev mounted in its tree,
  // and a plain rm -r would go through them. removeWorkDir unmounts first (and removes nothing if it cannot).
  const dir = mkdtempSync(join(tmpdir(), 'sshvisor-bench-images-'));
  let removed = false;
  const removeDir = (): void => {
    if (removed) return;
    try {
      removeWorkDir(dir);
      removed = true;
    } catch (err) {
      process.stderr.write(`bench: left ${dir}: ${(err as Error).message}\n`);
    }
  };
  atCleanup(removeDir);
  const foreign = new ForeignQemuMonitor(dir);
  const key = makeKey(join(dir, 'client_ed25519'), 'sshvisor-bench-client');
  const bench = new VmBench(dir, key, ssh, foreign);
  const userImages = IMAGES.filter((i) => i !== 'default').join(',');
  const serverArgs = ['--user-images', userImages];

  const makes: MakeSample[] = [];
  const sizes: Partial<Record<ImageName | 'debian-rootfs-import', ImageSize>> = {};
  const templates: Partial<Record<ImageName, { readyMs: number; du: number; dir: string }>> = {};
  let accel = '';
  let sv: SshvisorServe | undefined;
  try {
    log(`images bench: ${opts.runs} run(s) of each; images default (${opts.imageDir}), debian (built now), busybox (an ext4 imported now)`);
    const coldDir = join(dir, 'cold');
    const coldData = join(coldDir, 'data');
    mkdirSync(coldData, { recursive: true, mode: 0o700 });

    // ---- Making the images. --------------------------------------------------------------------
    sizes.default = { du: du(opts.imageDir) };
    log(`  building the Debian image (image build --debian${opts.suite ? ` --suite ${opts.suite}` : ''}${opts.mirror ? ` --mirror ${opts.mirror}` : ''})`);
    {
      const args = ['image', 'build', '--debian', '--name', 'debian', '--data-dir', coldData];
      if (opts.suite) args.push('--suite', opts.suite);
      if (opts.mirror) args.push('--mirror', opts.mirror);
      const r = mustSucceed('image build --debian', await cli(args, 900_000));
      makes.push({ what: 'build-debian', run: 1, ms: r.ms, stdout: r.stdout.trim() });
      const rootfs = join(coldData, 'images', 'debian', 'rootfs.ext4');
      sizes.debian = { du: du(join(coldData, 'images', 'debian')), fsBytes: fileSize(rootfs)?.apparent };
      log(`  debian built in ${Math.round(r.ms)} ms: ${mib(sizes.debian.du)} MiB on disk, file system ${mib(sizes.debian.fsBytes, 0)} MiB`);
    }
    const busyboxFile = makeBusyboxExt4(dir, join(dir, 'busybox.ext4'), { sizeMiB: BUSYBOX_FS_MIB });
    const scratch = join(dir, 'scratch');
    mkdirSync(scratch);
    for (let run = 1; run <= opts.runs; run++) {
      const copyMs = await timedCopy(busyboxFile, join(scratch, 'copy.ext4'));
      // The first import is the image the VMs use; the others go to a scratch data dir each.
      const data = run === 1 ? coldData : join(scratch, `data-${run}`);
      const r = mustSucceed('image import', await cli(['image', 'import', busyboxFile, '--name', 'busybox', '--data-dir', data]));
      makes.push({ what: 'import-busybox', run, ms: r.ms, copyMs, stdout: r.stdout.trim() });
      if (run === 1) sizes.busybox = { du: du(join(coldData, 'images', 'busybox')), fsBytes: fileSize(join(coldData, 'images', 'busybox', 'rootfs.ext4'))?.apparent };
      else removeWorkDir(data);
      log(`  busybox ext4 (${BUSYBOX_FS_MIB} MiB file system) imported in ${Math.round(r.ms)} ms (cp + sync of the file: ${Math.round(copyMs)} ms)`);
    }
    {
      // A bigger ext4: the Debian image's own rootfs.ext4, imported as a plain ext4 file.
      const src = join(coldData, 'images', 'debian', 'rootfs.ext4');
      const copyMs = await timedCopy(src, join(scratch, 'copy.ext4'));
      const data = join(scratch, 'data-debian-rootfs');
      const r = mustSucceed('image import', await cli(['image', 'import', src, '--name', 'debian-ext4', '--data-dir', data]));
      makes.push({ what: 'import-debian-rootfs', run: 1, ms: r.ms, copyMs, stdout: r.stdout.trim() });
      sizes['debian-rootfs-import'] = { du: du(join(data, 'images', 'debian-ext4')), fsBytes: fileSize(join(data, 'images', 'debian-ext4', 'rootfs.ext4'))?.apparent };
      removeWorkDir(data);
      log(`  the Debian rootfs.ext4 imported as ext4 in ${Math.round(r.ms)} ms (cp + sync of the file: ${Math.round(copyMs)} ms)`);
    }
    removeWorkDir(scratch);

    // The templates server gets the same images (hard links: the files are never written).
    const tplDir = join(dir, 'templates');
    const tplData = join(tplDir, 'data');
    mkdirSync(tplData, { recursive: true, mode: 0o700 });
    execFileSync('cp', ['-al', join(coldData, 'images'), join(tplData, 'images')]);

    // ---- Cold boots, suspend, resume, writes: --no-templates. ----------------------------------
    sv = await SshvisorServe.start({ dir: coldDir, imageDir: opts.imageDir, accel: opts.accelFlag, extraArgs: ['--no-templates', ...serverArgs] });
    accel = sv.accel;
    log(`  sshvisor serve --no-templates on 127.0.0.1:${sv.port} (accel ${sv.accel})`);
    for (let run = 1; run <= opts.runs; run++) for (const image of IMAGES) await bench.vm(sv, 'cold', image, run);
    await killServer(sv);
    sv = undefined;

    // ---- Clones: --templates. ------------------------------------------------------------------
    sv = await SshvisorServe.start({ dir: tplDir, imageDir: opts.imageDir, accel: opts.accelFlag, extraArgs: ['--templates', ...serverArgs] });
    const server = sv;
    log(`  sshvisor serve --templates on 127.0.0.1:${sv.port}: the default image's template builds now; a first VM of the others has theirs built`);
    // A rootfs image's template is built when its first VM starts: one cold-booted VM each, suspended once all are ready.
    const kick = IMAGES.filter((i) => i !== 'default').map((i) => `first-${i}`);
    const khKick = join(dir, 'known_hosts-kick');
    await Promise.all(
      IMAGES.filter((i) => i !== 'default').map((i) =>
        runClient(bench.argv(server, khKick, `first-${i}`, 'true', ['-o', `SetEnv=SSHVISOR_IMAGE=${i}`]), { timeoutMs: 300_000 }).then((r) => {
          mustSucceed(`ssh first-${i}@127.0.0.1 true`, r);
          server.qemuPid(`first-${i}`);
        }),
      ),
    );
    for (const image of IMAGES) {
      const ev = await waitForEvent(server, 'template-ready', 0, (e) => String(e.dir).split('/').pop()!.startsWith(`${image}-`), {
        timeoutMs: 300_000,
        failOn: ['template-failed'],
        what: `template of ${image}`,
      });
      templates[image] = { readyMs: Number(ev.ms), du: du(String(ev.dir)), dir: String(ev.dir) };
      log(`  template of ${image} ready in ${ev.ms} ms (${mib(templates[image].du)} MiB on disk)`);
    }
    for (const k of kick) mustSucceed(`sshvisor suspend ${k}`, await cli(['suspend', k, '--data-dir', server.dataDir]));
    for (let run = 1; run <= opts.runs; run++) for (const image of IMAGES) await bench.vm(server, 'templates', image, run);
    await killServer(sv);
    sv = undefined;

    const foreignStats = foreign.stop();
    report(bench, makes, sizes, templates, opts);
    const host = {
      accel,
      cpuModel: hostCpus()[0]?.model.trim() ?? 'unknown',
      hostCpus: hostCpus().length,
      hostMemoryMiB: Math.round(totalmem() / 1024 ** 2),
      hostKernel: hostKernel(),
      dataDirFs: spawnSync('stat', ['-f', '-c', '%T', dir], { encoding: 'utf8' }).stdout.trim(),
      node: process.version,
      qemuVersion: versionOf(['qemu-system-x86_64', '--version']),
      qemuImg: versionOf(['qemu-img', '--version']),
      guestKernel: defaultImage.manifest?.kernel.release ?? 'unknown',
      otherQemus: { ...foreignStats, note: "QEMUs not started by this bench (someone else's VMs), counted every 2 s; cpuSeconds: what they used while the bench ran" },
      loadavgAtStart: loadStart.map((l) => Math.round(l * 100) / 100),
      loadavgAtEnd: loadavg().map((l) => Math.round(l * 100) / 100),
      benchSeconds: Math.round((Date.now() - benchStart) / 1000),
      date: new Date().toISOString(),
    };
    process.stdout.write(
      `\nhost: ${host.cpuModel}, ${host.hostCpus} cores, accel ${accel}; other users' QEMUs: ${foreignStats.atStart} at start, up to ${foreignStats.max}, ` +
        `${foreignStats.cpuSeconds.toFixed(0)} CPU-s in ${foreignStats.wallSeconds.toFixed(0)} s; load ${host.loadavgAtStart[0]} -> ${host.loadavgAtEnd[0]}; ${host.benchSeconds} s in all\n`,
    );
    const out = writeResultsJson(
      'images',
      {
        bench: 'images',
        config: {
          runs: opts.runs,
          images: { default: opts.imageDir, debian: { suite: opts.suite ?? 'bookworm (default)', mirror: opts.mirror ?? "the host's apt sources" }, busybox: `${BUSYBOX_FS_MIB} MiB ext4 of the host's /bin/busybox (test/helpers/image-fixtures.ts)` },
          serverArgs,
          serverDefaults: 'memory, cpus and disk size are the server defaults (256 MiB, 1 vCPU, 1024 MiB disk)',
          accelFlag: opts.accelFlag ?? null,
          writeCommand: WRITE_CMD,
          clientOptions: clientOptions({ key, port: 0, knownHosts: '$TMP/known_hosts' }).map((o) => o.replace(dir, '$TMP')),
          units: {
            ms: 'wall ms of the client (ssh, or the sshvisor CLI: Node start-up and the control socket included)',
            serverMs: "the server log's vm-suspend ms",
            bytes: 'bytes; allocated = st_blocks * 512 of the VM disk file(s) (disk.img, disk.qcow2); du = du -s -B1',
          },
        },
        host,
        results: {
          summary: summaries(bench, makes),
          sizes,
          templates,
          makes,
          vms: bench.samples,
        },
      },
      opts.json,
    );
    log(`wrote ${out}`);
  } finally {
    await killServer(sv);
    foreign.stop();
    removeDir();
  }
}

/** First non-empty line a program prints for its version. */
function versionOf(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return `${r.stdout ?? ''}\n${r.stderr ?? ''}`.split('\n').map((l) => l.trim()).find(Boolean) ?? 'unknown';
}

// ---------------------------------------------------------------------------------------------
// Reporting.

type Metric =
  | 'coldStart'
  | 'cloneStart'
  | 'coldSuspend'
  | 'coldSuspendServer'
  | 'coldResume'
  | 'cloneSuspend'
  | 'cloneSuspendServer'
  | 'cloneResume'
  | 'write'
  | 'diskCold'
  | 'diskClone'
  | 'diskWritten';

const METRICS: Record<Metric, { server: VmSample['server']; get: (s: VmSample) => number | undefined }> = {
  coldStart: { server: 'cold', get: (s) => s.startMs },
  cloneStart: { server: 'templates', get: (s) => s.startMs },
  coldSuspend: { server: 'cold', get: (s) => s.suspendMs },
  coldSuspendServer: { server: 'cold', get: (s) => s.suspendServerMs },
  coldResume: { server: 'cold', get: (s) => s.resumeMs },
  cloneSuspend: { server: 'templates', get: (s) => s.suspendMs },
  cloneSuspendServer: { server: 'templates', get: (s) => s.suspendServerMs },
  cloneResume: { server: 'templates', get: (s) => s.resumeMs },
  write: { server: 'cold', get: (s) => s.writeMs },
  diskCold: { server: 'cold', get: (s) => s.diskNew.allocated },
  diskClone: { server: 'templates', get: (s) => s.diskNew.allocated },
  diskWritten: { server: 'cold', get: (s) => s.diskWritten?.allocated },
};

function summaries(bench: VmBench, makes: MakeSample[]): Record<string, Record<string, Summary>> {
  const out: Record<string, Record<string, Summary>> = {};
  for (const [m, def] of Object.entries(METRICS) as Array<[Metric, (typeof METRICS)[Metric]]>) {
    out[m] = {};
    for (const image of IMAGES) {
      const xs = bench.samples.filter((s) => s.server === def.server && s.image === image).map(def.get).filter((x): x is number => x !== undefined);
      out[m][image] = summarize(xs);
    }
  }
  for (const what of ['build-debian', 'import-busybox', 'import-debian-rootfs'] as const) {
    const ss = makes.filter((m) => m.what === what);
    out[what] = { ms: summarize(ss.map((m) => m.ms)), copyMs: summarize(ss.map((m) => m.copyMs).filter((x): x is number => x !== undefined)) };
  }
  return out;
}

function cell(s: Summary | undefined, scale = 1, digits = 0): string {
  if (!s || s.n === 0) return '-';
  const f = (n: number): string => (n / scale).toFixed(digits);
  return s.n === 1 ? f(s.median) : `${f(s.median)} [${f(s.min)}-${f(s.max)}]`;
}

function ratio(a: Summary | undefined, b: Summary | undefined): string {
  if (!a || !b || !(a.n > 0) || !(b.median > 0)) return '-';
  const r = a.median / b.median;
  return r >= 10 ? `${r.toFixed(0)}x` : `${r.toFixed(2)}x`;
}

function report(
  bench: VmBench,
  makes: MakeSample[],
  sizes: Partial<Record<ImageName | 'debian-rootfs-import', ImageSize>>,
  templates: Partial<Record<ImageName, { readyMs: number; du: number }>>,
  opts: Options,
): void {
  const sums = summaries(bench, makes);
  const row = (label: string, m: Metric, scale = 1, digits = 0): string[] => {
    const s = sums[m]!;
    return [label, cell(s.default, scale, digits), cell(s.debian, scale, digits), ratio(s.debian, s.default), cell(s.busybox, scale, digits), ratio(s.busybox, s.default)];
  };
  const one = (label: string, v: (i: ImageName) => number | undefined, scale = 1, digits = 0): string[] => {
    const s = (i: ImageName): Summary | undefined => {
      const x = v(i);
      return x === undefined ? undefined : summarize([x]);
    };
    return [label, cell(s('default'), scale, digits), cell(s('debian'), scale, digits), ratio(s('debian'), s('default')), cell(s('busybox'), scale, digits), ratio(s('busybox'), s('default'))];
  };
  const heads = (first: string): string[] => [first, LABEL.default, LABEL.debian, 'vs default', LABEL.busybox, 'vs default'];

  process.stdout.write(
    `\nper VM, ms: median [min-max] of ${opts.runs} (new VMs: ssh -o SetEnv=SSHVISOR_IMAGE=I NAME@host true; suspend: the sshvisor CLI's wall time)\n` +
      formatTable(heads('ms'), [
        row('cold boot to login (--no-templates)', 'coldStart'),
        row('template clone to login (--templates)', 'cloneStart'),
        row('`sshvisor suspend`, cold-booted VM (own RAM file)', 'coldSuspend'),
        row('  of which the server (vm-suspend)', 'coldSuspendServer'),
        row('resume to login, cold-booted VM', 'coldResume'),
        row("`sshvisor suspend`, a clone's first (RAM into its state)", 'cloneSuspend'),
        row('  of which the server (vm-suspend)', 'cloneSuspendServer'),
        row("resume to login, a clone's first", 'cloneResume'),
        row(`write ${WRITE_MIB} MiB inside (dd urandom + sync)`, 'write'),
        one('template built (template-ready; all three at once, n=1)', (i) => templates[i]?.readyMs),
      ]) +
      '\n',
  );
  const M = 1024 ** 2;
  process.stdout.write(
    `\nhost disk per VM, MiB allocated of its disk file (disk.img; disk.qcow2 over the image's rootfs.ext4), median [min-max]\n` +
      formatTable(heads('MiB'), [
        row('new VM, cold-booted, after its first login', 'diskCold', M, 1),
        row('new VM, a clone, after its first login', 'diskClone', M, 1),
        row(`after writing ${WRITE_MIB} MiB (cold-booted VM)`, 'diskWritten', M, 1),
        one('the template, shared by its clones (du)', (i) => templates[i]?.du, M, 1),
        one('the image, shared by all its VMs (du)', (i) => sizes[i]?.du, M, 1),
      ]) +
      '\n',
  );
  const mk = (what: MakeSample['what']): Record<string, Summary> => sums[what]!;
  const imgRows = [
    ['default', 'sshvisor (kernel + initramfs)', 'not built in this run (--image-dir)', '-', '-', mib(sizes.default?.du), '-'],
    ['debian', 'debian', 'image build --debian (1 run)', cell(mk('build-debian').ms), '-', mib(sizes.debian?.du), mib(sizes.debian?.fsBytes, 0)],
    ['busybox', 'ext4', `image import of a ${BUSYBOX_FS_MIB} MiB busybox ext4`, cell(mk('import-busybox').ms), cell(mk('import-busybox').copyMs), mib(sizes.busybox?.du), mib(sizes.busybox?.fsBytes, 0)],
    [
      '(debian-ext4)',
      'ext4',
      "image import of debian's rootfs.ext4 (1 run)",
      cell(mk('import-debian-rootfs').ms),
      cell(mk('import-debian-rootfs').copyMs),
      mib(sizes['debian-rootfs-import']?.du),
      mib(sizes['debian-rootfs-import']?.fsBytes, 0),
    ],
  ];
  process.stdout.write(
    `\nmaking the images (ms: median [min-max]; baseline: cp --sparse=always of the same file + sync)\n` +
      formatTable(['image', 'kind', 'made by', 'ms', 'cp + sync ms', 'on disk MiB', 'file system MiB'], imgRows) +
      '\n',
  );
}

await runBench(main);
