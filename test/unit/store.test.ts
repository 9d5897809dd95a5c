import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import ssh2 from 'ssh2';
import type { ParsedKey } from 'ssh2';
import { keyFingerprint, publicKeyBlob, publicKeyLine } from '../../src/ssh/key-fingerprint.js';
import { Store } from '../../src/store/store.js';
import { UserError } from '../../src/util/errors.js';

const root = mkdtempSync(join(tmpdir(), 'sshvisor-store-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = (): string => join(root, `d${n++}`);

/** ssh2 writes about one ed25519 key in 256 unreadably (mscdex/ssh2#1390): make another. */
function newKey(): { parsed: ParsedKey; line: string } {
  for (;;) {
    const { public: line } = ssh2.utils.generateKeyPairSync('ed25519');
    const parsed = ssh2.utils.parseKey(line);
    if (!(parsed instanceof Error) && !Array.isArray(parsed)) return { parsed, line };
  }
}

describe('key fingerprints', () => {
  test('match ssh-keygen -l, from a ParsedKey or the raw blob', () => {
    const { parsed, line } = newKey();
    const file = join(root, 'k.pub');
    writeFileSync(file, `${line}\n`);
    const out = execFileSync('ssh-keygen', ['-l', '-f', file], { encoding: 'utf8' });
    const expected = out.split(' ')[1];
    assert.match(expected ?? '', /^SHA256:[A-Za-z0-9+/]{43}$/);
    assert.equal(keyFingerprint(parsed), expected);
    assert.equal(keyFingerprint(publicKeyBlob(parsed)), expected);
  });

  test('publicKeyLine reads the type from the blob', () => {
    const { parsed, line } = newKey();
    const bare = line.split(' ').slice(0, 2).join(' ');
    assert.equal(publicKeyLine(parsed), bare);
    assert.equal(publicKeyLine(parsed.getPublicSSH()), bare);
    assert.throws(() => publicKeyLine(Buffer.from('junk')), UserError);
  });
});

describe('Store', () => {
  test('creates state.db 0600 with WAL and the schema', () => {
    const dir = freshDir();
    const store = Store.open(dir);
    store.recordBoot('alice');
    store.close();
    assert.equal(statSync(join(dir, 'state.db')).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    const db = new Database(join(dir, 'state.db'), { readonly: true });
    try {
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      assert.equal(db.prepare('SELECT version FROM schema_version').pluck().get(), 4);
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all();
      assert.deepEqual(tables, ['schema_version', 'vm_api_tokens', 'vm_grants', 'vm_owners', 'vms']);
    } finally {
      db.close();
    }
  });

  test('reopening keeps data and does not re-run migrations', () => {
    const dir = freshDir();
    const { parsed } = newKey();
    const a = Store.open(dir);
    assert.equal(a.claim('alice', parsed), 'claimed');
    a.close();
    const b = Store.open(dir);
    assert.equal(b.claim('alice', parsed), 'owner');
    b.close();
  });

  test('refuses a database from a newer sshvisor', () => {
    const dir = freshDir();
    Store.open(dir).close();
    const db = new Database(join(dir, 'state.db'));
    db.prepare('UPDATE schema_version SET version = 99').run();
    db.close();
    assert.throws(() => Store.open(dir), /schema version 99, newer than this sshvisor knows \(4\)/);
  });

  test('claim: first key owns the name, others are denied', () => {
    let t = 1000;
    const store = Store.open(freshDir(), { now: () => t++ });
    after(() => store.close());
    const alice = newKey();
    const mallory = newKey();
    assert.deepEqual(store.ownersOf('alice'), []);
    assert.equal(store.claim('alice', alice.parsed), 'claimed');
    assert.equal(store.claim('alice', alice.parsed.getPublicSSH()), 'owner', 'raw blob is the same key');
    assert.equal(store.claim('alice', mallory.parsed), 'denied');
    assert.equal(store.claim('mallory', mallory.parsed), 'claimed', 'names are independent');
    assert.deepEqual(store.ownersOf('alice'), [
      {
        vm: 'alice',
        fingerprint: keyFingerprint(alice.parsed),
        publicKey: publicKeyLine(alice.parsed),
        addedAt: 1000,
      },
    ]);
    assert.equal(store.getVm('alice')?.createdAt, 1000, 'claiming creates the VM record');
  });

  test('addOwnerKey lets a second key in', () => {
    const store = Store.open(freshDir());
    after(() => store.close());
    const k1 = newKey().parsed;
    const k2 = newKey().parsed;
    store.claim('bob', k1);
    assert.equal(store.claim('bob', k2), 'denied');
    assert.equal(store.addOwnerKey('bob', k2), true);
    assert.equal(store.addOwnerKey('bob', k2), false, 'already an owner');
    assert.equal(store.claim('bob', k2), 'owner');
    assert.equal(store.ownersOf('bob').length, 2);
  });

  test('concurrent first logins from separate connections: exactly one claims', async () => {
    const dir = freshDir();
    Store.open(dir).close();
    const storeUrl = new URL('../../src/store/store.js', import.meta.url).href;
    const keys = Array.from({ length: 8 }, () => newKey().line);
    // Each worker has its own SQLite connection, like a second process would.
    const code = `
      const { workerData, parentPort } = require('node:worker_threads');
      import(workerData.storeUrl).then(({ Store }) => {
        const ssh2 = require(workerData.ssh2Path);
        const store = Store.open(workerData.dir);
        const view = new Int32Array(workerData.gate);
        Atomics.wait(view, 0, 0);
        const result = store.claim('race', ssh2.utils.parseKey(workerData.key));
        store.close();
        parentPort.postMessage(result);
      });`;
    const gate = new SharedArrayBuffer(4);
    const ssh2Path = join(process.cwd(), 'node_modules', 'ssh2');
    const workers = keys.map((key) => new Worker(code, { eval: true, workerData: { storeUrl, dir, key, gate, ssh2Path } }));
    const results = workers.map(
      (w) =>
        new Promise<string>((resolve, reject) => {
          w.once('message', resolve);
          w.once('error', reject);
        }),
    );
    // Let every worker reach the gate, then release them at once.
    await new Promise((r) => setTimeout(r, 300));
    Atomics.store(new Int32Array(gate), 0, 1);
    Atomics.notify(new Int32Array(gate), 0);
    const outcomes = await Promise.all(results);
    assert.equal(outcomes.filter((o) => o === 'claimed').length, 1, outcomes.join(','));
    assert.equal(outcomes.filter((o) => o === 'denied').length, keys.length - 1);
    const store = Store.open(dir);
    assert.equal(store.ownersOf('race').length, 1);
    store.close();
  });

  test('grants: grant, list, revoke', () => {
    let t = 0;
    const store = Store.open(freshDir(), { now: () => ++t });
    after(() => store.close());
    const friend = newKey().parsed;
    const fp = keyFingerprint(friend);
    assert.equal(store.grant('alice', friend, 'watch'), true);
    assert.equal(store.grant('alice', friend, 'watch'), false, 'idempotent');
    assert.equal(store.grant('alice', friend, 'logs'), true);
    assert.deepEqual(
      store.grantsFor('alice').map((g) => [g.fingerprint, g.permission, g.publicKey]),
      [
        [fp, 'watch', publicKeyLine(friend)],
        [fp, 'logs', publicKeyLine(friend)],
      ],
    );
    assert.deepEqual(store.grantsFor('bob'), []);
    assert.equal(store.revoke('alice', friend, 'watch'), 1);
    assert.deepEqual(store.grantsFor('alice').map((g) => g.permission), ['logs']);
    assert.equal(store.revoke('alice', fp), 1, 'by fingerprint, all permissions');
    assert.equal(store.revoke('alice', fp), 0);
    assert.throws(() => store.grant('alice', friend, 'admin' as 'watch'), /CHECK constraint failed/);
  });

  test('a VM\'s image and shape are recorded once; which VMs use an image', () => {
    const store = Store.open(freshDir());
    after(() => store.close());
    const shape = { image: 'debian', memoryMiB: 1024, cpus: 2, diskMiB: 4096 };
    assert.equal(store.createVm('erin', shape), true);
    assert.equal(store.createVm('erin', { ...shape, image: 'default' }), false);
    assert.deepEqual(store.getVm('erin')?.shape, shape);
    // A VM from before shapes were recorded counts as the default image's.
    store.recordBoot('old');
    assert.equal(store.getVm('old')?.shape, null);
    assert.deepEqual(store.vmsUsingImage('debian'), ['erin']);
    assert.deepEqual(store.vmsUsingImage('default'), ['old']);
    store.forgetVm('erin');
    assert.deepEqual(store.vmsUsingImage('debian'), []);
  });

  test('boots and exits', () => {
    let t = 100;
    const store = Store.open(freshDir(), { now: () => t });
    after(() => store.close());
    assert.equal(store.getVm('carol'), undefined);
    store.recordBoot('carol');
    t = 200;
    store.recordExit('carol', 'poweroff', 'guest powered off');
    t = 300;
    store.recordBoot('carol');
    assert.deepEqual(store.getVm('carol'), {
      name: 'carol',
      createdAt: 100,
      lastBootAt: 300,
      lastExitReason: 'poweroff',
      lastExitDetail: 'guest powered off',
      lastExitAt: 200,
      boots: 2,
      lastSuspendAt: null,
      lastResumeAt: null,
      suspends: 0,
      resumes: 0,
      shape: null,
    });
    store.recordExit('dave', 'crashed', 'qemu killed by SIGKILL');
    assert.equal(store.getVm('dave')?.boots, 0);
    assert.deepEqual(
      store.listVms().map((v) => v.name),
      ['carol', 'dave'],
    );
  });

  test('suspends and resumes are counted', () => {
    let t = 100;
    const store = Store.open(freshDir(), { now: () => t });
    after(() => store.close());
    store.recordBoot('erin');
    t = 200;
    store.recordExit('erin', 'suspended', 'suspended to disk');
    t = 300;
    store.recordResume('erin');
    t = 400;
    store.recordExit('erin', 'panic', 'guest kernel panic');
    const r = store.getVm('erin');
    assert.deepEqual(
      { s: r?.lastSuspendAt, r: r?.lastResumeAt, ns: r?.suspends, nr: r?.resumes, exit: r?.lastExitReason },
      { s: 200, r: 300, ns: 1, nr: 1, exit: 'panic' },
    );
  });

  test('a database from before the suspend columns is migrated in place', () => {
    const dir = freshDir();
    Store.open(dir).close();
    const db = new Database(join(dir, 'state.db'));
    db.exec(`CREATE TABLE vms_old AS SELECT name, created_at, last_boot_at, last_exit_reason, last_exit_detail, last_exit_at, boots FROM vms;
             DROP TABLE vms; ALTER TABLE vms_old RENAME TO vms; DROP TABLE vm_api_tokens;
             INSERT INTO vms (name, created_at, boots) VALUES ('old', 5, 3);
             UPDATE schema_version SET version = 1;`);
    db.close();
    const store = Store.open(dir);
    after(() => store.close());
    assert.equal(store.getVm('old')?.boots, 3);
    assert.equal(store.getVm('old')?.suspends, 0);
  });

  test('forgetVm removes owners, grants and the record', () => {
    const store = Store.open(freshDir());
    after(() => store.close());
    const a = newKey();
    const b = newKey();
    store.claim('frank', a.parsed);
    store.grant('frank', b.parsed, 'logs');
    store.claim('grace', b.parsed);
    assert.equal(store.forgetVm('frank'), true);
    assert.deepEqual(store.ownersOf('frank'), []);
    assert.deepEqual(store.grantsFor('frank'), []);
    assert.equal(store.getVm('frank'), undefined);
    assert.equal(store.ownersOf('grace').length, 1, 'other names untouched');
    assert.equal(store.forgetVm('frank'), false);
    assert.equal(store.claim('frank', b.parsed), 'claimed', 'the name is free again');
  });
});
