import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { get } from 'node:http';
import { resolve } from 'node:path';
import { freeLoopbackPort } from '../../src/vm/qemu/free-port.js';
import { SshvisorServer, runProgram } from '../helpers/sshvisor-server.js';
import { HostListener } from '../helpers/host-listener.js';
import { AGENT_CHILDREN } from '../helpers/guest-probes.js';
import { startSshAgent } from '../helpers/ssh-agent.js';
import { withLibraryClient } from '../helpers/library-client.js';

const MAIN = resolve(import.meta.dirname, '..', '..', 'src', 'cli', 'main.js');

/**
 * What users get from sshvisor's own guest agent (docs/guest-protocol.md)
 * that the guest's dropbear could not give: real VMs, the real OpenSSH
 * client, one VM shared by the cases.
 */
describe('sessions through the guest agent', () => {
  let server: SshvisorServer;
  let key: string;
  const alice = (cmd: string[], opts?: Parameters<SshvisorServer['ssh']>[3]) => server.ssh('alice', key, cmd, opts);

  before(async () => {
    server = await new SshvisorServer().start();
    key = server.makeKey('alice');
    assert.equal((await alice(['true'], { timeoutMs: 180_000 })).code, 0, 'alice boots');
  });
  after(() => server.stop());

  it('runs a 100,000-byte command, byte for byte', async () => {
    // One argument of the local ssh (execve takes at most 128 KiB per argument), 100,000 bytes on the wire.
    const word = randomBytes(49_990).toString('hex');
    const command = `printf %s ${word} | md5sum;`;
    assert.equal(command.length, 100_000);
    const r = await alice([command]);
    assert.equal(r.code, 0, r.stderr);
    const md5 = spawnSync('md5sum', { input: word, encoding: 'utf8' }).stdout.split(' ')[0];
    assert.equal(r.stdout, `${md5}  -\n`);
  });

  it('refuses a command longer than sshd takes with a reason, and the connection and its other sessions live on', async () => {
    // Three arguments of 100,000 bytes: one command of 300,004 bytes, over sshd's 256 KiB packets (sshd drops the connection).
    const word = 'x'.repeat(100_000);
    const long = await alice([`: ${word}`, word, word]);
    assert.equal(long.code, 1, long.stderr);
    assert.equal(long.stderr, 'sshvisor: the command is too long: 300004 bytes, at most 262144 are taken\r\n');
    // The same on one connection that goes on: a second session on it still runs.
    const both = await withLibraryClient(server, key, (c, done) =>
      c.exec(`: ${word} ${word} ${word}`, (err, ch) => {
        if (err) return done(err);
        let stderr = '';
        ch.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        ch.resume();
        ch.on('exit', (code: number) =>
          c.exec('echo still-here', (err2, ch2) => {
            if (err2) return done(err2);
            let out = '';
            ch2.on('data', (d: Buffer) => (out += d.toString()));
            ch2.stderr.resume();
            ch2.on('close', () => done(undefined, { code, stderr, out }));
          }),
        );
      }),
    );
    assert.deepEqual(both, { code: 1, stderr: 'sshvisor: the command is too long: 300004 bytes, at most 262144 are taken\r\n', out: 'still-here\n' });
  });

  it('passes bytes that are not UTF-8 through, in the command and in SetEnv', async () => {
    // $'caf\xe9' as a shell user types it: the local shell makes the raw byte, ssh sends it as is.
    const opts = [...server.sshOptions(key), '-p', String(server.port)].map((a) => `'${a}'`).join(' ');
    const script = `ssh ${opts} -o "SetEnv=LATIN=$(printf 'caf\\351')" alice@127.0.0.1 "$(printf 'printf %%s caf\\351 "$LATIN" | od -An -tx1')"`;
    const r = await runProgram('sh', ['-c', script]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim().replace(/\s+/g, ' '), '63 61 66 e9 63 61 66 e9');
  });

  it('`ssh alice@host yes | head -1` returns, and nothing is left running in the guest', async () => {
    const r = await runProgram('sh', ['-c', `ssh ${server.sshOptions(key).map((a) => `'${a}'`).join(' ')} -p ${server.port} alice@127.0.0.1 yes | head -1`], { timeoutMs: 30_000 });
    assert.equal(r.stdout, 'y\n');
    assert.equal(r.signal, null, 'returned by itself');
    const left = await alice(['pidof yes || echo none']);
    assert.equal(left.stdout, 'none\n');
  });

  it('delivers what background jobs write before they close their output, as sshd does', async () => {
    const r = await alice(['(sleep 0.5; echo late) & echo early']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, 'early\nlate\n');
  });

  it('forwards the agent with ssh -A: ssh-add -l in the guest lists the user\'s keys', async () => {
    const agent = startSshAgent([key]);
    try {
      const env = agent.env;
      const fingerprint = spawnSync('ssh-keygen', ['-lf', `${key}.pub`], { encoding: 'utf8' }).stdout.split(' ')[1];
      const r = await runProgram('ssh', [...server.sshOptions(key), '-p', String(server.port), '-A', 'alice@127.0.0.1', 'ssh-add -l; echo "sock=$SSH_AUTH_SOCK"'], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(fingerprint && r.stdout.includes(fingerprint), `the guest lists ${fingerprint}:\n${r.stdout}`);
      assert.match(r.stdout, /^sock=\/tmp\/ssh-[^/]+\/agent\.\d+$/m);
      // Without -A there is no agent in the guest.
      const without = await runProgram('ssh', [...server.sshOptions(key), '-p', String(server.port), 'alice@127.0.0.1', 'echo "sock=$SSH_AUTH_SOCK"'], { env });
      assert.equal(without.stdout, 'sock=\n');
    } finally {
      agent.stop();
    }
  });

  it('ssh -R listens inside the VM and reaches the client side; nothing listens on the host', async () => {
    const listener = await HostListener.start();
    try {
      const r = await alice(['echo | nc 127.0.0.1 9000'], { sshArgs: ['-o', 'ExitOnForwardFailure=yes', '-R', `9000:127.0.0.1:${listener.port}`] });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${HostListener.GREETING}\n`);
      assert.equal(listener.connections.length, 1);
      const hostSide = spawnSync('ss', ['-Hltn', 'sport = :9000'], { encoding: 'utf8' });
      assert.equal(hostSide.stdout.trim(), '', 'no listener on the host');
    } finally {
      await listener.close();
    }
  });

  it("one user's hang-up never touches another's port forward (kill -9 of a pty client mid-download)", async () => {
    const served = await alice(['mkdir -p /root/fwd && dd if=/dev/zero of=/root/fwd/big bs=1M count=24 2>/dev/null && busybox httpd -p 127.0.0.1:8081 -h /root/fwd && echo up']);
    assert.equal(served.stdout, 'up\n', served.stderr);
    const port = await freeLoopbackPort();
    const fwd = spawn('ssh', [...server.sshOptions(key), '-p', String(server.port), '-N', '-o', 'ExitOnForwardFailure=yes', '-L', `127.0.0.1:${port}:127.0.0.1:8081`, 'alice@127.0.0.1'], { stdio: 'ignore' });
    const tty = spawn('ssh', [...server.sshOptions(key), '-p', String(server.port), '-tt', 'alice@127.0.0.1', 'sleep 1000'], { stdio: 'pipe' });
    tty.on('error', () => undefined);
    try {
      let bytes = -1;
      for (let attempt = 0; attempt < 50 && bytes < 0; attempt++) {
        bytes = await new Promise<number>((done) => {
          const req = get(`http://127.0.0.1:${port}/big`, (res) => {
            let n = 0;
            // Once the download runs, the other user's pty client dies.
            res.once('data', () => setTimeout(() => tty.kill('SIGKILL'), 300));
            res.on('data', (d: Buffer) => (n += d.length));
            res.on('end', () => done(n));
            res.on('error', () => done(-2));
          });
          req.on('error', () => setTimeout(() => done(-1), 200));
        });
      }
      assert.equal(tty.signalCode, 'SIGKILL', 'the pty client was killed during the download');
      assert.equal(bytes, 24 * 1024 * 1024, 'the whole file came through the forward');
    } finally {
      tty.kill('SIGKILL');
      fwd.kill();
      await alice(['kill $(pidof httpd) 2>/dev/null; rm -rf /root/fwd']);
    }
  });

  it('hangs up a pty session whose client went away, and only its own processes', async () => {
    const tty = spawn('ssh', [...server.sshOptions(key), '-p', String(server.port), '-tt', 'alice@127.0.0.1', 'echo $$ > /tmp/ptysh; sleep 1000'], { stdio: ['pipe', 'pipe', 'pipe'] });
    try {
      let pid = '';
      for (let i = 0; i < 100 && !/^\d+\n$/.test(pid); i++) {
        await new Promise((r) => setTimeout(r, 200));
        pid = (await alice(['cat /tmp/ptysh 2>/dev/null'])).stdout;
      }
      assert.match(pid, /^\d+\n$/, 'the pty session started');
      const detached = await alice(['setsid sleep 1000 > /dev/null 2>&1 < /dev/null & echo $!']);
      tty.kill('SIGKILL');
      let alive = 'yes';
      for (let i = 0; i < 50 && alive !== 'no\n'; i++) {
        await new Promise((r) => setTimeout(r, 200));
        alive = (await alice([`kill -0 ${pid.trim()} 2>/dev/null && echo yes || echo no`])).stdout;
      }
      assert.equal(alive, 'no\n', 'the pty session was hung up');
      const still = await alice([`kill -0 ${detached.stdout.trim()} && echo alive; kill ${detached.stdout.trim()}`]);
      assert.equal(still.stdout, 'alive\n', 'a detached process of another session lives on');
      const children = await alice([AGENT_CHILDREN]);
      assert.equal(children.stdout.trim(), '1', 'nothing else of the sessions is left');
    } finally {
      tty.kill('SIGKILL');
    }
  });

  it('a session cut by an operator\'s suspend says why; its processes are hung up when the VM resumes', async () => {
    const cut = runProgram('ssh', [...server.sshOptions(key), '-p', String(server.port), '-tt', 'alice@127.0.0.1', 'echo $$ > /tmp/cut-by-suspend; echo started; sleep 1000']);
    let pid = '';
    for (let i = 0; i < 100 && !/^\d+$/.test(pid); i++) {
      await new Promise((r) => setTimeout(r, 200));
      pid = (await alice(['cat /tmp/cut-by-suspend 2>/dev/null'])).stdout.trim();
    }
    assert.match(pid, /^\d+$/, 'the pty session started');
    const suspended = await runProgram(process.execPath, [MAIN, 'suspend', 'alice', '--data-dir', server.dataDir]);
    assert.equal(suspended.code, 0, suspended.stderr);
    const r = await cut;
    assert.match(r.stdout + r.stderr, /sshvisor: alice's VM was suspended to disk \(its processes are hung up when it resumes\); this session ended with it/);
    const after = await alice([`kill -0 ${pid} 2>/dev/null && echo still-there || echo hung-up; ${AGENT_CHILDREN}`], { timeoutMs: 180_000 });
    assert.deepEqual(after.stdout.trim().split('\n'), ['hung-up', '1'], after.stderr);
  });

  it('ships nohup, so `nohup ./server &` works, and its output file is written', async () => {
    const r = await alice(['nohup sh -c "echo from-nohup" > /tmp/nohup-test.out 2>&1 & wait; cat /tmp/nohup-test.out']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'from-nohup\n');
  });
});

describe('agent and remote forwarding turned off', () => {
  let server: SshvisorServer;
  let key: string;

  before(async () => {
    server = await new SshvisorServer(['--agent-forwarding', 'off', '--remote-forwarding', 'off', '--idle-timeout', '3']).start();
    key = server.makeKey('bob');
  });
  after(() => server.stop());

  it('refuses ssh -A and ssh -R with a reason on stderr, and runs the command', async () => {
    const agent = startSshAgent([key]);
    try {
      const r = await server.ssh('bob', key, ['echo "sock=$SSH_AUTH_SOCK"'], { sshArgs: ['-A', '-R', '9000:127.0.0.1:9'], timeoutMs: 180_000, env: agent.env });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'sock=\n');
      assert.match(r.stderr, /^sshvisor: agent forwarding \(ssh -A\) is turned off on this server\r$/m);
      assert.match(r.stderr, /^sshvisor: remote port forwarding \(ssh -R\) is turned off on this server\r$/m);
    } finally {
      agent.stop();
    }
  });

  it('an -L connection carrying traffic keeps the VM from idling; a bare ssh -N does not', async () => {
    const served = await server.ssh('bob', key, ['echo hello > /tmp/hello && busybox httpd -p 127.0.0.1:8082 -h /tmp && echo up'], { timeoutMs: 180_000 });
    assert.equal(served.stdout, 'up\n', served.stderr);
    const port = await freeLoopbackPort();
    const fwd = spawn('ssh', [...server.sshOptions(key), '-p', String(server.port), '-N', '-o', 'ExitOnForwardFailure=yes', '-L', `127.0.0.1:${port}:127.0.0.1:8082`, 'bob@127.0.0.1'], { stdio: 'ignore' });
    try {
      const fetchOnce = (): Promise<string> =>
        new Promise((done) => {
          get(`http://127.0.0.1:${port}/hello`, (res) => {
            let body = '';
            res.on('data', (d: Buffer) => (body += d.toString()));
            res.on('end', () => done(body));
          }).on('error', () => done(''));
        });
      const idleBefore = server.events('vm-idle').length;
      let fetched = 0;
      // Twice the idle timeout of traffic through the tunnel, a connection at a time.
      for (const until = Date.now() + 6000; Date.now() < until; await new Promise((r) => setTimeout(r, 300))) {
        if ((await fetchOnce()) === 'hello\n') fetched++;
      }
      assert.ok(fetched > 5, `${fetched} fetches through the tunnel`);
      assert.equal(server.events('vm-idle').length, idleBefore, 'not idle while the tunnel carries traffic');
      // The tunnel stays up, but nothing goes through it: that is idle.
      await server.waitForEvent('vm-idle', idleBefore + 1, 30_000);
    } finally {
      fwd.kill();
    }
  });
});
