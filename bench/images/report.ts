/**
 * The images bench's figures: the per-VM metrics summarized per image, and
 * the tables printed at the end (per VM ms, host disk per VM, making the
 * images), each image beside the default image's figure.
 */
import { formatTable, summarize, type Summary } from '../lib/table.js';
import { BUSYBOX_FS_MIB, type ImageSizes, type MakeSample } from './make-images.js';
import { IMAGES, WRITE_MIB, mib, type ImageName, type VmBench, type VmSample } from './vm-sample.js';

const LABEL: Record<ImageName, string> = { default: 'default', debian: 'debian', busybox: 'busybox ext4' };

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

export function summaries(bench: VmBench, makes: MakeSample[]): Record<string, Record<string, Summary>> {
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

export function report(
  bench: VmBench,
  makes: MakeSample[],
  sizes: ImageSizes,
  templates: Partial<Record<ImageName, { readyMs: number; du: number }>>,
  opts: { runs: number },
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
