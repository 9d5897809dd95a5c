import { readFileSync } from 'node:fs';
import ssh2 from 'ssh2';
import type { SshvisorServer } from './sshvisor-server.js';

type ClientCallback = (c: InstanceType<typeof ssh2.Client>, done: (err?: Error, value?: unknown) => void) => void;

/**
 * One connection of the ssh2 library's client as `user` (default alice), for
 * what the OpenSSH client cannot do from the command line (several channels
 * on one connection, reading a signal's name); `fn` calls `done` once.
 */
export function withLibraryClient(server: SshvisorServer, keyPath: string, fn: ClientCallback, user = 'alice'): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    const timer = setTimeout(() => {
      c.end();
      reject(new Error('library client timed out'));
    }, 60_000);
    c.on('error', reject);
    c.on('ready', () =>
      fn(c, (err, value) => {
        clearTimeout(timer);
        c.end();
        if (err) reject(err);
        else resolve(value);
      }),
    );
    c.connect({ host: '127.0.0.1', port: server.port, username: user, privateKey: readFileSync(keyPath) });
  });
}

