import { chmodSync, chownSync, createReadStream, createWriteStream, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { QmpClient } from './qmp-client.js';

/**
 * Saving and loading a guest's device state through QEMU's migration stream.
 * Guest RAM lives in a shared memory-backend-file and is left out of the
 * stream (x-ignore-shared), so a 256 MiB guest writes tens of kilobytes.
 *
 * QEMU runs sandboxed (no fork/exec, so no exec: URIs) and, under a root
 * server, chrooted as a user that may not open the VM's files. So QEMU never
 * touches the state file: the gateway writes and reads it, and QEMU only
 * sees a socket. Outgoing, QEMU connects to a unix socket the gateway listens
 * on (QEMU 7.2's outgoing fd: wants a descriptor passed over QMP, which Node
 * cannot send); incoming, QEMU reads a socket it inherited as INCOMING_FD.
 */

/** The descriptor a QEMU started with restoreFrom inherits for its incoming state. */
export const INCOMING_FD = 3;

/** Where an outgoing state goes: a socket the gateway listens on. */
export interface SaveChannel {
  /** The socket's path on the host. */
  listenPath: string;
  /** The same socket as QEMU names it (inside its chroot, if it has one). */
  qemuPath: string;
  /** Give the socket to this user (QEMU's, after its privilege drop) so it can connect. */
  owner?: { uid: number; gid: number };
}

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

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/**
 * Write the (stopped) guest's device state to `file` (mode 0600, not yet
 * fsynced); with `withRam`, guest RAM too (needed when it is not in a shared
 * file of its own).
 */
export async function saveState(qmp: QmpClient, file: string, channel: SaveChannel, withRam = false, timeoutMs = 120_000): Promise<void> {
  await ignoreSharedRam(qmp, !withRam);
  rmSync(channel.listenPath, { force: true });
  const server = createServer();
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(channel.listenPath, resolve);
  });
  try {
    if (channel.owner) chownSync(channel.listenPath, channel.owner.uid, channel.owner.gid);
    chmodSync(channel.listenPath, 0o600);
    // One connection only: nothing else may add to the state.
    const written = accepted.then((socket) => {
      server.close();
      return pipeline(socket, createWriteStream(file, { mode: 0o600 }));
    });
    written.catch(() => undefined);
    await qmp.execute('migrate', { uri: `unix:${channel.qemuPath}` });
    await waitForMigration(qmp, 'saving the VM state', timeoutMs);
    // QEMU closes its end once the last byte is sent; the file is complete when the stream ends.
    await withTimeout(written, timeoutMs, 'writing the VM state');
  } finally {
    server.close();
    rmSync(channel.listenPath, { force: true });
  }
}

/**
 * Load device state (and RAM, if the state has it) into a QEMU started with
 * `-incoming defer` and `input` as its INCOMING_FD; the guest stays paused.
 */
export async function loadState(qmp: QmpClient, file: string, input: Writable, withRam = false, timeoutMs = 120_000): Promise<void> {
  await ignoreSharedRam(qmp, !withRam);
  await qmp.execute('migrate-incoming', { uri: `fd:${INCOMING_FD}` });
  const sent = pipeline(createReadStream(file), input);
  sent.catch(() => undefined);
  await waitForMigration(qmp, 'loading the VM state', timeoutMs);
}

