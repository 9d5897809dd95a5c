import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RootfsStaging } from '../../src/image/initramfs.js';
import { requireTool } from '../../src/util/tools.js';
import { SshvisorServer } from '../helpers/sshvisor-server.js';
import { TmuxTerminal } from '../helpers/tmux.js';
import { testImage } from '../helpers/test-image.js';

/**
 * A guest like a unikernel: a kernel and a single program on the serial
 * console, no init system, no SSH daemon, no network. sshvisor must still give
 * its owner a way in (the console) and say clearly what it cannot do.
 */
async function buildConsoleOnlyInitrd(dir: string): Promise<string> {
  const stage = new RootfsStaging(join(dir, 'rootfs'));
  await stage.installBusybox(requireTool('busybox'));
  stage.writeFile('/init', {
    mode: 0o755,
    content: `#!/bin/sh
mount -t devtmpfs dev /dev
exec < /dev/ttyS0 > /dev/ttyS0 2>&1
echo "tiny-guest: up, no sshd here"
while read -r line; do echo "tiny-guest heard: $line"; done
`,
  });
  const out = join(dir, 'tiny.img');
  await stage.writeCpioGz(out);
  return out;
}

describe('a console-only image (no SSH daemon, like a unikernel)', () => {
  let server: SshvisorServer;
  let key: string;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sshvisor-tiny-'));
    const initrd = await buildConsoleOnlyInitrd(dir);
    const { kernel } = await testImage();
    server = await new SshvisorServer(['--kernel', kernel, '--initrd', initrd, '--console-only']).start();
    key = server.makeKey('owner');
  });
  after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('ssh -t NAME@host opens the console, booting the VM, and input reaches the program', async () => {
    const term = new TmuxTerminal(`ssh -t ${server.sshOptions(key).join(' ')} -p ${server.port} tiny@127.0.0.1`, 120, 40);
    try {
      await term.waitFor(/tiny's console: keystrokes go to the VM/);
      await term.waitFor(/tiny-guest: up, no sshd here/);
      term.type('hello unikernel');
      await term.waitFor(/tiny-guest heard: hello unikernel/);
    } finally {
      term.close();
    }
  });

  it('an exec request gets a clear error: the image has no shell', async () => {
    const r = await server.ssh('tiny', key, ['uname -a']);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^sshvisor: the image of tiny has no shell to run commands in; use `ssh -t tiny@host` for its console\r?\n$/);
  });

  it('its history is there over +logs', async () => {
    const r = await server.ssh('tiny+logs', key);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /tiny-guest: up, no sshd here[\s\S]*tiny-guest heard: hello unikernel/);
  });
});
