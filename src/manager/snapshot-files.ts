import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { GuestImage } from '../image/image.js';
import { partialName, writeFileAtomic } from '../util/atomic-write.js';

/**
 * A suspended VM on disk, in DATA_DIR/vms/NAME/: `ram` (guest memory, the
 * shared backing file QEMU ran with), `snapshot.state` (device state) and
 * `snapshot.json` (what it was taken with). A snapshot is only used when all
 * three agree with the VM about to run; otherwise it is moved aside.
 */

export const RAM_FILE = 'ram';
const STATE_FILE = 'snapshot.state';
const META_FILE = 'snapshot.json';

const metaSchema = z.object({
  format: z.literal(1),
  takenAt: z.number(),
  hypervisor: z.string(),
  image: z.string(),
  memoryMiB: z.number().int(),
  cpus: z.number().int(),
  stateBytes: z.number().int(),
  stateSha256: z.string(),
  /** Guest RAM is inside the state (a VM cloned from a template), not in the `ram` file. */
  ramInState: z.boolean().default(false),
});
export type SnapshotMeta = z.infer<typeof metaSchema>;

/** What a snapshot must match to be restored into a new VM process. */
export interface SnapshotExpectations {
  hypervisor: string;
  image: string;
  memoryMiB: number;
  cpus: number;
}

export type SnapshotCheck =
  | { kind: 'none' }
  | { kind: 'usable'; meta: SnapshotMeta; stateFile: string }
  | { kind: 'unusable'; reason: string };

export const snapshotPaths = (dir: string) => ({
  ram: join(dir, RAM_FILE),
  state: join(dir, STATE_FILE),
  meta: join(dir, META_FILE),
});

/** Identifies the exact kernel and initramfs a guest ran: its RAM is only meaningful with them. */
export function imageFingerprint(image: GuestImage): string {
  const files = image.manifest?.files;
  // A rootfs image's VMs restore only onto the same image (the guest's page cache holds its blocks).
  const rootfs = image.rootfs ? `:${image.rootfs.sha256}` : '';
  if (files?.vmlinuz && files['initrd.img']) return `sha256:${files.vmlinuz.sha256}:${files['initrd.img'].sha256}${rootfs}`;
  const stamp = (f: string | undefined) => (f && existsSync(f) ? `${f}:${statSync(f).size}:${statSync(f).mtimeMs}` : '');
  return `files:${stamp(image.kernel)}:${stamp(image.initrd)}`;
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

export function inspectSnapshot(dir: string, expect: SnapshotExpectations): SnapshotCheck {
  const p = snapshotPaths(dir);
  const present = [p.meta, p.state].filter((f) => existsSync(f));
  if (present.length === 0) return { kind: 'none' };
  if (!existsSync(p.meta)) return { kind: 'unusable', reason: 'its description is missing' };
  let meta: SnapshotMeta;
  try {
    meta = metaSchema.parse(JSON.parse(readFileSync(p.meta, 'utf8')));
  } catch {
    return { kind: 'unusable', reason: 'its description is unreadable' };
  }
  if (!existsSync(p.state)) return { kind: 'unusable', reason: 'its device state is missing' };
  if (!meta.ramInState && !existsSync(p.ram)) return { kind: 'unusable', reason: 'its memory file is missing' };
  if (statSync(p.state).size !== meta.stateBytes || sha256(p.state) !== meta.stateSha256) {
    return { kind: 'unusable', reason: 'its device state is truncated or damaged' };
  }
  if (!meta.ramInState && statSync(p.ram).size !== meta.memoryMiB * 1024 * 1024) return { kind: 'unusable', reason: 'its memory file has the wrong size' };
  if (meta.hypervisor !== expect.hypervisor) return { kind: 'unusable', reason: `it was taken with ${meta.hypervisor}, this is ${expect.hypervisor}` };
  if (meta.image !== expect.image) return { kind: 'unusable', reason: 'it was taken with a different guest image' };
  if (meta.memoryMiB !== expect.memoryMiB || meta.cpus !== expect.cpus) {
    return { kind: 'unusable', reason: `it has ${meta.memoryMiB} MiB and ${meta.cpus} vCPUs, the server now gives ${expect.memoryMiB} MiB and ${expect.cpus}` };
  }
  return { kind: 'usable', meta, stateFile: p.state };
}

/** Record a snapshot whose state file a suspend just wrote; written last, so its presence means complete. */
export function writeSnapshotMeta(dir: string, fields: Omit<SnapshotMeta, 'format' | 'stateBytes' | 'stateSha256'>): SnapshotMeta {
  const p = snapshotPaths(dir);
  const meta: SnapshotMeta = { format: 1, ...fields, stateBytes: statSync(p.state).size, stateSha256: sha256(p.state) };
  writeFileAtomic(p.meta, JSON.stringify(meta, null, 2) + '\n');
  return meta;
}

/** The snapshot has been restored (or must go): the running guest has moved on from it. */
export function forgetSnapshot(dir: string): void {
  const p = snapshotPaths(dir);
  // A .partial is what a suspend that failed midway (a full disk) may have left.
  for (const f of [p.meta, p.state, partialName(p.meta), partialName(p.state)]) rmSync(f, { force: true });
}

/** Delete a snapshot entirely, RAM included (retention expiry). The disk stays. */
export function deleteSnapshot(dir: string): void {
  forgetSnapshot(dir);
  rmSync(snapshotPaths(dir).ram, { force: true });
}

/** Keep an unusable snapshot for inspection, out of the way of the next boot. */
export function moveSnapshotAside(dir: string, now = new Date()): string {
  const p = snapshotPaths(dir);
  // Only the latest is kept: each holds a copy of guest RAM.
  for (const old of readdirSync(dir).filter((f) => f.startsWith('snapshot.unusable-'))) rmSync(join(dir, old), { recursive: true, force: true });
  const aside = join(dir, `snapshot.unusable-${now.toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(aside, { recursive: true, mode: 0o700 });
  for (const f of [p.meta, p.state, p.ram]) {
    if (existsSync(f)) renameSync(f, join(aside, f.slice(dir.length + 1)));
  }
  return aside;
}

export function snapshotTakenAt(dir: string): number | undefined {
  try {
    return metaSchema.parse(JSON.parse(readFileSync(snapshotPaths(dir).meta, 'utf8'))).takenAt;
  } catch {
    return undefined;
  }
}
