import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkLimits, matchesDefaults, overlayBytes, resolveShape } from '../../src/manager/vm-shape.js';
import { UserError } from '../../src/util/errors.js';
import type { GuestImage, ImageSource } from '../../src/image/image.js';
import type { VmRecord } from '../../src/store/store.js';

const dataDir = mkdtempSync(join(tmpdir(), 'sshvisor-shape-'));
after(() => rmSync(dataDir, { recursive: true, force: true }));

const limits = { memoryMiB: 256, cpus: 1, diskSizeMiB: 1024, maxMemoryMiB: 2048, maxCpus: 2, maxDiskSizeMiB: 8192 };
const image = (name: string): GuestImage => ({ name, kernel: '/k', append: [], agent: true });
const images: ImageSource = {
  defaultName: 'debian',
  names: () => ['debian', 'default'],
  load: (name) => {
    if (!['debian', 'default'].includes(name)) throw new UserError(`no image ${name}; images: debian, default`);
    return image(name);
  },
};
const record = (shape: VmRecord['shape']): VmRecord =>
  ({ name: 'x', createdAt: 0, lastBootAt: null, lastExitReason: null, lastExitDetail: null, lastExitAt: null, boots: 0, lastSuspendAt: null, lastResumeAt: null, suspends: 0, resumes: 0, shape });

const big: GuestImage = { ...image('big'), rootfs: { path: '/r', fsBytes: 1331 * 1024 * 1024 - 5, sha256: 'x', env: [] } };
const withBig: ImageSource = { ...images, load: (n) => (n === 'big' ? big : images.load(n)) };

describe('resolveShape', () => {
  test('a disk is never smaller than its image: the default grows to it, a smaller request is refused', () => {
    assert.equal(resolveShape('b1', { dataDir, images: withBig, limits, record: undefined }, { image: 'big' }).shape.diskMiB, 1331);
    assert.equal(resolveShape('b2', { dataDir, images: withBig, limits, record: undefined }, { image: 'big', diskMiB: 4096 }).shape.diskMiB, 4096);
    assert.throws(
      () => resolveShape('b3', { dataDir, images: withBig, limits, record: undefined }, { image: 'big', diskMiB: 500 }),
      /disk size 500 MiB is smaller than image big's file system; ask for at least 1331 MiB/,
    );
  });

  test('a new VM gets the request over the server defaults and the default image', () => {
    const r = resolveShape('new1', { dataDir, images, limits, record: undefined }, { memoryMiB: 512 });
    assert.deepEqual([r.isNew, r.shape, r.image.name], [true, { image: 'debian', memoryMiB: 512, cpus: 1, diskMiB: 1024 }, 'debian']);
  });

  test('an existing VM keeps what it was created with, whatever is asked now', () => {
    const shape = { image: 'default', memoryMiB: 300, cpus: 2, diskMiB: 2048 };
    const r = resolveShape('old1', { dataDir, images, limits, record: record(shape) }, { image: 'debian', memoryMiB: 64 });
    assert.deepEqual([r.isNew, r.shape, r.image.name], [false, shape, 'default']);
  });

  test('a VM from before shapes were recorded is the default image\'s, on the server defaults', () => {
    mkdirSync(join(dataDir, 'vms', 'legacy'), { recursive: true });
    writeFileSync(join(dataDir, 'vms', 'legacy', 'disk.img'), '');
    const r = resolveShape('legacy', { dataDir, images, limits, record: record(null) }, { image: 'debian' });
    assert.deepEqual([r.isNew, r.shape.image, r.image.name, r.shape.memoryMiB], [false, 'default', 'default', 256]);
  });

  test('a copy-on-write disk without its record is refused, never taken for the default image\'s data disk', () => {
    mkdirSync(join(dataDir, 'vms', 'orphan'), { recursive: true });
    writeFileSync(join(dataDir, 'vms', 'orphan', 'disk.qcow2'), '');
    assert.throws(() => resolveShape('orphan', { dataDir, images, limits, record: undefined }), /lost the record of its image/);
  });

  test('an unknown image and values beyond the limits are refused, naming what is allowed', () => {
    assert.throws(() => resolveShape('n2', { dataDir, images, limits, record: undefined }, { image: 'nope' }), /no image nope; images: debian, default/);
    assert.throws(() => resolveShape('n3', { dataDir, images, limits, record: undefined }, { memoryMiB: 4096 }), /memory 4096 MiB is outside what this server allows \(64 MiB to 2048 MiB\)/);
    assert.throws(() => checkLimits({ memoryMiB: 256, cpus: 3, diskMiB: 1024 }, limits), /cpus 3 is outside .* \(1 to 2\)/);
    assert.throws(() => checkLimits({ memoryMiB: 256, cpus: 1, diskMiB: 8 }, limits), /disk size 8 MiB/);
  });
});

test('templates serve the default shape only; a disk is never smaller than its image', () => {
  assert.equal(matchesDefaults({ image: 'x', memoryMiB: 256, cpus: 1, diskMiB: 1024 }, limits, image('x')), true);
  assert.equal(matchesDefaults({ image: 'x', memoryMiB: 512, cpus: 1, diskMiB: 1024 }, limits, image('x')), false);
  // A rootfs image bigger than the default disk: its VMs' disks (and its template's) are the image's size.
  assert.equal(matchesDefaults({ image: 'big', memoryMiB: 256, cpus: 1, diskMiB: 1331 }, limits, big), true);
  assert.equal(overlayBytes(2 * 1024 ** 3, 1024), 2 * 1024 ** 3);
  assert.equal(overlayBytes(64 * 1024 ** 2, 1024), 1024 ** 3);
});
