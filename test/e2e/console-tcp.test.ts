import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { SshvisorServer } from '../helpers/sshvisor-server.js';
import { freeLoopbackPort } from '../../src/vm/qemu/free-port.js';

/** Reads what a plain TCP console client gets, until `until` shows up. */
function readConsole(port: number, name: string, until: RegExp, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`console stream never showed ${until}; got:\n${text.slice(-500)}`));
    }, timeoutMs);
    sock.on('connect', () => sock.write(`${name}\n`));
    sock.on('data', (d) => {
      text += d.toString('utf8');
      if (until.test(text)) {
        clearTimeout(timer);
        sock.destroy();
        resolve(text);
      }
    });
    sock.on('error', reject);
  });
}

describe('the plain-text console stream (--console-tcp) and history across a gateway restart', () => {
  let first: SshvisorServer;
  let second: SshvisorServer | undefined;
  let key: string;
  let tcpPort: number;

  before(async () => {
    tcpPort = await freeLoopbackPort();
    first = await new SshvisorServer(['--console-tcp', `127.0.0.1:${tcpPort}`]).start();
    key = first.makeKey('owner');
  });
  after(async () => {
    await second?.stop();
    await first.stop();
  });

  it('streams the replay, then live bytes, to a client that sends a name', async () => {
    assert.equal((await first.ssh('alice', key, ['echo before-connect > /dev/ttyS0'])).code, 0);
    const reading = readConsole(tcpPort, 'alice', /after-connect/);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await first.ssh('alice', key, ['echo after-connect > /dev/ttyS0'])).code, 0);
    const text = await reading;
    assert.match(text, /before-connect[\s\S]*after-connect/);
    assert.match(first.log, /unauthenticated/, 'the log says the stream is plaintext and unauthenticated');
  });

  it('refuses an invalid name with a line saying why', async () => {
    const text = await readConsole(tcpPort, 'Not/A/Name', /\n/);
    assert.match(text, /^sshvisor: invalid VM name/);
  });

  it('keeps the history across a gateway restart (SIGTERM suspends the VM), with the exit marker', async () => {
    await first.stop({ keepFiles: true });
    second = await new SshvisorServer(['--data-dir', first.dataDir]).start();
    const logs = await second.ssh('alice+logs', key);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /before-connect[\s\S]*after-connect[\s\S]*] VM exited: suspended to disk\r\n$/);
    assert.equal(second.events('vm-boot').length, 0, 'reading the log booted nothing');
  });
});
