import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../../src/store/store.js';
import { ADMIN_TOKEN_FILE, bearerToken, hashToken, loadOrCreateAdminToken, mayControl, mayRead, TokenAuth } from '../../src/http/tokens.js';

const root = mkdtempSync(join(tmpdir(), 'sshvisor-tokens-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = (): string => mkdtempSync(join(root, `d${n++}-`));

describe('admin token file', () => {
  test('is made once, 0600, and read back after', () => {
    const dir = freshDir();
    const token = loadOrCreateAdminToken(dir);
    assert.match(token, /^sva_[A-Za-z0-9_-]{43}$/);
    const path = join(dir, ADMIN_TOKEN_FILE);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(loadOrCreateAdminToken(dir), token);
    assert.notEqual(loadOrCreateAdminToken(freshDir()), token, 'each data dir its own');
  });

  test('a file without a usable token is an error, not replaced', () => {
    const dir = freshDir();
    writeFileSync(join(dir, ADMIN_TOKEN_FILE), 'short\n', { mode: 0o600 });
    assert.throws(() => loadOrCreateAdminToken(dir), /holds no usable token/);
    assert.equal(readFileSync(join(dir, ADMIN_TOKEN_FILE), 'utf8'), 'short\n');
  });
});

describe('bearer header', () => {
  test('takes "Bearer TOKEN" only', () => {
    assert.equal(bearerToken('Bearer abc_DEF-123'), 'abc_DEF-123');
    assert.equal(bearerToken(undefined), undefined);
    assert.equal(bearerToken('bearer abc'), undefined);
    assert.equal(bearerToken('Basic YTpi'), undefined);
    assert.equal(bearerToken('Bearer '), undefined);
    assert.equal(bearerToken('Bearer a b'), undefined);
    assert.equal(bearerToken(`Bearer ${'x'.repeat(600)}`), undefined);
  });
});

describe('TokenAuth', () => {
  const setup = (): { auth: TokenAuth; store: Store; dir: string } => {
    const dir = freshDir();
    const store = Store.open(dir);
    return { auth: new TokenAuth('sva_the-admin-token-0123456789', store), store, dir };
  };

  test('the admin token is admin; anything else unknown is nobody', () => {
    const { auth, store } = setup();
    try {
      assert.deepEqual(auth.resolve('sva_the-admin-token-0123456789'), { kind: 'admin' });
      assert.equal(auth.resolve('sva_the-admin-token-012345678'), undefined);
      assert.equal(auth.resolve(''), undefined);
      assert.equal(auth.resolve(undefined), undefined);
    } finally {
      store.close();
    }
  });

  test('VM tokens name their VM and access; only a hash is stored; revoke ends them all', () => {
    const { auth, store, dir } = setup();
    {
      const read = auth.issue('alice', 'read', 'SHA256:abc');
      const owner = auth.issue('alice', 'owner', 'SHA256:abc');
      const bobs = auth.issue('bob', 'read', 'SHA256:def');
      assert.match(read, /^svr_/);
      assert.match(owner, /^svo_/);
      assert.deepEqual(auth.resolve(read), { kind: 'vm', vm: 'alice', access: 'read' });
      assert.deepEqual(auth.resolve(owner), { kind: 'vm', vm: 'alice', access: 'owner' });
      assert.equal(store.findApiToken(hashToken(read))?.fingerprint, 'SHA256:abc');
      store.close();
      // Closing checkpoints the WAL into state.db.
      const db = readFileSync(join(dir, 'state.db')).toString('latin1');
      assert.ok(db.includes(hashToken(read)), 'the hash is there');
      assert.ok(!db.includes(read) && !db.includes(owner), 'no token in state.db');
      const again = Store.open(dir);
      const auth2 = new TokenAuth('sva_the-admin-token-0123456789', again);
      assert.equal(auth2.revoke('alice'), 2);
      assert.equal(auth2.resolve(read), undefined);
      assert.equal(auth2.resolve(owner), undefined);
      assert.deepEqual(auth2.resolve(bobs), { kind: 'vm', vm: 'bob', access: 'read' }, "bob's stays");
      again.forgetVm('bob');
      assert.equal(auth2.resolve(bobs), undefined, 'rm forgets the tokens too');
      again.close();
    }
  });
});

describe('permissions', () => {
  test('admin everything; a VM token its VM only; read tokens never control', () => {
    const admin = { kind: 'admin' } as const;
    const read = { kind: 'vm', vm: 'alice', access: 'read' } as const;
    const owner = { kind: 'vm', vm: 'alice', access: 'owner' } as const;
    assert.equal(mayRead(admin, 'bob'), 'ok');
    assert.equal(mayControl(admin, 'bob'), 'ok');
    assert.equal(mayRead(read, 'alice'), 'ok');
    assert.equal(mayControl(read, 'alice'), 'read-only');
    assert.equal(mayRead(read, 'bob'), 'other-vm');
    assert.equal(mayControl(read, 'bob'), 'other-vm');
    assert.equal(mayControl(owner, 'alice'), 'ok');
    assert.equal(mayControl(owner, 'bob'), 'other-vm');
  });
});
