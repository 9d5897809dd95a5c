import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { SshvisorServer, runProgram } from '../helpers/sshvisor-server.js';
import { TmuxTerminal } from '../helpers/tmux.js';
import { withLibraryClient } from '../helpers/library-client.js';
import { freeLoopbackPort } from '../../src/vm/qemu/free-port.js';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Every kind of session a user opens, relayed to alice's VM, with real OpenSSH clients. */
describe('SSH sessions relayed into the VM', () => {
  let server: SshvisorServer;
  let key: string;
  const alice = (cmd: string[], opts?: Parameters<SshvisorServer['ssh']>[3]) => server.ssh('alice', key, cmd, opts);

  before(async () => {
    server = await new SshvisorServer().start();
    key = server.makeKey('alice');
  });
  after(() => server.stop());

  it('exec on a VM that is still booting: stdout is only the command output', async () => {
    const r = await alice(['echo first; echo to-stderr >&2; exit 7']);
    assert.equal(r.stdout, 'first\n');
    assert.equal(r.stderr, 'to-stderr\n');
    assert.equal(r.code, 7);
    await server.waitForEvent('vm-ready');
  });

  it('passes the exit status and an exit signal back', async () => {
    assert.equal((await alice(['true'])).code, 0);
    assert.equal((await alice(['exit 42'])).code, 42);
    // OpenSSH's client exits 255 when the remote command died of a signal.
    assert.equal((await alice(['kill -9 $$'])).code, 255);

    // The signal's name, as a library client sees it.
    const exit = await withLibraryClient(server, key, (c, done) =>
      c.exec('kill -TERM $$', (err, ch) => {
        if (err) return done(err);
        ch.on('exit', (...args: unknown[]) => done(undefined, args));
        ch.resume();
      }),
    );
    assert.deepEqual(exit, [null, 'SIGTERM', false, '']);
  });

  it('delivers signals to the remote command', async () => {
    const out = await withLibraryClient(server, key, (c, done) =>
      c.exec('trap "echo got-TERM; exit 42" TERM; echo armed; while :; do sleep 0.1; done', (err, ch) => {
        if (err) return done(err);
        let text = '';
        ch.on('data', (d: Buffer) => {
          text += d.toString();
          if (text.includes('armed') && !text.includes('sent')) {
            text += '(sent)';
            ch.signal('TERM');
          }
        });
        ch.on('exit', (code: number) => done(undefined, { code, text }));
      }),
    );
    assert.deepEqual(out, { code: 42, text: 'armed\n(sent)got-TERM\n' });
  });

  it('streams stdin, with EOF: tar c | ssh alice tar x', async () => {
    const src = join(server.dir, 'tree');
    mkdirSync(join(src, 'sub'), { recursive: true });
    const payload = randomBytes(300_000);
    writeFileSync(join(src, 'sub', 'data.bin'), payload);
    writeFileSync(join(src, 'hello.txt'), 'hello\n');
    const tar = spawnSync('tar', ['-C', src, '-c', '.']);
    assert.equal(tar.status, 0);
    const tarBytes = tar.stdout;
    const r = await alice(['rm -rf /root/unpacked && mkdir /root/unpacked && tar x -C /root/unpacked && cat /root/unpacked/hello.txt && sha256sum /root/unpacked/sub/data.bin'], { input: tarBytes });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `hello\n${sha256(payload)}  /root/unpacked/sub/data.bin\n`);
  });

  it('passes SetEnv/SendEnv through', async () => {
    const r = await alice(['echo "[$GREETING]"'], { sshArgs: ['-o', `SetEnv=GREETING="it's a quote"`] });
    assert.equal(r.stdout, "[it's a quote]\n");
  });

  it('gives a pty shell whose size follows the client, and ends with the shell exit status', async () => {
    const term = new TmuxTerminal(`ssh ${server.sshOptions(key).join(' ')} -p ${server.port} alice@127.0.0.1; echo "ssh-exited=$?"; sleep 60`, 100, 30);
    try {
      await term.waitFor(/root@alice:~#\s*$/m);
      term.type('stty size');
      await term.waitFor(/^30 100$/m);
      term.resize(120, 40);
      await new Promise((r) => setTimeout(r, 300));
      term.type('stty size');
      await term.waitFor(/^40 120$/m);
      term.type('tty');
      await term.waitFor(/^\/dev\/pts\/\d+$/m);
      term.type('exit 3');
      await term.waitFor(/ssh-exited=3/);
    } finally {
      term.close();
    }
  });

  it('shows boot progress on a pty, and only there', async () => {
    const other = server.makeKey('progress');
    const term = new TmuxTerminal(`ssh ${server.sshOptions(other).join(' ')} -p ${server.port} progress@127.0.0.1`, 100, 30);
    try {
      await term.waitFor(/sshvisor: starting VM progress\.\.\. \d+\.\d+s/);
      await term.waitFor(/sshvisor: progress is up \(\d+\.\ds\)/);
      await term.waitFor(/root@progress:~#\s*$/m);
      term.type('exit');
    } finally {
      term.close();
    }
  });

  it('copies files both ways with scp (SFTP mode and -O legacy mode), sftp and rsync', async () => {
    const local = join(server.dir, 'upload.bin');
    const payload = randomBytes(2 * 1024 * 1024 + 123);
    writeFileSync(local, payload);
    const base = [...server.sshOptions(key), '-P', String(server.port)];
    for (const mode of [[], ['-O']]) {
      const name = mode.length ? 'legacy' : 'sftp';
      const up = await runProgram('scp', [...mode, ...base, local, `alice@127.0.0.1:/root/${name}.bin`]);
      assert.equal(up.code, 0, `scp ${name} upload: ${up.stderr}`);
      const back = join(server.dir, `${name}-back.bin`);
      const down = await runProgram('scp', [...mode, ...base, `alice@127.0.0.1:/root/${name}.bin`, back]);
      assert.equal(down.code, 0, `scp ${name} download: ${down.stderr}`);
      assert.equal(sha256(readFileSync(back)), sha256(payload), `scp ${name} round trip`);
    }

    const batch = `put ${local} /root/via-sftp.bin\nls -l /root/via-sftp.bin\nget /root/via-sftp.bin ${join(server.dir, 'sftp-back.bin')}\n`;
    const sftp = await runProgram('sftp', [...base, '-b', '-', 'alice@127.0.0.1'], { input: batch });
    assert.equal(sftp.code, 0, sftp.stderr);
    assert.match(sftp.stdout, new RegExp(`${payload.length} .*via-sftp\\.bin`));
    assert.equal(sha256(readFileSync(join(server.dir, 'sftp-back.bin'))), sha256(payload));

    const sshCmd = ['ssh', ...server.sshOptions(key), '-p', String(server.port)].join(' ');
    const rs = await runProgram('rsync', ['-a', '-e', sshCmd, local, 'alice@127.0.0.1:/root/via-rsync.bin']);
    assert.equal(rs.code, 0, rs.stderr);
    const sum = await alice(['sha256sum /root/via-rsync.bin']);
    assert.equal(sum.stdout.split(' ')[0], sha256(payload));
  });

  it('forwards -L to a server listening inside the VM', async () => {
    const start = await alice(['mkdir -p /root/www && echo "served from $(hostname)" > /root/www/index.html && busybox httpd -p 127.0.0.1:8080 -h /root/www && echo up']);
    assert.equal(start.stdout, 'up\n', start.stderr);
    const port = await freeLoopbackPort();
    const fwd = spawn('ssh', [...server.sshOptions(key), '-p', String(server.port), '-N', '-o', 'ExitOnForwardFailure=yes', '-L', `127.0.0.1:${port}:localhost:8080`, 'alice@127.0.0.1']);
    try {
      const body = await retry(() => httpGet(`http://127.0.0.1:${port}/index.html`), 30_000);
      assert.equal(body, 'served from alice\n');
    } finally {
      fwd.kill();
    }
  });

  it('shares one VM between sessions of the same user', async () => {
    const [a, b] = await Promise.all([alice(['cat /proc/sys/kernel/random/boot_id']), alice(['cat /proc/sys/kernel/random/boot_id'])]);
    assert.match(a.stdout, /^[0-9a-f-]{36}\n$/);
    assert.equal(a.stdout, b.stdout);
  });

  it('keeps every session when many start and end at once in one VM', async () => {
    // All of them share the one agent connection: a session's end must never touch another's.
    const long = alice(['for i in 1 2 3 4 5 6 7 8; do echo tick-$i; sleep 1; done']);
    await new Promise((r) => setTimeout(r, 1500));
    const burst = await Promise.all(Array.from({ length: 15 }, (_, i) => alice([`echo burst-${i}`])));
    burst.forEach((r, i) => {
      assert.equal(r.code, 0, `session ${i}: ${r.stderr}`);
      assert.equal(r.stdout, `burst-${i}\n`);
    });
    const l = await long;
    assert.equal(l.code, 0, l.stderr);
    assert.equal(l.stdout, [1, 2, 3, 4, 5, 6, 7, 8].map((i) => `tick-${i}\n`).join(''));
  });

  it('works from a second, independent client implementation (paramiko)', async () => {
    const script = `
import paramiko, sys
c = paramiko.SSHClient()
c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
c.connect('127.0.0.1', port=${server.port}, username='alice', key_filename=sys.argv[1], allow_agent=False, look_for_keys=False)
_, out, err = c.exec_command('echo from-paramiko $(hostname); exit 5')
print(out.read().decode().strip(), out.channel.recv_exit_status())
sftp = c.open_sftp()
with sftp.open('/root/paramiko.txt', 'w') as f: f.write('written by paramiko')
print(sftp.open('/root/paramiko.txt').read().decode())
c.close()
`;
    const r = await runProgram('/usr/bin/python3', ['-c', script, key]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'from-paramiko alice 5\nwritten by paramiko\n');
  });
});


function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

async function retry<T>(fn: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
