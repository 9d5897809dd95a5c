import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { SshvisorServer, type RunResult } from '../helpers/sshvisor-server.js';
import { AGENT_CHILDREN } from '../helpers/guest-probes.js';
import { freeLoopbackPort } from '../../src/vm/qemu/free-port.js';

/** How long the soak runs; SOAK_SECONDS overrides. */
const SOAK_SECONDS = Number(process.env.SOAK_SECONDS ?? 60);
/** Sessions kept busy at once. */
const WORKERS = 20;
/** Bytes per round trip and per file: each iteration stays small, the guest is emulated. */
const PAYLOAD_BYTES = 200_000;
const FILE_BYTES = 128 * 1024;
const BLOB_BYTES = 100_000;
/** Per operation: generous, the machine is shared and the guest emulated; a timeout is an error. */
const OP_TIMEOUT_MS = 180_000;


const KINDS = ['exec-cat', 'exec-md5', 'pty', 'forward', 'scp', 'sftp', 'mux'] as const;
type Kind = (typeof KINDS)[number];

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');

/**
 * A long mixed load on one VM through the guest agent, with the real OpenSSH
 * clients: exec round trips checked by checksum, pty sessions, -L forwards,
 * scp and sftp transfers, and sessions multiplexed over a ControlMaster, 20
 * at a time, looping. Not one of them may fail, the gateway may log no
 * error, and nothing of the sessions may be left in the guest afterwards.
 */
describe('agent soak: many kinds of sessions at once, for a while', () => {
  let server: SshvisorServer;
  let key: string;
  /** Every process this test spawns, by pid, until it has exited. */
  const live = new Map<number, ChildProcess>();

  /** Spawn `file args` in its own process group (so scp's and sftp's ssh go with it), tracked for cleanup. */
  function run(file: string, args: string[], input: Buffer | string = '', timeoutMs = OP_TIMEOUT_MS): Promise<RunResult & { out: Buffer }> {
    return new Promise((resolve, reject) => {
      const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
      if (child.pid) live.set(child.pid, child);
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout!.on('data', (b: Buffer) => out.push(b));
      child.stderr!.on('data', (b: Buffer) => err.push(b));
      const timer = setTimeout(() => killGroup(child), timeoutMs);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (child.pid) live.delete(child.pid);
        const stdout = Buffer.concat(out);
        resolve({ code, signal, out: stdout, stdout: stdout.toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
      });
      child.stdin!.on('error', () => {});
      child.stdin!.end(input);
    });
  }

  /** A long-running client (forward, master), tracked for cleanup. */
  function spawnLong(file: string, args: string[]): ChildProcess {
    const child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    if (child.pid) live.set(child.pid, child);
    child.stderr!.resume();
    child.on('close', () => child.pid && live.delete(child.pid));
    return child;
  }

  function killGroup(child: ChildProcess): void {
    if (!child.pid || child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }

  const alice = (cmd: string, input: Buffer | string = '', sshArgs: string[] = []) =>
    run('ssh', [...server.sshOptions(key), '-p', String(server.port), ...sshArgs, 'alice@127.0.0.1', cmd], input);

  before(async () => {
    server = await new SshvisorServer().start();
    key = server.makeKey('alice');
  });
  after(async () => {
    for (const child of [...live.values()]) killGroup(child);
    await server?.stop();
  });

  it(`keeps ${WORKERS} mixed sessions busy for ${SOAK_SECONDS} s without one error`, { timeout: (SOAK_SECONDS + 900) * 1000 }, async () => {
    const boot = await alice('true');
    assert.equal(boot.code, 0, `alice boots: ${boot.stderr}`);

    // A small web server inside the VM, and a blob it serves, for the -L forwards.
    const setup = await alice(
      [
        'set -e',
        'mkdir -p /root/www /root/soak',
        `head -c ${BLOB_BYTES} /dev/urandom > /root/www/blob.bin`,
        "sha256sum /root/www/blob.bin | cut -d' ' -f1",
        'setsid busybox httpd -f -p 127.0.0.1:8080 -h /root/www < /dev/null > /dev/null 2>&1 &',
        'echo "httpd=$!"',
      ].join('\n'),
    );
    assert.equal(setup.code, 0, setup.stderr);
    const [blobSha, httpdLine] = setup.stdout.trim().split('\n');
    assert.match(blobSha ?? '', /^[0-9a-f]{64}$/, setup.stdout);
    const httpdPid = /^httpd=(\d+)$/.exec(httpdLine ?? '')?.[1];
    assert.ok(httpdPid, setup.stdout);

    // Two long-lived -L forwards to it, and one ControlMaster connection for multiplexed sessions.
    const fwdPorts = [await freeLoopbackPort(), await freeLoopbackPort()];
    const forwards = fwdPorts.map((port) =>
      spawnLong('ssh', [...server.sshOptions(key), '-p', String(server.port), '-N', '-o', 'ExitOnForwardFailure=yes', '-L', `127.0.0.1:${port}:127.0.0.1:8080`, 'alice@127.0.0.1']),
    );
    for (const port of fwdPorts) {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const got = await httpGet(port).catch((e: Error) => e);
        if (!(got instanceof Error) && sha256(got) === blobSha) break;
        if (Date.now() > deadline) throw new Error(`the -L forward on ${port} does not serve the blob: ${got instanceof Error ? got.message : 'wrong bytes'}`);
        await sleep(250);
      }
    }
    const controlPath = join(server.dir, 'cm.sock');
    const muxOpts = ['-S', controlPath, '-o', 'ControlMaster=no'];
    const master = spawnLong('ssh', [...server.sshOptions(key), '-p', String(server.port), '-M', '-S', controlPath, '-o', 'ControlPersist=no', '-N', 'alice@127.0.0.1']);
    {
      const deadline = Date.now() + 60_000;
      while (!existsSync(controlPath) || (await run('ssh', ['-S', controlPath, '-O', 'check', 'alice@127.0.0.1'], '', 10_000)).code !== 0) {
        if (Date.now() > deadline) throw new Error('the ControlMaster did not come up');
        await sleep(250);
      }
    }

    const counts = Object.fromEntries(KINDS.map((k) => [k, 0])) as Record<Kind, number>;
    const errorsByKind = Object.fromEntries(KINDS.map((k) => [k, 0])) as Record<Kind, number>;
    const errorSamples: string[] = [];
    let bytesMoved = 0;
    const failed = (kind: Kind, what: string): void => {
      errorsByKind[kind]++;
      if (errorSamples.length < 10) errorSamples.push(`${kind}: ${what.slice(0, 500)}`);
    };
    const check = (kind: Kind, ok: boolean, what: () => string): void => {
      if (ok) counts[kind]++;
      else failed(kind, what());
    };
    const describeRun = (r: RunResult): string => `exit ${r.code}${r.signal ? ` (${r.signal})` : ''}, stderr ${JSON.stringify(r.stderr.slice(0, 300))}`;

    const scpBase = [...server.sshOptions(key), '-P', String(server.port)];
    const one: Record<Kind, (w: number, i: number) => Promise<void>> = {
      'exec-cat': async () => {
        const data = randomBytes(PAYLOAD_BYTES);
        const r = await alice('cat', data);
        bytesMoved += 2 * data.length;
        check('exec-cat', r.code === 0 && r.out.equals(data), () => `cat round trip: ${describeRun(r)}, ${r.out.length} bytes back`);
      },
      'exec-md5': async () => {
        const data = randomBytes(PAYLOAD_BYTES);
        const r = await alice('md5sum', data);
        bytesMoved += data.length;
        check('exec-md5', r.code === 0 && r.stdout === `${md5(data)}  -\n`, () => `md5sum: ${describeRun(r)}, stdout ${JSON.stringify(r.stdout)}`);
      },
      pty: async (w, i) => {
        if (i % 2 === 0) {
          // A command on a pty: its output comes through the terminal (\r\n), all of it, though the
          // command exits right after writing it (the agent reads the pty until EIO).
          const r = await alice(`tty; echo pty-${w}-${i}`, '', ['-tt']);
          check('pty', r.code === 0 && /^\/dev\/pts\/\d+\r\n/.test(r.stdout) && r.stdout.includes(`pty-${w}-${i}\r\n`), () => `pty command: ${describeRun(r)}, stdout ${JSON.stringify(r.stdout)}`);
        } else {
          // A login shell on a pty, typed into.
          const r = await alice('', `echo typed-$((${w} * 1000 + ${i}))\nexit 0\n`, ['-tt']);
          check('pty', r.code === 0 && r.stdout.includes(`typed-${w * 1000 + i}\r\n`), () => `pty shell: ${describeRun(r)}, stdout ${JSON.stringify(r.stdout.slice(-300))}`);
        }
      },
      forward: async (w, i) => {
        for (let k = 0; k < 3; k++) {
          const port = fwdPorts[(w + i + k) % fwdPorts.length]!;
          try {
            const body = await httpGet(port);
            bytesMoved += body.length;
            check('forward', sha256(body) === blobSha, () => `-L fetch on ${port}: ${body.length} bytes, wrong checksum`);
          } catch (e) {
            failed('forward', `-L fetch on ${port}: ${(e as Error).message}`);
          }
        }
      },
      scp: async (w, i) => {
        const data = randomBytes(FILE_BYTES);
        const local = join(server.dir, `scp-${w}-${i}.bin`);
        const back = `${local}.back`;
        const remote = `/root/soak/scp-${w}-${i}.bin`;
        writeFileSync(local, data);
        try {
          // SFTP mode and the legacy protocol by turns.
          const mode = i % 2 === 0 ? [] : ['-O'];
          const up = await run('scp', [...mode, ...scpBase, local, `alice@127.0.0.1:${remote}`]);
          if (up.code !== 0) return failed('scp', `upload: ${describeRun(up)}`);
          const down = await run('scp', [...mode, ...scpBase, `alice@127.0.0.1:${remote}`, back]);
          if (down.code !== 0) return failed('scp', `download: ${describeRun(down)}`);
          bytesMoved += 2 * data.length;
          check('scp', existsSync(back) && sha256(readFileSync(back)) === sha256(data), () => `scp ${mode.join('') || 'sftp'} round trip: checksum differs`);
          const rm = await alice(`rm ${remote}`);
          if (rm.code !== 0) failed('scp', `rm: ${describeRun(rm)}`);
        } finally {
          rmSync(local, { force: true });
          rmSync(back, { force: true });
        }
      },
      sftp: async (w, i) => {
        const data = randomBytes(FILE_BYTES);
        const local = join(server.dir, `sftp-${w}-${i}.bin`);
        const back = `${local}.back`;
        const remote = `/root/soak/sftp-${w}-${i}.bin`;
        writeFileSync(local, data);
        try {
          const r = await run('sftp', [...scpBase, '-b', '-', 'alice@127.0.0.1'], `put ${local} ${remote}\nget ${remote} ${back}\nrm ${remote}\n`);
          bytesMoved += 2 * data.length;
          check('sftp', r.code === 0 && existsSync(back) && sha256(readFileSync(back)) === sha256(data), () => `sftp put/get: ${describeRun(r)}`);
        } finally {
          rmSync(local, { force: true });
          rmSync(back, { force: true });
        }
      },
      mux: async () => {
        // A session over the shared master connection: a stdin round trip.
        const data = randomBytes(PAYLOAD_BYTES / 2);
        const r = await alice('sha256sum', data, muxOpts);
        bytesMoved += data.length;
        check('mux', r.code === 0 && r.stdout === `${sha256(data)}  -\n`, () => `mux session: ${describeRun(r)}, stdout ${JSON.stringify(r.stdout)}`);
      },
    };

    const started = Date.now();
    const deadline = started + SOAK_SECONDS * 1000;
    const workers = Array.from({ length: WORKERS }, async (_, w) => {
      // Each worker goes through every kind, from its own starting point: all kinds run at once throughout.
      for (let i = 0; Date.now() < deadline; i++) {
        const kind = KINDS[(w + i) % KINDS.length]!;
        try {
          await one[kind](w, i);
        } catch (e) {
          failed(kind, `threw: ${(e as Error).stack ?? String(e)}`);
        }
      }
    });
    await Promise.all(workers);
    const seconds = (Date.now() - started) / 1000;

    // The long-lived clients stayed up throughout, and go now.
    const forwardsUp = forwards.every((f) => f.exitCode === null && f.signalCode === null);
    const masterUp = master.exitCode === null && master.signalCode === null;
    await run('ssh', ['-S', controlPath, '-O', 'exit', 'alice@127.0.0.1'], '', 30_000);
    for (const child of [...forwards, master]) killGroup(child);

    const total = KINDS.reduce((n, k) => n + counts[k], 0);
    const errors = KINDS.reduce((n, k) => n + errorsByKind[k], 0);
    console.log(
      `agent-soak: ${seconds.toFixed(0)} s, ${WORKERS} workers, ${total} ops (${KINDS.map((k) => `${k} ${counts[k]}`).join(', ')}), ` +
        `${errors} errors, ${(bytesMoved / 2 ** 20).toFixed(1)} MiB moved`,
    );
    assert.deepEqual(errorSamples, [], `errors by kind: ${JSON.stringify(errorsByKind)}`);
    assert.equal(errors, 0);
    assert.ok(forwardsUp, 'the -L forwards stayed up');
    assert.ok(masterUp, 'the ControlMaster stayed up');
    for (const k of KINDS) assert.ok(counts[k] > 0, `some ${k} operations ran: ${JSON.stringify(counts)}`);
    assert.ok(total >= WORKERS, `a reasonable number of operations: ${total}`);

    // The server is unharmed and logged no error.
    assert.ok(server.running, 'the server still runs');
    const bad = server.log.split('\n').filter((l) => /"level":(50|60)/.test(l));
    assert.deepEqual(bad, [], 'no error or fatal lines in the server log');

    // Nothing of the sessions is left in the guest: the web server goes, then only the probing session is the agent's.
    const stop = await alice(`kill ${httpdPid}`);
    assert.equal(stop.code, 0, stop.stderr);
    let children = '';
    for (let tries = 0; tries < 60; tries++) {
      const r = await alice(AGENT_CHILDREN);
      children = r.stdout.trim();
      if (children === '1') break;
      await sleep(500);
    }
    assert.equal(children, '1', 'only the probing session is left in the guest');
    const leftovers = await alice('ls /root/soak | wc -l');
    assert.equal(leftovers.stdout.trim(), '0', 'every transferred file was removed');
    assert.ok(server.running, 'the server still runs');
    assert.deepEqual(server.log.split('\n').filter((l) => /"level":(50|60)/.test(l)), []);
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** GET /blob.bin through a -L forward on the host's loopback; rejects on a non-200 answer or after 60 s. */
function httpGet(port: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = get({ host: '127.0.0.1', port, path: '/blob.bin', agent: false, timeout: 60_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks)) : reject(new Error(`HTTP ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 60 s')));
    req.on('error', reject);
  });
}
