import ssh2 from 'ssh2';
import type { ExitInfo } from '../vm/driver.js';

const { Client } = ssh2;
export type GuestClient = InstanceType<typeof Client>;

export interface GuestConnectOptions {
  host: string;
  port: number;
  privateKey: Buffer;
  /** Give up at this time (ms since epoch). */
  deadline: number;
  /** Stop trying as soon as the VM is gone. */
  exited: Promise<ExitInfo>;
  /** The guest's host key as first seen (trust on first use), or undefined to accept and report it. */
  pinnedHostKey?: Buffer;
  onFirstHostKey?: (key: Buffer) => void;
}

function tryConnect(opts: GuestConnectOptions): Promise<GuestClient> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    let settled = false;
    // ssh2 can report more than one error for one failed attempt (a handshake
    // timeout, then the socket closing): the listener stays for all of them.
    client.on('error', (err) => {
      if (settled) return;
      settled = true;
      client.removeAllListeners('ready');
      client.end();
      reject(err);
    });
    client.once('ready', () => {
      settled = true;
      resolve(client);
    });
    client.connect({
      host: opts.host,
      port: opts.port,
      username: 'root',
      privateKey: opts.privateKey,
      readyTimeout: Math.max(1000, Math.min(10_000, opts.deadline - Date.now())),
      // A loopback port is not proof of identity: another local process could hold it.
      hostVerifier: (key: Buffer) => (opts.pinnedHostKey ? opts.pinnedHostKey.equals(key) : (opts.onFirstHostKey?.(key), true)),
      keepaliveInterval: 15_000,
      // The guest does its crypto in an emulated CPU, often without AES-NI: ChaCha20 is the cheap cipher there.
      algorithms: { cipher: ['chacha20-poly1305@openssh.com', 'aes128-gcm@openssh.com', 'aes128-ctr', 'aes256-ctr'] },
    });
  });
}

/**
 * Log in to a guest's SSH daemon as soon as it answers. While the guest boots,
 * QEMU's port forward accepts and then drops connections, so failures are
 * retried until the deadline or until the VM exits.
 */
export async function connectGuest(opts: GuestConnectOptions): Promise<GuestClient> {
  let gone: ExitInfo | undefined;
  void opts.exited.then((e) => (gone = e));
  let lastError: Error | undefined;
  while (Date.now() < opts.deadline) {
    if (gone) throw new Error(`the VM exited while booting (${gone.detail})`);
    try {
      return await tryConnect(opts);
    } catch (err) {
      lastError = err as Error;
      // An auth failure will not fix itself: the guest does not trust our key.
      if (/authentication methods failed/i.test(lastError.message)) throw new Error('the guest refused the gateway key');
      if (/Host denied \(verification failed\)/.test(lastError.message)) throw new Error("the guest's SSH host key is not the one it had before");
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the guest's SSH daemon did not answer in time (${lastError?.message ?? 'no attempt'})`);
}

/** Run a command in the guest over the gateway's connection; resolves with its exit code. */
export function guestExec(client: GuestClient, command: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${command}: timed out`)), timeoutMs);
    client.exec(command, (err, ch) => {
      if (err) {
        clearTimeout(timer);
        return reject(err);
      }
      let code = -1;
      ch.on('exit', (c: number | null) => (code = c ?? -1));
      ch.on('close', () => {
        clearTimeout(timer);
        resolve(code);
      });
      ch.resume();
      ch.stderr.resume();
    });
  });
}
