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
import { mkdirSync, mkdtempSync } from 'node:fs';
import { cpus as hostCpus, loadavg, release as hostKernel, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { AccelMode } from '../../src/vm/driver.js';
import { requireTool } from '../../src/util/tools.js';
import { UserError } from '../../src/util/errors.js';
import { removeWorkDir } from '../../src/image/work-dir.js';
import { writeResultsJson } from '../lib/table.js';
import { atCleanup, runBench } from '../lib/cleanup.js';
import { mustSucceed, runClient } from '../lib/proc.js';
import { SshvisorServe, clientOptions, killServer, makeKey } from '../lib/ssh-servers.js';
import { accelOption, imageDirOption, intOption, loadBenchImage } from '../lib/options.js';
import { ForeignQemuMonitor, waitForEvent } from '../startup/observe.js';
import { BUSYBOX_FS_MIB, makeImages } from './make-images.js';
import { report, summaries } from './report.js';
import { IMAGES, VmBench, WRITE_CMD, cli, du, log, mib, type ImageName } from './vm-sample.js';

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

  const templates: Partial<Record<ImageName, { readyMs: number; du: number; dir: string }>> = {};
  let accel = '';
  let sv: SshvisorServe | undefined;
  try {
    log(`images bench: ${opts.runs} run(s) of each; images default (${opts.imageDir}), debian (built now), busybox (an ext4 imported now)`);
    const coldDir = join(dir, 'cold');
    const coldData = join(coldDir, 'data');
    mkdirSync(coldData, { recursive: true, mode: 0o700 });

    // ---- Making the images. --------------------------------------------------------------------
    const { makes, sizes } = await makeImages(dir, coldData, opts);

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

await runBench(main);
