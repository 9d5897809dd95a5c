import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Store } from '../../src/store/store.js';
import { runProgram, type RunResult } from '../helpers/sshvisor-server.js';
import { debugfsCat, debugfsStat, dockerArchive, makeBusyboxExt4, makeOciLayout, ociArchive } from '../helpers/image-fixtures.js';

const MAIN = resolve(import.meta.dirname, '..', '..', 'src', 'cli', 'main.js');
const MiB = 1024 * 1024;
const isRoot = process.getuid?.() === 0;

/** `sshvisor image ARGS --data-dir DIR`. */
const image = (dataDir: string, ...args: string[]): Promise<RunResult> => runProgram(process.execPath, [MAIN, 'image', ...args, '--data-dir', dataDir], { timeoutMs: 300_000 });
/** Everything in DATA_DIR/images: images and any temporary directory. */
const catalogueEntries = (dataDir: string): string[] => (existsSync(join(dataDir, 'images')) ? readdirSync(join(dataDir, 'images')).sort() : []);
const manifestOf = async (dataDir: string, name: string): Promise<Record<string, any>> => {
  const r = await image(dataDir, 'inspect', name, '--json');
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, any>;
};

/**
 * A refusal: exit status 1, nothing on stdout, one line on stderr matching
 * `re`, and DATA_DIR/images exactly as before (no image, no temporary dir).
 */
async function refused(dataDir: string, args: string[], re: RegExp): Promise<void> {
  const before = catalogueEntries(dataDir);
  const r = await image(dataDir, ...args);
  assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
  assert.equal(r.stdout, '');
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, not:\n${r.stderr}`);
  assert.match(lines[0] ?? '', re);
  assert.deepEqual(catalogueEntries(dataDir), before, `${args.join(' ')} left something behind`);
}

/**
 * The image catalogue through the real CLI, with root filesystems the test
 * makes itself: a busybox ext4 file (mkfs.ext4 -d) and a two-layer OCI
 * image (umoci) as an OCI archive, a docker archive and a layout directory.
 * Every bad input gets one line and leaves nothing behind.
 */
describe('image catalogue', () => {
  let work: string;
  let dataDir: string;
  let busybox: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'sshvisor-catalogue-e2e-'));
    dataDir = join(work, 'data');
    busybox = makeBusyboxExt4(work, join(work, 'busybox.ext4'), { files: { 'etc/hello': 'hello\n' } });
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  it('imports an ext4 rootfs, lists it, inspects it, removes it', async () => {
    const r = await image(dataDir, 'import', busybox, '--name', 'bb');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^imported image bb in [\d.]+s: ext4, [\d.]+ \S+ on disk \(file system 64\.0 MiB\), ssh daemon none\n$/);
    assert.equal(r.stderr, '', 'no progress lines without a terminal');
    const stored = join(dataDir, 'images', 'bb', 'rootfs.ext4');
    assert.deepEqual(readdirSync(join(dataDir, 'images', 'bb')).sort(), ['manifest.json', 'rootfs.ext4']);
    assert.ok(statSync(stored).blocks * 512 < 16 * MiB, 'stored sparse');
    assert.equal(debugfsCat(stored, '/etc/hello'), 'hello\n');

    const ls = await image(dataDir, 'ls');
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /^NAME +KIND +SIZE +VMS +CREATED\nbb +ext4 +[\d.]+ \S+ +0 +\d{4}-\d\d-\d\d \d\d:\d\d\n$/);

    const info = await manifestOf(dataDir, 'bb');
    assert.equal(info.kind, 'ext4');
    assert.equal(info.kernel, 'default');
    assert.equal(info.sshDaemon, 'none');
    assert.deepEqual(info.usedBy, []);
    assert.deepEqual(info.manifest.source, { type: 'ext4', file: busybox });
    assert.deepEqual(info.manifest.session, { env: [] });
    const sha = createHash('sha256').update(readFileSync(stored)).digest('hex');
    assert.deepEqual(info.manifest.files['rootfs.ext4'], { sha256: sha, size: 64 * MiB });
    const summary = await image(dataDir, 'inspect', 'bb');
    assert.match(summary.stdout, /^kind +ext4$/m);
    assert.match(summary.stdout, /^used by +no VM$/m);

    const rm = await image(dataDir, 'rm', 'bb');
    assert.deepEqual([rm.code, rm.stdout, rm.stderr], [0, 'removed image bb\n', '']);
    assert.deepEqual(catalogueEntries(dataDir), []);
    assert.equal((await image(dataDir, 'ls')).stdout, 'NAME  KIND  SIZE  VMS  CREATED\n');
  });

  it('refuses bad ext4 input with one line, leaving nothing', async () => {
    assert.equal((await image(dataDir, 'import', busybox, '--name', 'taken')).code, 0);
    const junk = join(work, 'junk.ext4');
    writeFileSync(junk, randomBytes(64 * 1024));
    await refused(dataDir, ['import', junk, '--name', 'x'], /^sshvisor: \S+junk\.ext4 is not an ext4 file system/);
    const noShell = makeBusyboxExt4(work, join(work, 'nosh.ext4'), { noShell: true });
    await refused(dataDir, ['import', noShell, '--name', 'x'], /^sshvisor: \S+nosh\.ext4 has no \/bin\/sh/);
    const corrupt = join(work, 'corrupt.ext4');
    cpSync(busybox, corrupt);
    spawnSync('dd', ['if=/dev/urandom', `of=${corrupt}`, 'bs=1024', 'seek=2', 'count=300', 'conv=notrunc'], { stdio: 'ignore' });
    await refused(dataDir, ['import', corrupt, '--name', 'x'], /^sshvisor: \S+corrupt\.ext4 is a corrupt ext4 file system \(e2fsck: .+\)/);
    await refused(dataDir, ['import', join(work, 'missing.ext4'), '--name', 'x'], /^sshvisor: \S+missing\.ext4: no such file$/);
    await refused(dataDir, ['import', busybox, '--name', 'taken'], /^sshvisor: image name taken is taken: pick another --name/);
    await refused(dataDir, ['import', busybox, '--name', 'Bad/Name'], /^sshvisor: bad image name "Bad\/Name"/);
    await refused(dataDir, ['import', '--name', 'x'], /^sshvisor: give either an ext4 FILE or --oci PATH$/);
    await refused(dataDir, ['inspect', 'nope'], /^sshvisor: no image nope \(images: taken\)$/);
    await refused(dataDir, ['rm', 'nope'], /^sshvisor: no image nope \(images: taken\)$/);
  });

  it('refuses to remove an image a VM uses, naming the VM', async () => {
    const store = Store.open(dataDir);
    try {
      assert.equal(store.createVm('alice', { image: 'taken', memoryMiB: 256, cpus: 1, diskMiB: 1024 }), true);
    } finally {
      store.close();
    }
    await refused(dataDir, ['rm', 'taken'], /^sshvisor: image taken is used by VM alice; it stays$/);
    assert.match((await image(dataDir, 'ls')).stdout, /\ntaken +ext4 +[\d.]+ \S+ +1 +/);
    assert.deepEqual((await manifestOf(dataDir, 'taken')).usedBy, ['alice']);
  });

  describe('OCI images', { skip: !isRoot && 'umoci unpack needs root' }, () => {
    let layout: string;
    let archive: string;
    before(() => {
      layout = makeOciLayout(join(work, 'oci'), { env: ['FOO=bar', 'SPACED=a b'], workingDir: '/srv' });
      archive = ociArchive(layout, join(work, 'image.tar'));
    });

    it('an OCI archive: layers applied in order, the whiteout honoured, Env and WorkingDir recorded', async () => {
      const r = await image(dataDir, 'import', '--oci', archive, '--name', 'oci1');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^imported image oci1 in [\d.]+s: oci, .* ssh daemon none\n$/);
      const fs = join(dataDir, 'images', 'oci1', 'rootfs.ext4');
      assert.equal(debugfsStat(fs, '/etc/doomed'), '', 'the whited-out file is gone');
      assert.equal(debugfsCat(fs, '/etc/upper'), 'upper\n');
      assert.match(debugfsStat(fs, '/usr/bin/busybox'), /Type: regular/);
      assert.match(debugfsStat(fs, '/'), /Type: directory\s+Mode:\s+0755/);
      const info = await manifestOf(dataDir, 'oci1');
      assert.equal(info.kind, 'oci');
      assert.deepEqual(info.manifest.source, { type: 'oci', path: archive, format: 'oci-archive', ref: 'v1' });
      assert.deepEqual(info.manifest.session, { env: ['FOO=bar', 'SPACED=a b'], workingDir: '/srv' });
      assert.ok(info.sizeBytes < 32 * MiB, `${info.sizeBytes} bytes on disk`);
    });

    it('a docker save archive (also gzipped) and a layout directory', async () => {
      const docker = dockerArchive(layout, join(work, 'docker.tar'), 'foo/bar:v1');
      assert.equal((await image(dataDir, 'import', '--oci', docker, '--name', 'dock', '--ref', 'foo/bar:v1')).code, 0);
      const d = await manifestOf(dataDir, 'dock');
      assert.deepEqual([d.manifest.source.format, d.manifest.source.ref], ['docker-archive', 'foo/bar:v1']);
      assert.deepEqual(d.manifest.session, { env: ['FOO=bar', 'SPACED=a b'], workingDir: '/srv' });
      assert.equal(debugfsStat(join(dataDir, 'images', 'dock', 'rootfs.ext4'), '/etc/doomed'), '');
      // `docker save | gzip`, as people keep them.
      writeFileSync(`${docker}.gz`, gzipSync(readFileSync(docker)));
      const gz = await image(dataDir, 'import', '--oci', `${docker}.gz`, '--name', 'dockgz');
      assert.equal(gz.code, 0, gz.stderr);
      assert.equal(debugfsCat(join(dataDir, 'images', 'dockgz', 'rootfs.ext4'), '/etc/upper'), 'upper\n');
      const r = await image(dataDir, 'import', '--oci', layout, '--name', 'lay');
      assert.equal(r.code, 0, r.stderr);
      const l = await manifestOf(dataDir, 'lay');
      assert.deepEqual([l.manifest.source.format, l.manifest.source.ref], ['oci-layout', 'v1']);
    });

    it('refuses bad OCI input with one line, leaving nothing', async () => {
      const junk = join(work, 'junk.tar');
      writeFileSync(junk, randomBytes(10_000));
      await refused(dataDir, ['import', '--oci', junk, '--name', 'x'], /^sshvisor: \S+junk\.tar is not a readable tar archive \(tar: This does not look like a tar archive\)$/);
      const truncated = join(work, 'truncated.tar');
      cpSync(archive, truncated);
      truncateSync(truncated, Math.floor(statSync(archive).size / 2));
      await refused(dataDir, ['import', '--oci', truncated, '--name', 'x'], /^sshvisor: \S+truncated\.tar is a truncated tar archive \(tar: Unexpected EOF in archive\)$/);
      // A tar that is whole but whose biggest layer has a changed byte: skopeo checks the digest.
      const bent = join(work, 'bent');
      cpSync(layout, bent, { recursive: true });
      const blobs = join(bent, 'blobs', 'sha256');
      const biggest = readdirSync(blobs).sort((a, b) => statSync(join(blobs, b)).size - statSync(join(blobs, a)).size)[0] as string;
      const bytes = readFileSync(join(blobs, biggest));
      const mid = bytes.length >> 1;
      bytes[mid] = (bytes[mid] as number) ^ 0xff;
      writeFileSync(join(blobs, biggest), bytes);
      await refused(dataDir, ['import', '--oci', ociArchive(bent, join(work, 'bent.tar')), '--name', 'x'], /^sshvisor: \S+bent\.tar is not a readable image: .*digest did not match/i);
      const noShell = ociArchive(makeOciLayout(join(work, 'oci-nosh'), { noShell: true }), join(work, 'nosh.tar'));
      await refused(dataDir, ['import', '--oci', noShell, '--name', 'x'], /^sshvisor: the image in \S+nosh\.tar has no \/bin\/sh/);
      await refused(dataDir, ['import', '--oci', archive, '--name', 'x', '--ref', 'v9'], /^sshvisor: \S+image\.tar has no image tagged v9 \(tags: v1\)$/);
      await refused(dataDir, ['import', '--oci', archive, '--name', 'oci1'], /^sshvisor: image name oci1 is taken/);
      await refused(dataDir, ['import', '--oci', join(work, 'nothing.tar'), '--name', 'x'], /^sshvisor: \S+nothing\.tar: no such file or directory$/);
    });
  });

  describe('a data dir that fills up half-way', { skip: !isRoot && 'needs root to mount a tmpfs' }, () => {
    let small: string;
    let mounted = false;
    before(() => {
      small = join(work, 'small');
      mkdirSync(small);
      const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=48m,mode=0700', 'tmpfs', small], { encoding: 'utf8' });
      assert.equal(m.status, 0, `mount tmpfs: ${m.stderr}`);
      mounted = true;
    });
    after(() => {
      if (mounted) spawnSync('umount', ['-l', small]);
    });

    it('an ext4 import bigger than the room left: one line, nothing left, room again after', async () => {
      const big = makeBusyboxExt4(work, join(work, 'big.ext4'), { sizeMiB: 96, files: { 'big.bin': randomBytes(60 * MiB) } });
      const free = statfsFree(small);
      await refused(small, ['import', big, '--name', 'big'], /^sshvisor: no space left in \S+\/images to import image big \(\d+ MiB free\); nothing was kept$/);
      assert.ok(statfsFree(small) >= free - MiB, 'the space is given back');
    });

    it('an OCI import that runs out of room: the same', async () => {
      // Every step holds two copies a while (archive extract + layout, layout + tree, tree + ext4): 60 MiB in 48.
      const heavy = ociArchive(makeOciLayout(join(work, 'oci-heavy'), { lowerFiles: { 'opt/blob': randomBytes(30 * MiB) } }), join(work, 'heavy.tar'));
      await refused(small, ['import', '--oci', heavy, '--name', 'heavy'], /^sshvisor: no space left in \S+\/images to import image heavy \(\d+ MiB free\); nothing was kept$/);
    });
  });
});

function statfsFree(path: string): number {
  const r = spawnSync('df', ['-B1', '--output=avail', path], { encoding: 'utf8' });
  return Number(r.stdout.trim().split('\n').pop());
}
