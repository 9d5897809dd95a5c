import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { VmSpec } from '../driver.js';

/**
 * DATA_DIR/vms/NAME/qemu.json, written once a QEMU is running: what a later
 * gateway process needs to take it over (adopt) after this one is gone: the
 * spec it runs with (a suspend needs its memory file and mapping). Removed
 * when the VM ends. Format 1 (sshvisor before the guest agent) also carried
 * the host port of an SSH forward; it is still read, and the port ignored.
 */
export const RUNTIME_FILE = 'qemu.json';

export interface QemuRuntime {
  format: 1 | 2;
  pid: number;
  /** ms since the epoch */
  startedAt: number;
  spec: Omit<VmSpec, 'restoreFrom'>;
}

export const runtimePath = (dir: string): string => join(dir, RUNTIME_FILE);

export function writeRuntime(dir: string, runtime: Omit<QemuRuntime, 'format'>): void {
  const path = runtimePath(dir);
  writeFileSync(`${path}.tmp`, JSON.stringify({ format: 2, ...runtime }) + '\n', { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

/** The runtime record of `dir`'s VM, or undefined if there is none or it does not belong to this dir. */
export function readRuntime(dir: string): QemuRuntime | undefined {
  let v: Partial<QemuRuntime>;
  try {
    v = JSON.parse(readFileSync(runtimePath(dir), 'utf8')) as Partial<QemuRuntime>;
  } catch {
    return undefined;
  }
  const ok =
    (v.format === 1 || v.format === 2) &&
    Number.isInteger(v.pid) &&
    typeof v.startedAt === 'number' &&
    typeof v.spec === 'object' &&
    v.spec !== null &&
    typeof v.spec.dir === 'string' &&
    resolve(v.spec.dir) === resolve(dir) &&
    typeof v.spec.name === 'string';
  return ok ? (v as QemuRuntime) : undefined;
}
