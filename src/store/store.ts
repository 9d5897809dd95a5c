import { chmodSync, closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { keyFingerprint, publicKeyLine, type SshPublicKey } from '../ssh/key-fingerprint.js';
import { UserError } from '../util/errors.js';
import { ensurePrivateDir } from '../util/paths.js';

/**
 * All of sshvisor's durable state, in DATA_DIR/state.db. Synchronous on
 * purpose: every call is a few rows, and a synchronous transaction cannot
 * interleave with another login's inside this process; BEGIN IMMEDIATE
 * covers other processes sharing the file.
 */

/**
 * Applied in order, each in its own transaction; schema_version records how
 * many have run. Never edit a shipped entry: append a new one.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE vm_owners (
     vm TEXT NOT NULL,
     key_fingerprint TEXT NOT NULL,
     public_key TEXT NOT NULL,
     added_at INTEGER NOT NULL,
     PRIMARY KEY (vm, key_fingerprint)
   );
   CREATE TABLE vm_grants (
     vm TEXT NOT NULL,
     key_fingerprint TEXT NOT NULL,
     public_key TEXT NOT NULL,
     permission TEXT NOT NULL CHECK (permission IN ('watch', 'logs')),
     added_at INTEGER NOT NULL,
     PRIMARY KEY (vm, key_fingerprint, permission)
   );
   CREATE TABLE vms (
     name TEXT PRIMARY KEY,
     created_at INTEGER NOT NULL,
     last_boot_at INTEGER,
     last_exit_reason TEXT,
     last_exit_detail TEXT,
     last_exit_at INTEGER,
     boots INTEGER NOT NULL DEFAULT 0
   );`,
  `ALTER TABLE vms ADD COLUMN last_suspend_at INTEGER;
   ALTER TABLE vms ADD COLUMN last_resume_at INTEGER;
   ALTER TABLE vms ADD COLUMN suspends INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE vms ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0;`,
  // HTTP API tokens for one VM: only a hash of each is kept.
  `CREATE TABLE vm_api_tokens (
     token_hash TEXT PRIMARY KEY,
     vm TEXT NOT NULL,
     access TEXT NOT NULL CHECK (access IN ('read', 'owner')),
     key_fingerprint TEXT NOT NULL,
     created_at INTEGER NOT NULL
   );`,
  // Each VM's image and shape, decided when it is created (NULL: a VM from before, on the server's defaults).
  `ALTER TABLE vms ADD COLUMN image TEXT;
   ALTER TABLE vms ADD COLUMN memory_mib INTEGER;
   ALTER TABLE vms ADD COLUMN cpus INTEGER;
   ALTER TABLE vms ADD COLUMN disk_mib INTEGER;`,
];

export type ClaimResult = 'claimed' | 'owner' | 'denied';
export type GrantPermission = 'watch' | 'logs';
/** What an HTTP API token for one VM may do: read it, or also control it (type, stop, suspend, resume). */
export type TokenAccess = 'read' | 'owner';

export interface ApiToken {
  vm: string;
  access: TokenAccess;
  /** The owner key that asked for it. */
  fingerprint: string;
  createdAt: number;
}

/** Times are milliseconds since the epoch. */
export interface OwnerKey {
  vm: string;
  fingerprint: string;
  /** `ssh-ed25519 AAAA...` */
  publicKey: string;
  addedAt: number;
}

export interface Grant extends OwnerKey {
  permission: GrantPermission;
}

export interface VmRecord {
  name: string;
  createdAt: number;
  lastBootAt: number | null;
  lastExitReason: string | null;
  lastExitDetail: string | null;
  lastExitAt: number | null;
  boots: number;
  lastSuspendAt: number | null;
  lastResumeAt: number | null;
  suspends: number;
  resumes: number;
  /** What the VM was created with; null for a VM from before images and shapes were recorded (the server's defaults). */
  shape: VmShape | null;
}

/** A VM's image (catalogue name) and size, fixed when it is created. Memory and disk in MiB. */
export interface VmShape {
  image: string;
  memoryMiB: number;
  cpus: number;
  diskMiB: number;
}

interface KeyRow {
  vm: string;
  key_fingerprint: string;
  public_key: string;
  added_at: number;
}
interface GrantRow extends KeyRow {
  permission: GrantPermission;
}
interface VmRow {
  name: string;
  created_at: number;
  last_boot_at: number | null;
  last_exit_reason: string | null;
  last_exit_detail: string | null;
  last_exit_at: number | null;
  boots: number;
  last_suspend_at: number | null;
  last_resume_at: number | null;
  suspends: number;
  resumes: number;
  image: string | null;
  memory_mib: number | null;
  cpus: number | null;
  disk_mib: number | null;
}

const toOwner = (r: KeyRow): OwnerKey => ({
  vm: r.vm,
  fingerprint: r.key_fingerprint,
  publicKey: r.public_key,
  addedAt: r.added_at,
});
const toVm = (r: VmRow): VmRecord => ({
  name: r.name,
  createdAt: r.created_at,
  lastBootAt: r.last_boot_at,
  lastExitReason: r.last_exit_reason,
  lastExitDetail: r.last_exit_detail,
  lastExitAt: r.last_exit_at,
  boots: r.boots,
  lastSuspendAt: r.last_suspend_at,
  lastResumeAt: r.last_resume_at,
  suspends: r.suspends,
  resumes: r.resumes,
  shape:
    r.image !== null && r.memory_mib !== null && r.cpus !== null && r.disk_mib !== null
      ? { image: r.image, memoryMiB: r.memory_mib, cpus: r.cpus, diskMiB: r.disk_mib }
      : null,
});

export interface StoreOptions {
  /** Clock, for tests. */
  now?: () => number;
}

export class Store {
  private constructor(
    private readonly db: Database.Database,
    private readonly now: () => number,
  ) {}

  static open(dataDir: string, options: StoreOptions = {}): Store {
    ensurePrivateDir(dataDir);
    const path = join(dataDir, 'state.db');
    // Create the file ourselves so it is 0600 from the first byte; SQLite
    // gives the -wal and -shm files the database file's mode.
    closeSync(openSync(path, 'a', 0o600));
    chmodSync(path, 0o600);
    let db: Database.Database;
    try {
      db = new Database(path);
      db.pragma('journal_mode = WAL');
      // Wait for another process's write instead of failing with SQLITE_BUSY.
      db.pragma('busy_timeout = 5000');
    } catch (err) {
      throw new UserError(`cannot open ${path}: ${(err as Error).message}`, { cause: err });
    }
    try {
      migrate(db, path);
    } catch (err) {
      db.close();
      throw err;
    }
    return new Store(db, options.now ?? Date.now);
  }

  close(): void {
    this.db.close();
  }

  ownersOf(vm: string): OwnerKey[] {
    const rows = this.db
      .prepare('SELECT * FROM vm_owners WHERE vm = ? ORDER BY added_at, key_fingerprint')
      .all(vm) as KeyRow[];
    return rows.map(toOwner);
  }

  /**
   * The first key to log in as a name owns it. Check-and-insert happens in one
   * IMMEDIATE transaction, so two first logins racing (even from two
   * processes) cannot both claim.
   */
  claim(vm: string, key: SshPublicKey): ClaimResult {
    const fingerprint = keyFingerprint(key);
    const line = publicKeyLine(key);
    const tx = this.db.transaction((): ClaimResult => {
      const owners = this.db.prepare('SELECT key_fingerprint FROM vm_owners WHERE vm = ?').pluck().all(vm) as string[];
      if (owners.includes(fingerprint)) return 'owner';
      if (owners.length > 0) return 'denied';
      this.insertOwner(vm, fingerprint, line);
      return 'claimed';
    });
    return tx.immediate();
  }

  /** Give an existing VM another owner key; false if it already was one. */
  addOwnerKey(vm: string, key: SshPublicKey): boolean {
    const fingerprint = keyFingerprint(key);
    const line = publicKeyLine(key);
    return this.db.transaction(() => this.insertOwner(vm, fingerprint, line)).immediate();
  }

  /** Let a non-owner key watch or read the logs of `vm`; false if already granted. */
  grant(vm: string, key: SshPublicKey, permission: GrantPermission): boolean {
    const info = this.db
      .prepare(
        // Not INSERT OR IGNORE: that would also swallow the CHECK on permission.
        `INSERT INTO vm_grants (vm, key_fingerprint, public_key, permission, added_at)
         VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      )
      .run(vm, keyFingerprint(key), publicKeyLine(key), permission, this.now());
    return info.changes > 0;
  }

  /**
   * Remove grants for a key (given as a key or its SHA256: fingerprint), one
   * permission or all of them. Returns how many were removed.
   */
  revoke(vm: string, key: SshPublicKey | string, permission?: GrantPermission): number {
    const fingerprint = typeof key === 'string' ? key : keyFingerprint(key);
    const info =
      permission === undefined
        ? this.db.prepare('DELETE FROM vm_grants WHERE vm = ? AND key_fingerprint = ?').run(vm, fingerprint)
        : this.db
            .prepare('DELETE FROM vm_grants WHERE vm = ? AND key_fingerprint = ? AND permission = ?')
            .run(vm, fingerprint, permission);
    return info.changes;
  }

  grantsFor(vm: string): Grant[] {
    const rows = this.db
      .prepare('SELECT * FROM vm_grants WHERE vm = ? ORDER BY added_at, key_fingerprint, permission')
      .all(vm) as GrantRow[];
    return rows.map((r) => ({ ...toOwner(r), permission: r.permission }));
  }

  /**
   * Record a new VM's image and shape. Returns false, changing nothing, when
   * `vm` already has a shape (it exists): a VM's image and size are decided once.
   */
  createVm(vm: string, shape: VmShape): boolean {
    return this.db
      .transaction(() => {
        this.ensureVm(vm, this.now());
        const info = this.db
          .prepare('UPDATE vms SET image = ?, memory_mib = ?, cpus = ?, disk_mib = ? WHERE name = ? AND image IS NULL')
          .run(shape.image, shape.memoryMiB, shape.cpus, shape.diskMiB, vm);
        return info.changes > 0;
      })
      .immediate();
  }

  /** Names of the VMs created with `image` (a VM with no recorded shape counts as the default image's). */
  vmsUsingImage(image: string): string[] {
    const sql = image === 'default' ? 'SELECT name FROM vms WHERE image = ? OR image IS NULL ORDER BY name' : 'SELECT name FROM vms WHERE image = ? ORDER BY name';
    return this.db.prepare(sql).pluck().all(image) as string[];
  }

  recordBoot(vm: string): void {
    const now = this.now();
    this.db.transaction(() => {
      this.ensureVm(vm, now);
      this.db.prepare('UPDATE vms SET last_boot_at = ?, boots = boots + 1 WHERE name = ?').run(now, vm);
    })();
  }

  /** A VM ended; an exit with reason 'suspended' also counts as a suspend. */
  recordExit(vm: string, reason: string, detail: string): void {
    const now = this.now();
    this.db.transaction(() => {
      this.ensureVm(vm, now);
      this.db
        .prepare('UPDATE vms SET last_exit_reason = ?, last_exit_detail = ?, last_exit_at = ? WHERE name = ?')
        .run(reason, detail, now, vm);
      if (reason === 'suspended') this.db.prepare('UPDATE vms SET last_suspend_at = ?, suspends = suspends + 1 WHERE name = ?').run(now, vm);
    })();
  }

  /** A VM was resumed from its snapshot (not booted). */
  recordResume(vm: string): void {
    const now = this.now();
    this.db.transaction(() => {
      this.ensureVm(vm, now);
      this.db.prepare('UPDATE vms SET last_resume_at = ?, resumes = resumes + 1 WHERE name = ?').run(now, vm);
    })();
  }

  /** Keep an API token for `vm`, by its hash (the token itself is never stored). */
  addApiToken(vm: string, tokenHash: string, access: TokenAccess, fingerprint: string): void {
    this.db
      .prepare('INSERT INTO vm_api_tokens (token_hash, vm, access, key_fingerprint, created_at) VALUES (?, ?, ?, ?, ?)')
      .run(tokenHash, vm, access, fingerprint, this.now());
  }

  findApiToken(tokenHash: string): ApiToken | undefined {
    const row = this.db.prepare('SELECT * FROM vm_api_tokens WHERE token_hash = ?').get(tokenHash) as
      | { vm: string; access: TokenAccess; key_fingerprint: string; created_at: number }
      | undefined;
    return row && { vm: row.vm, access: row.access, fingerprint: row.key_fingerprint, createdAt: row.created_at };
  }

  /** Revoke every API token of `vm`; returns how many there were. */
  revokeApiTokens(vm: string): number {
    return this.db.prepare('DELETE FROM vm_api_tokens WHERE vm = ?').run(vm).changes;
  }

  /** Forget a name entirely: its owners, grants and record (`sshvisor rm`). Returns whether anything was there. */
  forgetVm(vm: string): boolean {
    return this.db
      .transaction(() => {
        let n = 0;
        for (const table of ['vm_owners', 'vm_grants', 'vm_api_tokens']) n += this.db.prepare(`DELETE FROM ${table} WHERE vm = ?`).run(vm).changes;
        n += this.db.prepare('DELETE FROM vms WHERE name = ?').run(vm).changes;
        return n > 0;
      })
      .immediate();
  }

  getVm(vm: string): VmRecord | undefined {
    const row = this.db.prepare('SELECT * FROM vms WHERE name = ?').get(vm) as VmRow | undefined;
    return row && toVm(row);
  }

  /** Every VM that was ever claimed, given an owner or booted, by name. */
  listVms(): VmRecord[] {
    return (this.db.prepare('SELECT * FROM vms ORDER BY name').all() as VmRow[]).map(toVm);
  }

  private insertOwner(vm: string, fingerprint: string, line: string): boolean {
    const now = this.now();
    this.ensureVm(vm, now);
    const info = this.db
      .prepare('INSERT INTO vm_owners (vm, key_fingerprint, public_key, added_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING')
      .run(vm, fingerprint, line, now);
    return info.changes > 0;
  }

  private ensureVm(vm: string, now: number): void {
    this.db.prepare('INSERT INTO vms (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING').run(vm, now);
  }
}

function migrate(db: Database.Database, path: string): void {
  db.transaction(() => {
    db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
    if (db.prepare('SELECT COUNT(*) FROM schema_version').pluck().get() === 0) {
      db.prepare('INSERT INTO schema_version (version) VALUES (0)').run();
    }
  }).immediate();
  for (;;) {
    const applied = db.transaction(() => {
      const version = db.prepare('SELECT version FROM schema_version').pluck().get() as number;
      if (version > MIGRATIONS.length) {
        throw new UserError(
          `${path} has schema version ${version}, newer than this sshvisor knows (${MIGRATIONS.length}): upgrade sshvisor`,
        );
      }
      const next = MIGRATIONS[version];
      if (next === undefined) return false;
      db.exec(next);
      db.prepare('UPDATE schema_version SET version = ?').run(version + 1);
      return true;
    }).immediate();
    if (!applied) return;
  }
}
