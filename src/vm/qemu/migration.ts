import { closeSync, fsyncSync, openSync } from 'node:fs';
import type { QmpClient } from './qmp-client.js';

/**
 * Saving and loading a guest's device state through QEMU's migration stream.
 * Guest RAM lives in a shared memory-backend-file and is left out of the
 * stream (x-ignore-shared), so a 256 MiB guest writes tens of kilobytes.
 */

const shellQuote = (path: string): string => `'${path.replace(/'/g, `'\\''`)}'`;

async function ignoreSharedRam(qmp: QmpClient, ignore: boolean): Promise<void> {
  await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: ignore }] });
}

async function waitForMigration(qmp: QmpClient, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = await qmp.execute('query-migrate');
    if (m.status === 'completed') return;
    if (m.status === 'failed' || m.status === 'cancelled') throw new Error(`${what} failed: ${m['error-desc'] ?? m.status}`);
    if (Date.now() > deadline) throw new Error(`${what} did not finish within ${timeoutMs} ms (status ${m.status ?? 'none'})`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Write the (stopped) guest's device state to `file`; with `withRam`, guest
 * RAM too (needed when it is not in a shared file of its own).
 */
export async function saveState(qmp: QmpClient, file: string, withRam = false, timeoutMs = 120_000): Promise<void> {
  await ignoreSharedRam(qmp, !withRam);
  // QEMU 7.2 has no file: migration URI; exec: runs through /bin/sh, hence the quoting.
  await qmp.execute('migrate', { uri: `exec:cat > ${shellQuote(file)}` });
  await waitForMigration(qmp, 'saving the VM state', timeoutMs);
}

/** Load device state (and RAM, if the state has it) into a QEMU started with `-incoming defer`; the guest stays paused. */
export async function loadState(qmp: QmpClient, file: string, withRam = false, timeoutMs = 120_000): Promise<void> {
  await ignoreSharedRam(qmp, !withRam);
  await qmp.execute('migrate-incoming', { uri: `exec:cat ${shellQuote(file)}` });
  await waitForMigration(qmp, 'loading the VM state', timeoutMs);
}

/** A saved state (or the RAM file) must be on disk before the process that could rewrite it is gone. */
export function fsyncPath(path: string): void {
  const fd = openSync(path, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

