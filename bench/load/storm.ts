/**
 * A connection storm: N SSH connections started at once (the next one as soon
 * as the previous connect() returns, no waiting), each authenticating with a
 * key and running `true`. Driven by the ssh2 client library from the bench
 * process, a process of its own beside the server under test.
 */
import ssh2 from 'ssh2';
import { performance } from 'node:perf_hooks';

export interface StormTarget {
  port: number;
  /** The user for connection i (sshvisor spreads them over its VMs). */
  user: (i: number) => string;
  privateKey: Buffer;
}

export interface ConnectionResult {
  /** connect() to authenticated ('ready'), ms; NaN if it never got there. */
  authMs: number;
  /** connect() to `true`'s exit status, ms; NaN on error. */
  totalMs: number;
  error?: string;
}

function oneConnection(target: StormTarget, i: number, timeoutMs: number): Promise<ConnectionResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let authMs = NaN;
    let done = false;
    const client = new ssh2.Client();
    const finish = (r: Omit<ConnectionResult, 'authMs'>): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      client.end();
      resolve({ authMs, ...r });
    };
    const timer = setTimeout(() => finish({ totalMs: NaN, error: `no exit status after ${timeoutMs} ms` }), timeoutMs);
    client.on('ready', () => {
      authMs = performance.now() - t0;
      client.exec('true', (err, ch) => {
        if (err) return finish({ totalMs: NaN, error: `exec: ${err.message}` });
        let code: number | null = null;
        let stderr = '';
        ch.on('exit', (c: number | null) => (code = c));
        ch.on('close', () =>
          code === 0
            ? finish({ totalMs: performance.now() - t0 })
            : finish({ totalMs: NaN, error: `exit status ${code}${stderr ? `: ${stderr.trim().slice(0, 200)}` : ''}` }),
        );
        ch.resume();
        ch.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      });
    });
    client.on('error', (err) => finish({ totalMs: NaN, error: err.message }));
    client.on('close', () => finish({ totalMs: NaN, error: 'connection closed before the command ended' }));
    client.connect({
      host: '127.0.0.1',
      port: target.port,
      username: target.user(i),
      privateKey: target.privateKey,
      readyTimeout: timeoutMs,
      // Loopback, a server the bench just started: nothing to verify.
      hostVerifier: () => true,
    });
  });
}

/** Open `count` connections as fast as possible; resolves when every one has ended. */
export async function connectionStorm(target: StormTarget, count: number, timeoutMs: number): Promise<ConnectionResult[]> {
  const all: Promise<ConnectionResult>[] = [];
  for (let i = 0; i < count; i++) all.push(oneConnection(target, i, timeoutMs));
  return Promise.all(all);
}
