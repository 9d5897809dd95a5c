import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allocatedBytes, assertImageName, assertImageNameFree, imagePath, listImages, readImage, removeImage } from '../../src/image/catalogue.js';
import { ext4Geometry } from '../../src/image/mkfs-from-dir.js';
import { sweepStaleWorkDirs, withImageWorkDir } from '../../src/image/work-dir.js';
import type { ImageManifest } from '../../src/image/manifest.js';
import type { RootfsManifest } from '../../src/image/rootfs-manifest.js';
import { humanBytes, imageTable } from '../../src/cli/image-command.js';
import { UserError } from '../../src/util/errors.js';

const root = mkdtempSync(join(tmpdir(), 'sshvisor-catalogue-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDataDir = (): string => join(root, `d${n++}`);
const sha = 'a'.repeat(64);

const defaultManifest: ImageManifest = {
  format: 1,
  contract: 3,
  builtAt: '2026-01-02T03:04:05.000Z',
  kernel: { package: 'linux-image-6.1.0-57-cloud-amd64', version: '6.1.192-3', release: '6.1.0-57-cloud-amd64' },
  packages: {},
  modules: [],
  guest: { agent: { minVersion: 1, maxVersion: 1 } },
  files: { vmlinuz: { sha256: sha, size: 1 }, 'initrd.img': { sha256: sha, size: 1 } },
};

const rootfsManifest = (source: RootfsManifest['source']): RootfsManifest => ({
  format: 1,
  kind: 'rootfs',
  source,
  createdAt: '2026-02-03T04:05:06.000Z',
  fsBytes: 64 * 1024 * 1024,
  sshDaemon: 'dropbear',
  session: { env: ['FOO=bar'], workingDir: '/srv' },
  files: { 'rootfs.ext4': { sha256: sha, size: 64 * 1024 * 1024 } },
});

/** An image directory as an import leaves it, with a sparse rootfs.ext4 holding one written MiB. */
function addImage(dataDir: string, name: string, manifest: ImageManifest | RootfsManifest): void {
  const dir = join(dataDir, 'images', name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
  if ('kind' in manifest) {
    const fd = openSync(join(dir, 'rootfs.ext4'), 'w');
    writeSync(fd, Buffer.alloc(1024 * 1024, 1));
    ftruncateSync(fd, manifest.fsBytes);
    closeSync(fd);
  }
}

const throwsUser = (fn: () => unknown, re: RegExp): void => assert.throws(fn, (err: unknown) => err instanceof UserError && re.test(err.message));

describe('image names', () => {
  test('a-z 0-9 . _ -, starting with a letter or digit, at most 32', () => {
    for (const ok of ['default', 'debian', 'alpine-3.20', 'a', '0', 'my_img', 'x'.repeat(32)]) assert.doesNotThrow(() => assertImageName(ok), ok);
    for (const bad of ['', 'Debian', '-x', '.hidden', 'a/b', '..', 'a b', 'x'.repeat(33), 'é']) throwsUser(() => assertImageName(bad), /^bad image name/);
  });
  test('names ending like sshvisor temporary directories are refused', () => {
    for (const bad of ['default.building', 'x.old', 'y.partial']) throwsUser(() => assertImageName(bad), /kept for sshvisor's temporary directories/);
  });
  test('imagePath never leaves DATA_DIR/images', () => {
    assert.equal(imagePath('/data', 'debian'), '/data/images/debian');
    throwsUser(() => imagePath('/data', '../etc'), /bad image name/);
  });
});

describe('listing and reading', () => {
  test('kinds, sizes on disk, dates and kernels from the manifests; temporary dirs left out', () => {
    const dataDir = freshDataDir();
    addImage(dataDir, 'default', defaultManifest);
    addImage(dataDir, 'debian', rootfsManifest({ type: 'debian', suite: 'bookworm', mirror: 'http://deb.debian.org/debian', packages: ['apt'] }));
    addImage(dataDir, 'oci1', rootfsManifest({ type: 'oci', path: '/x.tar', format: 'oci-archive', ref: 'v1' }));
    for (const tmp of ['default.building', 'default.old', '.import-x-1-abcdef', '.build-y-2-abcdef']) mkdirSync(join(dataDir, 'images', tmp));
    writeFileSync(join(dataDir, 'images', 'stray-file'), '');
    const images = listImages(dataDir);
    assert.deepEqual(images.map((i) => [i.name, i.kind, i.kernel, i.createdAt]), [
      ['debian', 'debian', 'default', '2026-02-03T04:05:06.000Z'],
      ['default', 'sshvisor', '6.1.0-57-cloud-amd64', '2026-01-02T03:04:05.000Z'],
      ['oci1', 'oci', 'default', '2026-02-03T04:05:06.000Z'],
    ]);
    const debian = images[0]!;
    // 1 MiB written in a 64 MiB sparse file: the size is what the disk holds.
    assert.ok(debian.sizeBytes >= 1024 * 1024 && debian.sizeBytes < 2 * 1024 * 1024, String(debian.sizeBytes));
    assert.equal(debian.sshDaemon, 'dropbear');
    assert.equal(images[1]!.sshDaemon, 'none');
  });

  test('an unknown name names the images there are; an empty catalogue says how to make one', () => {
    const dataDir = freshDataDir();
    throwsUser(() => readImage(dataDir, 'nope'), /^no image nope \(there are none; build one with `sshvisor image build`\)$/);
    addImage(dataDir, 'default', defaultManifest);
    addImage(dataDir, 'b', rootfsManifest({ type: 'ext4', file: '/b.ext4' }));
    throwsUser(() => readImage(dataDir, 'nope'), /^no image nope \(images: b, default\)$/);
  });

  test('a broken image is reported to onBroken and left out, not fatal', () => {
    const dataDir = freshDataDir();
    addImage(dataDir, 'good', rootfsManifest({ type: 'ext4', file: '/g.ext4' }));
    mkdirSync(join(dataDir, 'images', 'nomanifest'));
    addImage(dataDir, 'norootfs', rootfsManifest({ type: 'ext4', file: '/n.ext4' }));
    rmSync(join(dataDir, 'images', 'norootfs', 'rootfs.ext4'));
    mkdirSync(join(dataDir, 'images', 'badjson'));
    writeFileSync(join(dataDir, 'images', 'badjson', 'manifest.json'), '{');
    const broken: string[] = [];
    assert.deepEqual(listImages(dataDir, (name) => broken.push(name)).map((i) => i.name), ['good']);
    assert.deepEqual(broken, ['badjson', 'nomanifest', 'norootfs']);
  });

  test('allocatedBytes counts blocks, not lengths', () => {
    const dir = join(root, 'sparse');
    mkdirSync(dir);
    const fd = openSync(join(dir, 'f'), 'w');
    ftruncateSync(fd, 1024 ** 3);
    closeSync(fd);
    assert.ok(allocatedBytes(dir) < 1024 * 1024);
  });
});

describe('removing', () => {
  test('refused while VMs use it, naming them; then removed', () => {
    const dataDir = freshDataDir();
    addImage(dataDir, 'default', defaultManifest);
    addImage(dataDir, 'deb', rootfsManifest({ type: 'ext4', file: '/d.ext4' }));
    throwsUser(() => removeImage(dataDir, 'deb', ['alice']), /^image deb is used by VM alice; it stays$/);
    throwsUser(() => removeImage(dataDir, 'deb', ['alice', 'bob']), /^image deb is used by 2 VMs \(alice, bob\); it stays$/);
    throwsUser(() => removeImage(dataDir, 'default', []), /provides the kernel and initramfs the other images boot with \(deb\); remove those first/);
    throwsUser(() => removeImage(dataDir, 'nope', []), /^no image nope \(images: deb, default\)$/);
    // Its templates go with it; another image's stay.
    mkdirSync(join(dataDir, 'templates', 'deb-0123456789abcdef'), { recursive: true });
    mkdirSync(join(dataDir, 'templates', 'deb-x-0123456789abcdef'), { recursive: true });
    removeImage(dataDir, 'deb', []);
    assert.deepEqual(readdirSync(join(dataDir, 'templates')), ['deb-x-0123456789abcdef']);
    removeImage(dataDir, 'default', []);
    assert.deepEqual(readdirSync(join(dataDir, 'images')), []);
  });

  test('no root filesystem may take the name default (it always names the kernel and initramfs image)', () => {
    throwsUser(() => assertImageNameFree(freshDataDir(), 'default'), /image name default is kept for the image `sshvisor image build` makes/);
  });
});

describe('work dirs', () => {
  test('a failure removes the work dir; success leaves only what was renamed into place', async () => {
    const images = join(freshDataDir(), 'images');
    await assert.rejects(
      withImageWorkDir(images, 'x', 'import', 'import image x', async (work) => {
        writeFileSync(join(work.dir, 'scratch'), 'x');
        throw new UserError('boom');
      }),
      /^UserError: boom$/,
    );
    assert.deepEqual(readdirSync(images), []);
    await withImageWorkDir(images, 'y', 'import', 'import image y', async (work) => {
      writeFileSync(work.rootfs, 'fs');
      work.install({ hello: 1 });
    });
    assert.deepEqual(readdirSync(images), ['y']);
    assert.deepEqual(readdirSync(join(images, 'y')).sort(), ['manifest.json', 'rootfs.ext4']);
  });

  test('an ENOSPC becomes one line saying the disk is full', async () => {
    const images = join(freshDataDir(), 'images');
    const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    await assert.rejects(
      withImageWorkDir(images, 'z', 'build', 'build image z', async () => {
        throw enospc;
      }),
      (err: unknown) => err instanceof UserError && /^no space left in .*\/images to build image z \(\d+ MiB free\); nothing was kept$/.test(err.message),
    );
    assert.deepEqual(readdirSync(images), []);
  });

  test('work dirs of dead processes are swept; a live one is kept', async () => {
    const images = join(freshDataDir(), 'images');
    const child = spawn('sleep', ['1']);
    const deadPid = child.pid as number;
    await new Promise((r) => child.on('exit', r));
    mkdirSync(join(images, `.import-old-${deadPid}-abcdef`), { recursive: true });
    mkdirSync(join(images, `.import-live-${process.pid}-abcdef`));
    sweepStaleWorkDirs(images);
    assert.deepEqual(readdirSync(images), [`.import-live-${process.pid}-abcdef`]);
    assert.equal(existsSync(join(images, `.import-old-${deadPid}-abcdef`)), false);
  });
});

describe('ext4 geometry', () => {
  test('content plus as much again, at least 1 GiB more, in 64 MiB steps; inodes for twice the entries', () => {
    const MiB = 1024 * 1024;
    assert.deepEqual(ext4Geometry({ bytes: 10 * MiB, entries: 100 }), { fsBytes: 1088 * MiB, inodes: 69632 });
    const big = ext4Geometry({ bytes: 3000 * MiB, entries: 400_000 });
    assert.equal(big.fsBytes, 6016 * MiB);
    assert.equal(big.inodes, 800_000);
  });
});

describe('image ls table', () => {
  test('columns padded, sizes readable, VM counts', () => {
    const dataDir = freshDataDir();
    addImage(dataDir, 'default', defaultManifest);
    addImage(dataDir, 'debian', rootfsManifest({ type: 'debian', suite: 'bookworm', mirror: 'm', packages: [] }));
    const images = listImages(dataDir).map((i) => ({ ...i, sizeBytes: i.name === 'default' ? 40 * 1024 * 1024 : 1536 * 1024 * 1024 }));
    const table = imageTable(images, new Map([['debian', ['alice', 'bob']]]));
    assert.equal(
      table,
      ['NAME     KIND      SIZE      VMS  CREATED', 'debian   debian    1.5 GiB   2    2026-02-03 04:05', 'default  sshvisor  40.0 MiB  0    2026-01-02 03:04'].join('\n'),
    );
    assert.equal(humanBytes(512), '512 B');
    assert.equal(humanBytes(300 * 1024 * 1024), '300 MiB');
  });
});
