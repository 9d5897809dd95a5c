import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertExt4Magic, assertFsckClean, checkRootfs, detectSshDaemon, findShell, resolveInImage } from '../../src/image/rootfs-checks.js';
import { UserError } from '../../src/util/errors.js';

/**
 * The checks run on real ext4 images that mkfs.ext4 -d makes from small
 * trees here (no root needed, nothing mounted).
 */
const root = mkdtempSync(join(tmpdir(), 'sshvisor-rootfs-checks-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** An ext4 image of a tree that `build` makes. */
function ext4Of(build: (dir: string) => void): string {
  const tree = join(root, `tree${n}`);
  const file = join(root, `fs${n++}.ext4`);
  mkdirSync(tree);
  build(tree);
  execFileSync('truncate', ['-s', '16M', file]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-d', tree, file]);
  return file;
}

const program = (path: string): void => {
  copyFileSync('/bin/true', path);
  chmodSync(path, 0o755);
};

describe('resolving paths inside an image', () => {
  let usrmerge: string;
  before(() => {
    // Debian's layout: /bin → usr/bin, /bin/sh → dash; plus every kind of link.
    usrmerge = ext4Of((d) => {
      mkdirSync(join(d, 'usr/bin'), { recursive: true });
      mkdirSync(join(d, 'usr/sbin'), { recursive: true });
      mkdirSync(join(d, 'etc'));
      program(join(d, 'usr/bin/dash'));
      symlinkSync('usr/bin', join(d, 'bin'));
      symlinkSync('dash', join(d, 'usr/bin/sh'));
      symlinkSync('/usr/bin/../bin/./dash', join(d, 'etc/absolute'));
      symlinkSync(`${'../'.repeat(20)}usr/bin/dash`, join(d, 'etc/long-relative')); // longer than an inode holds
      symlinkSync('loop-b', join(d, 'etc/loop-a'));
      symlinkSync('loop-a', join(d, 'etc/loop-b'));
      symlinkSync('nowhere', join(d, 'etc/dangling'));
      writeFileSync(join(d, 'etc/plain'), 'x');
      program(join(d, 'usr/sbin/sshd'));
    });
  });

  test('/bin/sh through a directory link and a file link', async () => {
    assert.deepEqual(await resolveInImage(usrmerge, '/bin/sh'), { path: '/usr/bin/dash', type: 'regular', mode: 0o755 });
    assert.equal(await findShell(usrmerge), '/usr/bin/dash');
  });

  test('absolute targets, .. and ., slow (block-stored) targets', async () => {
    assert.equal((await resolveInImage(usrmerge, '/etc/absolute'))?.path, '/usr/bin/dash');
    assert.equal((await resolveInImage(usrmerge, '/etc/long-relative'))?.path, '/usr/bin/dash');
    assert.equal((await resolveInImage(usrmerge, '/usr/bin/../../etc/plain'))?.type, 'regular');
    assert.deepEqual(await resolveInImage(usrmerge, '/bin'), { path: '/usr/bin', type: 'directory', mode: 0o755 });
  });

  test('loops, dangling links, missing names and files used as directories resolve to null', async () => {
    assert.equal(await resolveInImage(usrmerge, '/etc/loop-a'), null);
    assert.equal(await resolveInImage(usrmerge, '/etc/dangling'), null);
    assert.equal(await resolveInImage(usrmerge, '/etc/missing'), null);
    assert.equal(await resolveInImage(usrmerge, '/etc/plain/x'), null);
    assert.equal(await resolveInImage(usrmerge, '/etc/with"quote'), null);
  });

  test('the SSH daemon: sshd is openssh', async () => {
    assert.equal(await detectSshDaemon(usrmerge), 'openssh');
  });
});

describe('what a root filesystem must pass', () => {
  test('dropbear, none, and a /bin/sh that is not executable or dangles', async () => {
    const dropbear = ext4Of((d) => {
      mkdirSync(join(d, 'bin'));
      mkdirSync(join(d, 'usr/sbin'), { recursive: true });
      program(join(d, 'bin/busybox'));
      symlinkSync('/bin/busybox', join(d, 'bin/sh'));
      program(join(d, 'usr/sbin/dropbear'));
    });
    assert.deepEqual(await checkRootfs(dropbear), { shell: '/bin/busybox', sshDaemon: 'dropbear' });
    const plainSh = ext4Of((d) => {
      mkdirSync(join(d, 'bin'));
      writeFileSync(join(d, 'bin/sh'), '#!/bin/nothing\n', { mode: 0o644 });
    });
    assert.equal(await findShell(plainSh), null);
    await assert.rejects(checkRootfs(plainSh, 'plain.ext4'), (err: unknown) => err instanceof UserError && /^plain\.ext4 has no \/bin\/sh/.test(err.message));
    const dangling = ext4Of((d) => {
      mkdirSync(join(d, 'bin'));
      symlinkSync('busybox', join(d, 'bin/sh'));
    });
    assert.equal(await findShell(dangling), null);
    assert.equal(await detectSshDaemon(dangling), 'none');
  });

  test('not ext4, missing, a directory: one line each', () => {
    const junk = join(root, 'junk');
    writeFileSync(junk, Buffer.alloc(4096, 7));
    assert.throws(() => assertExt4Magic(junk, 'junk'), /^UserError: junk is not an ext4 file system \(no ext4 superblock at byte 1024\)$/);
    writeFileSync(join(root, 'tiny'), 'x');
    assert.throws(() => assertExt4Magic(join(root, 'tiny'), 'tiny'), /tiny is not an ext4 file system/);
    assert.throws(() => assertExt4Magic(join(root, 'nope'), 'nope'), /^UserError: nope: no such file$/);
    assert.throws(() => assertExt4Magic(root, 'dir'), /^UserError: dir is not a regular file$/);
  });

  test('a corrupt file system is refused with e2fsck\'s complaint', async () => {
    const file = ext4Of((d) => writeFileSync(join(d, 'f'), 'x'));
    await assertFsckClean(file);
    // Scribble over the block group descriptors and bitmaps (the magic at 1080 stays).
    execFileSync('dd', ['if=/dev/urandom', `of=${file}`, 'bs=1024', 'seek=2', 'count=300', 'conv=notrunc'], { stdio: 'ignore' });
    await assert.rejects(assertFsckClean(file, 'bad.ext4'), (err: unknown) => err instanceof UserError && /^bad\.ext4 is a corrupt ext4 file system \(e2fsck: .+\); repair a copy with `e2fsck -f`$/.test(err.message));
  });
});
