import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { TmuxTerminal } from '../helpers/tmux.js';
import { freeLoopbackPort } from '../../src/vm/qemu/free-port.js';
import { DIFFERENCES } from './differences.js';
import { Pair, allow, documentedIds, run, view, type Run, type Target } from './harness.js';

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');
/** Single-quote for sh. */
const sq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const BIG_MIB = Number(process.env.CONFORMANCE_BIG_MIB ?? 128);

/**
 * Every case runs through sshvisor (a real `sshvisor serve`, one VM) and
 * against OpenSSH's sshd on loopback, with the same OpenSSH client, and
 * must see the same stdout, stderr and exit: docs/ssh-differences.md lists
 * what may differ, and why.
 */
describe('SSH conformance: sshvisor vs OpenSSH sshd', () => {
  const pair = new Pair();
  const tmp = (): string => {
    const d = join(pair.dir, `t${Math.random().toString(36).slice(2, 8)}`);
    mkdirSync(d);
    return d;
  };
  /** Run `fn` on sshvisor, then on sshd (one at a time: 2 cores). */
  async function both<T>(fn: (t: Target) => Promise<T>): Promise<[T, T]> {
    const a = await fn(pair.targets[0]!);
    const b = await fn(pair.targets[1]!);
    return [a, b];
  }
  /** The same command on both; stdout, stderr and exit must match. */
  async function same(args: string[], o: Parameters<Pair['ssh']>[2] = {}): Promise<Run> {
    const [a, b] = await both((t) => pair.ssh(t, args, o));
    assert.deepEqual(view(a), view(b), `ssh ${args.join(' ')}`);
    return a;
  }
  /** `sh -c SCRIPT` with "$@" = this target's client options and destination: for raw bytes and pipelines. */
  function shell(t: Target, script: string, o: { input?: Buffer | string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
    return run('sh', ['-c', script, 'sh', ...t.opts, t.dest], o);
  }

  before(() => pair.start(), { timeout: 600_000 });
  after(() => pair.stop());

  it('docs/ssh-differences.md and differences.ts list the same differences', () => {
    assert.deepEqual(documentedIds().sort(), Object.keys(DIFFERENCES).sort());
  });

  it('exit status', async () => {
    for (const cmd of ['true', 'exit 3', 'exit 255', 'printf out; printf err >&2; exit 42']) await same([cmd]);
  });

  it('exit signal: kill -TERM $$, kill -SEGV $$ (with and without core)', async () => {
    // OpenSSH's client exits 255 for an exit-signal and prints nothing at LogLevel=ERROR.
    for (const cmd of ['kill -TERM $$', 'ulimit -c 0; kill -SEGV $$', 'kill -KILL $$']) {
      const r = await same([cmd]);
      assert.equal(r.code, 255);
    }
    // The signal name and core flag as the client's debug log reports them.
    const sig = (r: Run): string[] => r.stderr.toString().split('\n').filter((l) => /exit-signal|exit status|Exit status/i.test(l)).map((l) => l.replace(/channel \d+/g, 'channel N').trim());
    for (const cmd of ['ulimit -c 0; kill -SEGV $$', 'kill -TERM $$']) {
      const [a, b] = await both((t) => pair.ssh(t, [cmd], { before: ['-o', 'LogLevel=DEBUG3'] }));
      assert.deepEqual(sig(a), sig(b), cmd);
      // OpenSSH's client takes exit-signal as "Exit status -1": name and core flag are not shown to the user.
      assert.ok(sig(a).some((l) => l.includes('rtype exit-signal')), sig(a).join('\n'));
    }
    // With a core: `ulimit -c unlimited` in a dir of its own (core_pattern is each machine's; cores are removed).
    const dir = `/tmp/conformance-core-${process.pid}`;
    const [a, b] = await both(async (t) => {
      await pair.ssh(t, [`rm -rf ${dir}; mkdir ${dir}`]);
      const r = await pair.ssh(t, [`cd ${dir} && ulimit -c unlimited && kill -SEGV $$`], { before: ['-o', 'LogLevel=DEBUG3'] });
      await pair.ssh(t, [`rm -rf ${dir}`]);
      return { code: r.code, lines: sig(r) };
    });
    assert.deepEqual(a, b);
  });

  it('stdin reaches the command with EOF; stderr apart', async () => {
    await same(['cat; echo done'], { input: 'abc\nno newline' });
    await same(['cat >/dev/null; printf out; printf err >&2; printf out2; printf err2 >&2']);
    await same(['wc -c'], { input: Buffer.alloc(0) });
  });

  it(`${BIG_MIB} MiB both ways (md5)`, async () => {
    if (BIG_MIB !== 128) allow('big-transfer-size');
    const n = BIG_MIB * 1024 * 1024;
    const up = Buffer.alloc(n);
    for (let i = 0; i < n; i += 4) up.writeUInt32LE((Math.imul(i, 2654435761) ^ (i >>> 7)) >>> 0, i);
    const [a, b] = await both(async (t) => {
      const started = Date.now();
      const u = await pair.ssh(t, ['md5sum'], { input: up, timeoutMs: 600_000 });
      const d = await pair.ssh(t, [`head -c ${n} /dev/zero | tr '\\0' x`], { timeoutMs: 600_000 });
      return { up: view(u), down: { code: d.code, stderr: d.stderr.toString(), md5: md5(d.stdout), bytes: d.stdout.length }, ms: Date.now() - started };
    });
    assert.equal(a.up.stdout, `${md5(up)}  -\n`);
    assert.deepEqual({ ...a, ms: 0 }, { ...b, ms: 0 });
    assert.equal(a.down.bytes, n);
    // A generous bound only: not a timing assertion on sshvisor's speed.
    assert.ok(a.ms < 600_000, `sshvisor took ${a.ms} ms`);
  });

  it('RekeyLimit=1M rekeys mid-transfer, both ways', async () => {
    const n = 6 * 1024 * 1024;
    const input = Buffer.alloc(n, 0x61);
    const [a, b] = await both(async (t) => {
      const r = await pair.ssh(t, [`md5sum; head -c ${n} /dev/zero | md5sum`], { input, before: ['-o', 'RekeyLimit=1M', '-o', 'LogLevel=DEBUG1'], timeoutMs: 300_000 });
      const rekeys = r.stderr.toString().split('\n').filter((l) => l.includes('SSH2_MSG_NEWKEYS received')).length;
      return { code: r.code, stdout: r.stdout.toString(), rekeyed: rekeys >= 4 };
    });
    assert.equal(a.stdout, `${md5(input)}  -\n${md5(Buffer.alloc(n))}  -\n`);
    assert.deepEqual(a, b);
    assert.ok(a.rekeyed);
  });

  it('a 100,000-byte command; a command with non-UTF-8 bytes', async () => {
    const cmd = `: ${' '.repeat(100_000 - 2 - '; printf ok'.length)}; printf ok`;
    assert.equal(Buffer.byteLength(cmd), 100_000);
    assert.equal((await same([cmd])).stdout.toString(), 'ok');
    const [a, b] = await both((t) => shell(t, `exec ssh "$@" "$(printf "printf %%s '\\351\\377\\001x' | od -An -tx1")"`));
    assert.deepEqual(view(a), view(b));
    assert.match(a.stdout.toString(), /e9 ff 01 78/);
  });

  it('env: SendEnv LANG LC_*, SetEnv, a non-UTF-8 value', async () => {
    const env = { ...process.env, LANG: 'C.UTF-8', LC_CONFORMANCE: 'ü-x' };
    await same(['printf "%s|%s\\n" "$LANG" "$LC_CONFORMANCE"'], { env, before: ['-o', 'SendEnv=LANG LC_*'] });
    await same(['printf "%s\\n" "$LC_SET"'], { before: ['-o', 'SetEnv=LC_SET=set-value'] });
    const [a, b] = await both((t) => shell(t, `LC_RAW=$(printf 'a\\351\\377b'); export LC_RAW; exec ssh -o SendEnv=LC_RAW "$@" 'printf %s "$LC_RAW" | od -An -tx1'`));
    assert.deepEqual(view(a), view(b));
    assert.match(a.stdout.toString(), /61 e9 ff 62/);
    // A name outside sshd's AcceptEnv.
    allow('accept-env-all');
    const [x, y] = await both((t) => pair.ssh(t, ['printf "[%s]" "$FOO"'], { before: ['-o', 'SetEnv=FOO=bar'] }));
    assert.equal(x.stdout.toString(), '[bar]');
    assert.equal(y.stdout.toString(), '[]');
  });

  it('ssh -o SetEnv=SHELL=/x -t: the server keeps its SHELL', async () => {
    const r = await same(['case "$SHELL" in /x) echo client;; *) echo server;; esac'], { before: ['-t', '-o', 'SetEnv=SHELL=/x'] });
    assert.equal(r.stdout.toString(), 'server\n');
  });

  it('ssh host yes | head -1 returns, and yes is gone', async () => {
    const r = await both((t) => shell(t, 'ssh "$@" yes | head -1', { timeoutMs: 60_000 }));
    assert.deepEqual(view(r[0]), view(r[1]));
    assert.equal(r[0].stdout.toString(), 'y\n');
    await sleep(1000);
    await same(['for p in /proc/[0-9]*; do cat $p/comm; done 2>/dev/null | grep -cx yes; true']);
  });

  it('background job output after the shell exits', async () => {
    const r = await same(['(sleep 0.5; echo late) & echo early']);
    assert.equal(r.stdout.toString(), 'early\nlate\n');
  });

  it('-N stays up silently until the client is signalled', async () => {
    const [a, b] = await both(async (t) => {
      const child = pair.track(spawn('ssh', [...t.opts, '-N', t.dest], { stdio: ['ignore', 'pipe', 'pipe'] }));
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<[number | null, string | null]>((r) => child.once('exit', (c, s) => r([c, s])));
      await sleep(3000);
      const alive = child.exitCode === null;
      child.kill('SIGTERM');
      return { alive, exit: await exited, out };
    });
    assert.deepEqual(a, b);
    assert.equal(a.alive, true);
  });

  it('-W to a listener inside the guest / on the sshd host', async () => {
    const port = await freeLoopbackPort();
    const [a, b] = await both(async (t) => {
      let stop: () => Promise<unknown>;
      if (t.side === 'sshvisor') {
        const l = pair.track(spawn('ssh', [...t.opts, t.dest, `echo listening; printf 'pong\\n' | nc -l -p ${port}`], { stdio: ['ignore', 'pipe', 'pipe'] }));
        let said = '';
        l.stdout!.on('data', (d: Buffer) => (said += d.toString()));
        const done = new Promise((r) => l.once('exit', r));
        for (let i = 0; i < 300 && !said.includes('listening'); i++) await sleep(100);
        await sleep(500);
        stop = async () => {
          const timer = setTimeout(() => l.kill('SIGKILL'), 10_000);
          await done;
          clearTimeout(timer);
          return said.replace('listening\n', '');
        };
      } else {
        let got = '';
        const srv: Server = createServer((s) => {
          s.on('data', (d) => (got += d.toString()));
          s.on('end', () => s.end());
          s.write('pong\n');
        });
        await new Promise<void>((r) => srv.listen(port, '127.0.0.1', r));
        stop = async () => {
          await new Promise((r) => srv.close(r));
          return got;
        };
      }
      const r = await pair.ssh(t, [], { before: ['-W', `127.0.0.1:${port}`], input: 'ping\n', timeoutMs: 30_000 });
      return { w: view(r), listenerGot: await stop() };
    });
    assert.deepEqual(a, b);
    assert.equal(a.w.stdout, 'pong\n');
  });

  it('-R: a port in the guest / on the host reaches a listener on the client side', async () => {
    const local = await freeLoopbackPort();
    const srv = createServer((s) => {
      s.end('from-client-side\n');
    });
    await new Promise<void>((r) => srv.listen(local, '127.0.0.1', r));
    try {
      const remotePort = await freeLoopbackPort();
      const [a, b] = await both(async (t) => {
        const fwd = pair.track(spawn('ssh', [...t.opts, '-N', '-o', 'ExitOnForwardFailure=yes', '-R', `127.0.0.1:${remotePort}:127.0.0.1:${local}`, t.dest], { stdio: 'ignore' }));
        const gone = new Promise((r) => fwd.once('exit', r));
        try {
          // The forward is up once a -W to it answers (it reaches the guest's / host's loopback).
          let r: Run | undefined;
          for (let i = 0; i < 30; i++) {
            r = await pair.ssh(t, [], { before: ['-W', `127.0.0.1:${remotePort}`], timeoutMs: 30_000 });
            if (r.stdout.length) break;
            await sleep(1000);
          }
          return { stdout: r!.stdout.toString(), code: r!.code };
        } finally {
          fwd.kill('SIGTERM');
          await gone;
        }
      });
      assert.deepEqual(a, b);
      assert.equal(a.stdout, 'from-client-side\n');
    } finally {
      await new Promise((r) => srv.close(r));
    }
  });

  it('-A: ssh-add -l in the session lists the client agent key', async () => {
    const dir = tmp();
    const sock = join(dir, 'agent.sock');
    const agent = pair.track(spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' }));
    try {
      for (let i = 0; i < 100 && !readdirSync(dir).includes('agent.sock'); i++) await sleep(50);
      const env = { ...process.env, SSH_AUTH_SOCK: sock };
      assert.equal(spawnSync('ssh-add', ['-q', pair.key], { env }).status, 0);
      // IdentityAgent=none (the suite's default) would also turn forwarding off.
      const r = await same(['ssh-add -l'], { env, before: ['-A', '-o', `IdentityAgent=${sock}`] });
      assert.match(r.stdout.toString(), /ED25519/);
      await same(['ssh-add -l; echo rc=$?'], { env });
    } finally {
      agent.kill('SIGTERM');
    }
  });

  it('ControlMaster: 12 sessions over one master (MaxSessions 10)', async () => {
    const [a, b] = await both(async (t) => {
      const cp = join(pair.dir, `cm-${t.side}`);
      const mux = [...t.opts, '-o', `ControlPath=${cp}`];
      const master = pair.track(spawn('ssh', [...mux, '-o', 'ControlMaster=yes', '-o', 'ControlPersist=no', '-N', t.dest], { stdio: 'ignore' }));
      const masterGone = new Promise((r) => master.once('exit', r));
      try {
        for (let i = 0; i < 300 && !readdirSync(pair.dir).includes(`cm-${t.side}`); i++) await sleep(100);
        // Ten sessions held open (each waits for its stdin's EOF)...
        const held = Array.from({ length: 10 }, (_, i) => {
          const c = pair.track(spawn('ssh', [...mux, t.dest, `echo up${i + 1}; cat >/dev/null; echo bye${i + 1}`], { stdio: ['pipe', 'pipe', 'pipe'] }));
          let out = '';
          let err = '';
          c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
          c.stderr!.on('data', (d: Buffer) => (err += d.toString()));
          const exit = new Promise<number | null>((r) => c.once('exit', (code) => r(code)));
          return { c, out: () => out, err: () => err, exit };
        });
        for (let i = 0; i < 1200 && !held.every((h) => h.out().startsWith('up')); i++) await sleep(100);
        // ...then an 11th and a 12th.
        const extra = [];
        for (const n of [11, 12]) extra.push(view(await pair.ssh(t, [`echo s${n}`], { before: ['-o', `ControlPath=${cp}`], timeoutMs: 120_000 })));
        for (const h of held) h.c.stdin!.end();
        const heldResults = [];
        for (const h of held) heldResults.push({ code: await h.exit, out: h.out(), err: h.err() });
        return { held: heldResults, extra };
      } finally {
        master.kill('SIGTERM');
        await masterGone;
      }
    });
    assert.deepEqual(a, b);
  });

  it('scp (SFTP and -O), sftp, rsync: UTF-8 and Latin-1 file names, contents', async () => {
    const src = tmp();
    const names = [Buffer.from('plain.txt'), Buffer.from('héllo-ü €.txt', 'utf8'), Buffer.from([0x6c, 0x61, 0x74, 0x69, 0x6e, 0xe9, 0xfc, 0x2e, 0x62, 0x69, 0x6e])];
    names.forEach((n, i) => writeFileSync(Buffer.concat([Buffer.from(src + '/'), n]), Buffer.alloc(1000 * (i + 1), 0x30 + i)));
    const listing = "cd \"$D\" && for f in *; do printf '%s ' \"$f\" | od -An -tx1 | tr -d '\\n'; md5sum < \"$f\"; done";
    const localListing = (dir: string): string =>
      readdirSync(Buffer.from(dir), { encoding: 'buffer' })
        .sort(Buffer.compare)
        .map((n) => `${n.toString('hex')} ${md5(readFileSync(Buffer.concat([Buffer.from(dir + '/'), n])))}`)
        .join('\n');
    // The same paths on both sides (the guest's /tmp, the sshd host's /tmp): sftp and scp echo them.
    const rdir = `/tmp/conformance-${process.pid}`;
    const local = join(pair.dir, 'xfer');
    const [a, b] = await both(async (t) => {
      const res: Record<string, unknown> = {};
      const fileOpts = ['-P', String(t.port), ...t.opts.filter((o) => o !== '-p' && o !== String(t.port))];
      rmSync(local, { recursive: true, force: true });
      mkdirSync(local);
      try {
        for (const mode of [[], ['-O']]) {
          const m = mode.length ? 'scp-O' : 'scp';
          await pair.ssh(t, [`rm -rf ${rdir}`]);
          res[`${m} up`] = view(await run('scp', [...mode, '-q', '-r', ...fileOpts, src, `${t.dest}:${rdir}`]));
          res[`${m} listing`] = view(await pair.ssh(t, [`D=${rdir}; ${listing}`]));
          res[`${m} down`] = view(await run('scp', [...mode, '-q', '-r', ...fileOpts, `${t.dest}:${rdir}`, join(local, m)]));
          res[`${m} back`] = localListing(join(local, m));
        }
        await pair.ssh(t, [`rm -rf ${rdir}`]);
        const batch = [`mkdir ${rdir}`, `put ${join(src, 'plain.txt')} ${rdir}/p`, `ls ${rdir}`, `get ${rdir}/p ${join(local, 'p')}`, `rename ${rdir}/p ${rdir}/q`, `ls -l ${rdir}`, `rm ${rdir}/q`, `rmdir ${rdir}`].join('\n');
        const sftp = view(await run('sftp', ['-q', ...fileOpts, '-b', '-', t.dest], { input: batch }));
        // `ls -l` shows owner, group and dates, which are the machine's: keep size and name.
        res.sftp = { ...sftp, stdout: sftp.stdout.replace(/^[-drwx]{10}\s+\d+\s+\S+\s+\S+\s+(\d+)\s+\S+\s+\d+\s+\S+\s+(\S+)$/gm, '$1 $2') };
        res['sftp back'] = md5(readFileSync(join(local, 'p')));
        const e = ['ssh', ...t.opts].map(sq).join(' ');
        res['rsync up'] = view(await run('rsync', ['-a', '-e', e, `${src}/`, `${t.dest}:${rdir}/`]));
        res['rsync listing'] = view(await pair.ssh(t, [`D=${rdir}; ${listing}`]));
        res['rsync down'] = view(await run('rsync', ['-a', '-e', e, `${t.dest}:${rdir}/`, `${join(local, 'rsync')}/`]));
        res['rsync back'] = localListing(join(local, 'rsync'));
      } finally {
        await pair.ssh(t, [`rm -rf ${rdir}`]);
      }
      return res;
    });
    assert.deepEqual(a, b);
    assert.equal(a['scp back'], localListing(src));
    assert.equal(a['scp-O back'], localListing(src));
    assert.equal(a['rsync back'], localListing(src));
  });

  it('a pty: stty size after a window resize (ssh -tt in tmux)', async () => {
    const [a, b] = await both(async (t) => {
      const cmd = `${['ssh', '-tt', ...t.opts, t.dest].map(sq).join(' ')} ${sq("stty size; echo one-done; read x; stty size; echo two-done; read x")}; sleep 600`;
      const term = new TmuxTerminal(cmd, 100, 30);
      try {
        await term.waitFor(/one-done/, 120_000);
        term.resize(91, 27);
        await sleep(1500);
        term.type('');
        await term.waitFor(/two-done/, 60_000);
        return term.screen().split('\n').map((l) => l.trim()).filter((l) => /^\d+ \d+$/.test(l));
      } finally {
        term.close();
      }
    });
    assert.deepEqual(a, b);
    assert.deepEqual(a, ['30 100', '27 91']);
  });

  it('terminal modes: stty erase ^H -ixon iutf8 intr ^K reach the remote pty', async () => {
    const [a, b] = await both(async (t) => {
      const cmd = `stty erase ^H -ixon iutf8 intr ^K; ${['ssh', '-tt', ...t.opts, t.dest].map(sq).join(' ')} ${sq('stty -a; echo modes-done')}; sleep 600`;
      const term = new TmuxTerminal(cmd, 200, 40);
      try {
        await term.waitFor(/modes-done/, 120_000);
        const s = term.screen().replace(/\n/g, ' ');
        return {
          intr: /intr = (\S+);/.exec(s)?.[1],
          erase: /erase = (\S+);/.exec(s)?.[1],
          ixon: /(^|\s)(-?ixon)(\s|$)/.exec(s)?.[2],
          iutf8: /(^|\s)(-?iutf8)(\s|$)/.exec(s)?.[2],
        };
      } finally {
        term.close();
      }
    });
    assert.deepEqual(a, b);
    assert.deepEqual(a, { intr: '^K', erase: '^H', ixon: '-ixon', iutf8: 'iutf8' });
  });
});
