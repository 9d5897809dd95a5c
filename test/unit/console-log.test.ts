import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConsoleLog, readLogHistory } from '../../src/console/console-log.js';

const root = mkdtempSync(join(tmpdir(), 'sshvisor-console-log-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = (): string => join(root, `vms${n++}`, 'alice');

/** Rotated files oldest first, then console.log, concatenated. */
function onDisk(dir: string): string {
  const rotated = readdirSync(dir)
    .filter((f) => /^console\.log\.\d+$/.test(f))
    .sort((a, b) => Number(b.split('.').pop()) - Number(a.split('.').pop()));
  return [...rotated, 'console.log'].map((f) => readFileSync(join(dir, f), 'latin1')).join('');
}

describe('ConsoleLog', () => {
  test('appends the same bytes to DATA_DIR/vms/NAME/console.log, created 0600 (dir 0700)', async () => {
    const dir = freshDir();
    const log = new ConsoleLog({ dir });
    const old = process.umask(0o000);
    try {
      log.write(Buffer.from('hello '));
      log.write(Buffer.from([0x00, 0xff, 0x1b]));
      log.write(Buffer.from('world\r\n'));
      await log.flush();
    } finally {
      process.umask(old);
    }
    assert.deepEqual(readFileSync(join(dir, 'console.log')), Buffer.concat([Buffer.from('hello '), Buffer.from([0, 0xff, 0x1b]), Buffer.from('world\r\n')]));
    assert.equal(statSync(join(dir, 'console.log')).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(log.bytesWritten, 16);
    assert.equal(log.bytesPending, 0);
    await log.close();
    log.write(Buffer.from('after close'));
    await log.flush();
    assert.equal(readFileSync(join(dir, 'console.log'), 'latin1').includes('after close'), false);
  });

  test('continues an existing log (and tightens its mode)', async () => {
    const dir = freshDir();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'console.log'), 'previous boot\n', { mode: 0o644 });
    const log = new ConsoleLog({ dir, maxBytes: 20 });
    log.write(Buffer.from('next boot\n'));
    await log.close();
    assert.equal(onDisk(dir), 'previous boot\nnext boot\n');
    // 14 bytes were there already, so the limit of 20 forced a rotation mid-write.
    assert.equal(readFileSync(join(dir, 'console.log.1'), 'latin1'), 'previous boot\nnext b');
    assert.equal(statSync(join(dir, 'console.log')).mode & 0o777, 0o600);
  });

  test('rotates at maxBytes: no file exceeds it, `keep` rotated files, newest bytes kept', async () => {
    const dir = freshDir();
    const log = new ConsoleLog({ dir, maxBytes: 100, keep: 3 });
    let all = '';
    for (let i = 0; i < 200; i++) {
      const line = `line ${i} ${'x'.repeat(i % 17)}\n`;
      all += line;
      log.write(Buffer.from(line));
      if (i % 7 === 0) await log.flush(); // some writes coalesce, some go one by one
    }
    await log.close();
    const files = readdirSync(dir).sort();
    assert.deepEqual(files, ['console.log', 'console.log.1', 'console.log.2', 'console.log.3']);
    for (const f of files) assert.ok(statSync(join(dir, f)).size <= 100, `${f} is too big`);
    for (const f of files.slice(1)) assert.equal(statSync(join(dir, f)).size, 100);
    const kept = onDisk(dir);
    assert.equal(kept, all.slice(all.length - kept.length));
    assert.ok(kept.length > 300);
  });

  test('keep: 0 keeps only console.log', async () => {
    const dir = freshDir();
    const log = new ConsoleLog({ dir, maxBytes: 10, keep: 0 });
    log.write(Buffer.from('0123456789abcdef'));
    await log.close();
    assert.deepEqual(readdirSync(dir), ['console.log']);
    assert.equal(readFileSync(join(dir, 'console.log'), 'latin1'), 'abcdef');
  });

  test('a disk slower than the guest: memory stays bounded and the hole is marked', async () => {
    const dir = freshDir();
    const log = new ConsoleLog({ dir, maxPendingBytes: 1000 });
    const t0 = process.hrtime.bigint();
    // All synchronous: no write can complete in between, like a guest flooding a stuck disk.
    for (let i = 0; i < 10; i++) log.write(Buffer.from(`${i}`.repeat(300)));
    assert.ok(Number(process.hrtime.bigint() - t0) / 1e6 < 50, 'write() must not wait for the disk');
    assert.ok(log.bytesPending <= 1000);
    assert.equal(log.bytesDropped, 2100);
    log.write(Buffer.from('partial line'));
    await log.flush();
    log.write(Buffer.from('more\n'));
    await log.close();
    const text = readFileSync(join(dir, 'console.log'), 'latin1');
    assert.equal(text, `${'0'.repeat(300)}${'1'.repeat(300)}${'2'.repeat(300)}\r\n[sshvisor: 2100 bytes not logged]\r\npartial linemore\n`);
  });

  test('a write bigger than the bound is dropped and still marked', async () => {
    const dir = freshDir();
    const log = new ConsoleLog({ dir, maxPendingBytes: 10 });
    log.write(Buffer.from('x'.repeat(50)));
    await log.close();
    assert.equal(readFileSync(join(dir, 'console.log'), 'latin1'), '[sshvisor: 50 bytes not logged]\r\n');
  });

  test('disk errors are reported once, never thrown, and flush still resolves', async () => {
    const base = join(root, `file${n++}`);
    writeFileSync(base, 'not a directory');
    const errors: unknown[] = [];
    const log = new ConsoleLog({ dir: join(base, 'alice'), onError: (e) => errors.push(e), retryMs: 60_000 });
    log.write(Buffer.from('lost'));
    await log.flush();
    log.write(Buffer.from('dropped while backing off'));
    await log.flush();
    await log.close();
    assert.equal(errors.length, 1);
    assert.match(String((errors[0] as Error).message), /ENOTDIR|EEXIST/);
    assert.ok(log.bytesDropped >= 4 + 25);
    assert.equal(log.bytesPending, 0);
  });
});

describe('readLogHistory', () => {
  test('rotated files oldest first, then console.log, the last maxBytes of them', () => {
    const dir = freshDir();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'console.log.3'), 'AAAA');
    writeFileSync(join(dir, 'console.log.2'), 'BBBB');
    writeFileSync(join(dir, 'console.log.1'), 'CCCC');
    writeFileSync(join(dir, 'console.log'), 'DD');
    writeFileSync(join(dir, 'console.log.x'), 'junk');
    assert.equal(readLogHistory(dir).toString(), 'AAAABBBBCCCCDD');
    assert.equal(readLogHistory(dir, 7).toString(), 'BCCCCDD');
    assert.equal(readLogHistory(dir, 2).toString(), 'DD');
    assert.equal(readLogHistory(dir, 0).toString(), '');
  });

  test('missing directory or missing console.log', () => {
    assert.equal(readLogHistory(join(root, 'nope')).length, 0);
    const dir = freshDir();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'console.log.1'), 'only rotated');
    assert.equal(readLogHistory(dir).toString(), 'only rotated');
  });
});
