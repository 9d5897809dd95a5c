import { connect, type Socket } from 'node:net';

/** Connect to a unix socket; rejects with the connect error (ENOENT, ECONNREFUSED) instead of emitting it later. */
export function connectUnix(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}
