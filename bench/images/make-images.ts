/**
 * Making the images the bench compares: `image build --debian` once,
 * `image import` of a small busybox ext4 --runs times and of the Debian
 * image's own rootfs.ext4 once, each import beside copying the same file
 * (cp + sync); and each image's size on disk.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { removeWorkDir } from '../../src/image/work-dir.js';
import { makeBusyboxExt4 } from '../../test/helpers/image-fixtures.js';
import { mustSucceed, runClient } from '../lib/proc.js';
import { fileSize } from '../startup/observe.js';
import { cli, du, log, mib, type ImageName } from './vm-sample.js';

export const BUSYBOX_FS_MIB = 64;

export interface MakeSample {
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

export interface ImageSize {
  /** `du -s -B1` of the image's directory. */
  du: number;
  /** Apparent size of rootfs.ext4 (the file system's size) for a rootfs image. */
  fsBytes?: number;
}

export type ImageSizes = Partial<Record<ImageName | 'debian-rootfs-import', ImageSize>>;

/**
 * Makes the Debian and busybox images in `coldData` (the data dir of the
 * bench's first server: the images its VMs use; further imports go to a
 * scratch dir under `dir`, removed here) and sizes all of them.
 */
export async function makeImages(
  dir: string,
  coldData: string,
  opts: { runs: number; imageDir: string; suite?: string; mirror?: string },
): Promise<{ makes: MakeSample[]; sizes: ImageSizes }> {
  const makes: MakeSample[] = [];
  const sizes: ImageSizes = {};
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
  return { makes, sizes };
}
