import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ssh2, { type ClientChannel } from 'ssh2';
import { SshvisorServer } from '../helpers/sshvisor-server.js';
import { Gen, prng } from '../helpers/fuzz-inputs.js';
import { parseUsername } from '../../src/ssh/routing.js';
import { isAcceptableEnv, type SessionEnv } from '../../src/ssh/guest-env.js';
import { AGENT_CHILDREN } from '../helpers/guest-probes.js';
import { Store } from '../../src/store/store.js';

/**
 * ≥10,000 generated inputs through the ssh2 client library against a real
 * `sshvisor serve` on loopback: usernames and suffixes (one connection
 * each, answered before any VM exists), then on one connection to one real
 * VM: subsystem names, exec strings, env requests, pty requests and window
 * sizes. The server must stay up, create no VM for an invalid name, and
 * answer every case specifically. FUZZ_SEED=N reproduces a run.
 */

const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const USERNAMES = Number(process.env.FUZZ_USERNAMES ?? 3000);
const SUBSYSTEMS = Number(process.env.FUZZ_SUBSYSTEMS ?? 2000);
const EXECS = Number(process.env.FUZZ_EXECS ?? 300);
const ENV_EXECS = Number(process.env.FUZZ_ENV_EXECS ?? 300);
/** Guest sessions 4 at a time: sessions start and end concurrently on the one agent connection. */
const GUEST_CONCURRENCY = Number(process.env.FUZZ_GUEST_CONCURRENCY ?? 4);
const CASE_MS = 60_000;

type Conn = InstanceType<typeof ssh2.Client>;

function connect(port: number, username: string, privateKey: Buffer): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    c.once('ready', () => resolve(c));
    c.once('error', reject);
    c.connect({ host: '127.0.0.1', port, username, privateKey, readyTimeout: CASE_MS });
  });
}

/** Run `fn` over items, `n` at a time. */
async function pool<T>(items: T[], n: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!, i);
    }
  }));
}

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer in ${CASE_MS} ms: ${what}`)), CASE_MS)))]).finally(() => clearTimeout(timer));
}

interface Result {
  stdout: Buffer;
  stderr: string;
  code?: number | null;
  signal?: string;
}

/** Run a started channel to its end: output, then exit status or signal, then close. */
function collect(ch: ClientChannel, after?: (ch: ClientChannel) => void): Promise<Result> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    let stderr = '';
    const r: Result = { stdout: Buffer.alloc(0), stderr: '' };
    ch.on('data', (d: Buffer) => out.push(d));
    ch.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    ch.on('exit', (code: number | null, signal?: string) => {
      r.code = code;
      if (signal) r.signal = signal;
    });
    ch.on('close', () => resolve({ ...r, stdout: Buffer.concat(out), stderr }));
    after?.(ch);
    ch.end();
  });
}

/** What the server decodes from the username the client encodes (lone surrogates become U+FFFD). */
const onTheWire = (s: string): string => Buffer.from(s, 'utf8').toString('utf8');

describe('fuzz: usernames, suffixes, and channel requests through a real SSH client', { timeout: 600_000 }, () => {
  let server: SshvisorServer;
  let key: Buffer;
  let gen: Gen;
  let vmConn: Conn | undefined;
  let cases = 0;

  before(async () => {
    console.log(`fuzz seed ${SEED} (rerun with FUZZ_SEED=${SEED})`);
    gen = new Gen(prng(SEED));
    // Every valid-looking +watch/+logs/+status name fails auth here: the per-source limit must not stop the run.
    server = new SshvisorServer(['--max-auth-failures', '1000000', '--idle-timeout', '0']);
    key = readFileSync(server.makeKey('fuzz'));
    await server.start();
  });
  after(async () => {
    vmConn?.end();
    if (process.env.FUZZ_LOG) writeFileSync(process.env.FUZZ_LOG, server.log);
    await server?.stop();
  });

  it('usernames and suffixes: each refused with its reason, or denied; no VM', async () => {
    const names: string[] = [];
    while (names.length < USERNAMES) {
      const u = gen.username();
      const parsed = parseUsername(onTheWire(u));
      // A routable shell or console name would boot a VM; 'fuzz' is the one real VM's owner.
      if (parsed.ok && parsed.route.kind === 'vm' && (parsed.route.mode === 'shell' || parsed.route.mode === 'console' || parsed.route.vm === 'fuzz')) continue;
      if (u === '') continue; // ssh2's client will not send an empty username
      names.push(u);
    }
    const failures: string[] = [];
    const started = Date.now();
    await pool(names, 8, async (u) => {
      const parsed = parseUsername(onTheWire(u));
      const expected = !parsed.ok
        ? `sshvisor: ${parsed.reason}\r\n`
        : parsed.route.kind === 'admin'
          ? 'sshvisor: the admin account is not enabled on this server\r\n'
          : parsed.route.mode === 'token'
            ? 'sshvisor: the HTTP API is not enabled on this server (sshvisor serve --http), so it has no tokens to give\r\n'
            : 'auth-denied';
      let got: string;
      try {
        const c = await withTimeout(connect(server.port, u, key), `connect ${JSON.stringify(u.slice(0, 60))}`);
        try {
          const r = await withTimeout(new Promise<Result>((resolve, reject) => c.exec('true', (err, ch) => (err ? reject(err) : resolve(collect(ch))))), 'exec');
          got = r.code === 1 ? r.stderr : `exit ${r.code}: ${r.stderr}`;
        } finally {
          c.end();
        }
      } catch (err) {
        const e = err as Error & { level?: string };
        got = e.level === 'client-authentication' ? 'auth-denied' : `error: ${e.message}`;
      }
      cases++;
      if (got !== expected) failures.push(`${JSON.stringify(u.slice(0, 80))}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(got)}`);
    });
    console.log(`${names.length} usernames in ${Date.now() - started} ms`);
    assert.deepEqual(failures.slice(0, 20), [], `${failures.length} of ${names.length} usernames answered wrongly (seed ${SEED})`);
    assert.ok(server.running, 'server still running');
    const vms = join(server.dataDir, 'vms');
    assert.deepEqual(existsSync(vms) ? readdirSync(vms) : [], [], 'no VM directory for any of them');
  });

  it('channel requests on one VM: subsystems, exec strings, env, pty modes, window sizes', async () => {
    vmConn = await connect(server.port, 'fuzz', key);
    vmConn.on('error', (err) => console.log(`the fuzz connection failed: ${err.message}`));
    const conn = vmConn;
    const exec = (cmd: string, opts: ssh2.ExecOptions, after?: (ch: ClientChannel) => void): Promise<Result | Error> =>
      withTimeout(new Promise<Result | Error>((resolve) => conn.exec(cmd, opts, (err, ch) => (err ? resolve(err) : resolve(collect(ch, after))))), `exec ${JSON.stringify(cmd.slice(0, 60))}`);
    // Boots the one VM.
    const first = await exec('echo up', {});
    assert.ok(!(first instanceof Error) && first.stdout.toString() === 'up\n', `first exec: ${JSON.stringify(first)}`);
    const failures: string[] = [];
    let started = Date.now();

    // Subsystems: only "sftp" exists; every other name is refused before the guest sees it. ssh2's client
    // keeps a channel whose subsystem was refused open, so each connection carries a few (under --max-sessions).
    const subsystems = Array.from({ length: SUBSYSTEMS }, () => gen.subsystem());
    const batches = Array.from({ length: Math.ceil(subsystems.length / 8) }, (_, i) => subsystems.slice(i * 8, i * 8 + 8));
    await pool(batches, 4, async (batch) => {
      const c = await withTimeout(connect(server.port, 'fuzz', key), 'connect for subsystems');
      try {
        for (const name of batch) {
          const err = await withTimeout(new Promise<Error | undefined>((resolve) => c.subsys(name, (e, ch) => {
            if (!e) ch.close();
            resolve(e);
          })), `subsystem ${JSON.stringify(name.slice(0, 40))}`);
          cases++;
          if (!(err instanceof Error) || err.message !== `Unable to start subsystem: ${name}`) failures.push(`subsystem ${JSON.stringify(name.slice(0, 60))}: ${err?.message ?? 'started'}`);
        }
      } finally {
        c.end();
      }
    });
    console.log(`${SUBSYSTEMS} subsystems in ${Date.now() - started} ms`);

    // A terminal mode value of 2^24 or more: a mode's value is a uint32 (RFC 4254 §8), so, as with sshd,
    // the session starts (unpatched ssh2 misparsed modes and ended the connection here).
    for (let i = 0; i < 10; i++) {
      const c = await withTimeout(connect(server.port, 'fuzz', key), 'connect for big modes');
      const outcome = await withTimeout(new Promise<string>((resolve) => {
        c.on('error', (err) => resolve(err.message));
        c.exec('true', { pty: { term: 'xterm', rows: 24, cols: 80, modes: { VINTR: 2 ** 24 + gen.int(0, 2 ** 31) } } }, (err) => resolve(err ? err.message : 'started'));
      }), 'big mode');
      c.end();
      cases++;
      if (outcome !== 'started') failures.push(`pty mode >= 2^24: ${outcome}`);
    }
    started = Date.now();

    // Exec strings, half with a pty, with window changes after the start: the guest's answer is an exit status or signal.
    const execs = Array.from({ length: EXECS }, () => ({ cmd: gen.exec(), pty: gen.chance(0.5) ? gen.pty() : undefined, windows: Array.from({ length: gen.int(0, 4) }, () => gen.window()) }));
    await pool(execs, GUEST_CONCURRENCY, async ({ cmd, pty, windows }) => {
      let hungUp = false;
      const r = await exec(cmd, pty ? { pty } : {}, (ch) => {
        windows.forEach((w) => ch.setWindow(...w));
        // EOF on a channel is not EOF on a terminal: under a pty, `cat` and friends wait for input for
        // good (as under sshd). Such a session is closed by the client, as a user would, and must end.
        const timer = setTimeout(() => {
          hungUp = true;
          ch.close();
        }, 10_000);
        ch.once('close', () => clearTimeout(timer));
      });
      cases += 1 + (pty ? 1 : 0) + windows.length;
      const answered = !(r instanceof Error) && (typeof r.code === 'number' || typeof r.signal === 'string' || (hungUp && !!pty));
      if (!answered) failures.push(`exec ${JSON.stringify(cmd.slice(0, 60))} pty=${JSON.stringify(pty)?.slice(0, 80)}: ${r instanceof Error ? r.message : JSON.stringify({ ...r, stdout: r.stdout.length })}`);
    });
    console.log(`${EXECS} exec strings in ${Date.now() - started} ms`);
    started = Date.now();

    // Env requests: each accepted one reaches the guest's command exactly; each refused one does not.
    const envs = Array.from({ length: ENV_EXECS }, () => gen.env());
    await pool(envs, GUEST_CONCURRENCY, async (requests) => {
      // ssh2 takes env as an object: one request per distinct key (last value wins), in the object's key order.
      const env: Record<string, string> = {};
      for (const [k, v] of requests) env[k] = v;
      const accepted: SessionEnv = new Map();
      for (const [k, v] of Object.entries(env)) if (isAcceptableEnv(accepted, onTheWire(k), Buffer.from(v, 'utf8'))) accepted.set(onTheWire(k), Buffer.from(v, 'utf8'));
      const keys = [...accepted.keys()];
      const cmd = keys.length ? `printf '%s\\0' ${keys.map((k) => `"$${k}"`).join(' ')}` : 'true';
      const r = await exec(cmd, { env });
      cases += requests.length || 1;
      // Byte for byte: the guest gets what the client sent, not a UTF-8 reading of it.
      const want = Buffer.concat(keys.map((k) => Buffer.concat([accepted.get(k)!, Buffer.from([0])])));
      if (r instanceof Error || r.code !== 0 || !r.stdout.equals(want)) {
        failures.push(`env ${JSON.stringify(requests).slice(0, 120)}: ${r instanceof Error ? r.message : `exit ${r.code} ${JSON.stringify(r.stdout.toString().slice(0, 80))} ${r.stderr.slice(0, 80)}`}`);
      }
    });
    console.log(`${ENV_EXECS} env sets in ${Date.now() - started} ms`);

    assert.deepEqual(failures.slice(0, 20), [], `${failures.length} channel cases answered wrongly (seed ${SEED})`);
    // The VM still works after all of it.
    const last = await exec('echo still-up', {});
    assert.ok(!(last instanceof Error) && last.stdout.toString() === 'still-up\n');
    // Every session ended in the guest too, hung-up ptys included: the agent's only child is this
    // session's own shell (polled: the last hang-ups take a moment).
    let children = Infinity;
    for (let i = 0; i < 30 && children > 1; i++) {
      const ps = await exec(AGENT_CHILDREN, {});
      children = ps instanceof Error ? Infinity : Number(ps.stdout.toString().trim());
      if (children > 1) await new Promise((r) => setTimeout(r, 1000));
    }
    assert.ok(children <= 1, `${children} session processes left in the guest`);
  });

  it('totals: at least 10,000 cases, the server never went down, and only the one VM exists', async () => {
    console.log(`${cases} cases, seed ${SEED}`);
    assert.ok(cases >= 10_000, `${cases} cases`);
    assert.ok(server.running, 'server still running');
    assert.doesNotMatch(server.log, /"level":(50|60)/, 'no error or fatal log line');
    assert.deepEqual(readdirSync(join(server.dataDir, 'vms')), ['fuzz']);
    vmConn?.end();
    vmConn = undefined;
    await server.stop({ keepFiles: true });
    const store = Store.open(server.dataDir);
    try {
      assert.deepEqual(store.listVms().map((v) => v.name), ['fuzz']);
    } finally {
      store.close();
    }
  });
});
