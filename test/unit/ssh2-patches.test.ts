// patches/ssh2+1.17.0.patch, checked against the real OpenSSH client: a bare
// ssh2 Server on loopback, `ssh` (run under a pty from `script` where a
// terminal is needed) against it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import type { Connection, PseudoTtyInfo, ServerChannel } from 'ssh2';
import { loadOrCreateHostKey } from '../../src/ssh/host-key.js';

// Makes the OpenSSH client's compat.c set SSH_NEW_OPENSSH (pattern "OpenSSH*"),
// without which it never sends eow@openssh.com.
const IDENT = 'OpenSSH_sshvisor';
const STEP_MS = 20_000;

interface Seen {
  type: string;
  info?: unknown;
  /** Whether the request carried accept/reject callbacks (i.e. want_reply). */
  wantReply?: boolean;
}

const events = new EventEmitter();
const seen: Seen[] = [];
function record(s: Seen): void {
  seen.push(s);
  events.emit('seen', s);
}

/** The first event (already seen or still to come) of `type` that `match` accepts. */
async function waitFor<T = unknown>(type: string, match: (info: T) => boolean = () => true): Promise<Seen & { info: T }> {
  const ok = (s: Seen): boolean => s.type === type && match(s.info as T);
  const done = seen.find(ok);
  if (done) return done as Seen & { info: T };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      events.off('seen', on);
      reject(new Error(`no '${type}' event within ${STEP_MS} ms`));
    }, STEP_MS);
    const on = (s: Seen): void => {
      if (!ok(s)) return;
      clearTimeout(timer);
      events.off('seen', on);
      resolve(s as Seen & { info: T });
    };
    events.on('seen', on);
  });
}

let root = '';
let server: ssh2.Server | undefined;
let port = 0;
let clientKeyPath = '';
let clientKey: Buffer = Buffer.alloc(0);
const connections = new Set<Connection>();
const children = new Set<ChildProcess>();

function finish(ch: ServerChannel, code = 0): void {
  ch.exit(code);
  ch.end();
}

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'sshvisor-ssh2p-'));
  const hostKey = loadOrCreateHostKey(join(root, 'host'));
  const ck = loadOrCreateHostKey(join(root, 'client')); // any ed25519 key file ssh can use
  clientKeyPath = ck.path;
  clientKey = ck.privateKey;

  server = new ssh2.Server({ hostKeys: [hostKey.privateKey], ident: IDENT }, (client) => {
    connections.add(client);
    client.on('close', () => connections.delete(client));
    client.on('error', (err) => record({ type: 'client-error', info: err.message }));
    client.on('authentication', (ctx) => (ctx.method === 'publickey' ? ctx.accept() : ctx.reject(['publickey'])));
    client.on('ready', () => {
      client.on('session', (acceptSession) => {
        const session = acceptSession();
        session.on('pty', (accept, _reject, info) => {
          record({ type: 'pty', info });
          accept?.();
        });
        session.on('env', (accept, _reject, info) => {
          record({ type: 'env', info });
          accept?.();
        });
        session.on('eow', () => record({ type: 'eow' }));
        session.on('break', (accept, reject, info) => {
          record({ type: 'break', info, wantReply: accept !== undefined && reject !== undefined });
          accept?.();
        });
        session.on('exec', (accept, _reject, info) => {
          record({ type: 'exec', info });
          const ch = accept();
          if (info.command !== 'yes') {
            finish(ch);
            return;
          }
          // Endless output, like `yes`, until the client says it cannot take more.
          let stopped = false;
          const chunk = Buffer.from('y\n'.repeat(4096));
          const pump = (): void => {
            while (!stopped && ch.write(chunk));
          };
          ch.on('drain', pump);
          ch.on('error', () => {});
          session.on('eow', () => {
            stopped = true;
            record({ type: 'yes-stopped' });
            finish(ch, 141);
          });
          pump();
        });
        session.on('shell', (accept) => {
          const ch = accept();
          ch.on('error', () => {});
          session.on('break', () => finish(ch));
          ch.write('ready\r\n');
        });
      });
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  for (const child of children) killTree(child);
  for (const c of connections) c.end();
  if (server) await new Promise<void>((resolve) => server!.close(() => resolve()));
  rmSync(root, { recursive: true, force: true });
});

function killTree(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL'); // its own process group: script, the shell, ssh
  } catch {
    child.kill('SIGKILL');
  }
}

function sshArgs(...extra: string[]): string[] {
  return [
    '-F', '/dev/null',
    '-p', String(port),
    '-i', clientKeyPath,
    '-o', 'IdentitiesOnly=yes',
    '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=no',
    '-o', 'BatchMode=yes',
    '-o', 'LogLevel=ERROR',
    ...extra,
  ];
}
const HOST = '127.0.0.1';

const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
/** A shell line running ssh with these options and the host; append a command. */
const sshLine = (...extra: string[]): string => ['ssh', ...sshArgs(...extra), HOST].map(q).join(' ');

interface Run {
  child: ChildProcess;
  stdout: () => Buffer;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Spawns in its own process group, killed after STEP_MS or by after(). */
function run(cmd: string, args: string[], stdin: 'ignore' | 'pipe' = 'ignore'): Run {
  const child = spawn(cmd, args, {
    stdio: [stdin, 'pipe', 'pipe'],
    detached: true,
    env: { ...process.env, SHELL: '/bin/sh', LC_ALL: 'C' },
  });
  children.add(child);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d: Buffer) => err.push(d));
  const timer = setTimeout(() => killTree(child), STEP_MS);
  const exited = new Promise<number | null>((resolve) => {
    child.on('close', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve(code);
    });
  });
  return { child, stdout: () => Buffer.concat(out), stderr: () => Buffer.concat(err).toString(), exited };
}

/** Runs `shellLine` in a fresh pty (util-linux script), input fed through `script`'s stdin. */
function inPty(shellLine: string): Run {
  return run('script', ['-qec', shellLine, '/dev/null'], 'pipe');
}

async function until(r: Run, pattern: RegExp): Promise<void> {
  const deadline = Date.now() + STEP_MS;
  while (!pattern.test(r.stdout().toString('latin1'))) {
    if (Date.now() > deadline) throw new Error(`no ${pattern} in output: ${JSON.stringify(r.stdout().toString('latin1'))}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** RFC 4254 §8, written independently of ssh2: opcode → uint32 value. */
function parseModes(raw: Buffer): Map<number, number> {
  const modes = new Map<number, number>();
  for (let i = 0; i < raw.length; ) {
    const op = raw[i]!;
    if (op === 0 || op >= 160) break;
    modes.set(op, raw.readUInt32BE(i + 1));
    i += 5;
  }
  return modes;
}

describe('ssh2 server patches against the OpenSSH client', () => {
  test('pty-req: terminal modes are parsed, and arrive raw', { timeout: 60_000 }, async () => {
    const r = inPty(`stty erase ^H -ixon iutf8 intr ^K && exec ${sshLine('-tt')} modes-check`);
    assert.equal(await r.exited, 0, r.stderr());
    const { info } = await waitFor<PseudoTtyInfo>('pty');
    assert.ok(Buffer.isBuffer(info.rawModes));
    const raw = parseModes(info.rawModes);
    // VINTR=1 (^K), VERASE=3 (^H), IXON=38 (off), IUTF8=42 (on)
    assert.equal(raw.get(1), 0x0b);
    assert.equal(raw.get(3), 0x08);
    assert.equal(raw.get(38), 0);
    assert.equal(raw.get(42), 1);
    assert.equal(info.modes.VINTR, 0x0b);
    assert.equal(info.modes.VERASE, 0x08);
    assert.equal(info.modes.IXON, 0);
    assert.equal(info.modes.IUTF8, 1);
    assert.equal(info.rawModes.at(-1), 0, 'ends with TTY_OP_END');
    assert.ok(Object.keys(info.modes).length >= 40, `all modes parsed: ${JSON.stringify(info.modes)}`);
  });

  test('a 100,000-byte command arrives intact', { timeout: 60_000 }, async () => {
    const command = `: ${'x'.repeat(99_990)}12345678`;
    assert.equal(command.length, 100_000);
    const r = run('ssh', [...sshArgs(), HOST, command]);
    assert.equal(await r.exited, 0, r.stderr());
    const { info } = await waitFor<{ command: string; rawCommand: Buffer }>('exec', (i) => i.command.startsWith(': x'));
    assert.equal(info.command, command);
    assert.ok(info.rawCommand.equals(Buffer.from(command)));
  });

  test('non-UTF-8 bytes in the command and in SetEnv arrive byte for byte', { timeout: 60_000 }, async () => {
    // The shell makes the bytes: a JS string argv would be sent as UTF-8.
    const opts = sshArgs().map(q).join(' ');
    const line = `exec ssh ${opts} -o "SetEnv=SSH2P_VAR=$(printf 'caf\\351')" ${HOST} "$(printf 'echo caf\\351')"`;
    const r = run('/bin/sh', ['-c', line]);
    assert.equal(await r.exited, 0, r.stderr());
    const exec = await waitFor<{ command: string; rawCommand: Buffer }>('exec', (i) => i.command.startsWith('echo caf'));
    assert.deepEqual([...exec.info.rawCommand], [...Buffer.from('echo caf'), 0xe9]);
    assert.equal(exec.info.command, 'echo caf\ufffd', 'command stays the UTF-8 decoding');
    const env = await waitFor<{ key: string; val: string; rawKey: Buffer; rawVal: Buffer }>('env', (i) => i.key === 'SSH2P_VAR');
    assert.ok(env.info.rawKey.equals(Buffer.from('SSH2P_VAR')));
    assert.deepEqual([...env.info.rawVal], [0x63, 0x61, 0x66, 0xe9]);
    assert.equal(env.info.val, 'caf\ufffd');
  });

  test('eow@openssh.com arrives for `ssh host yes | head -1`, and the output stops', { timeout: 60_000 }, async () => {
    // -v (it overrides LogLevel=ERROR) shows the client's compat decision.
    const line = `${sshLine('-v')} yes | head -1`;
    const r = run('/bin/sh', ['-c', line]);
    assert.equal(await r.exited, 0, r.stderr());
    assert.equal(r.stdout().toString(), 'y\n');
    assert.match(r.stderr(), new RegExp(`compat_banner: match: ${IDENT} pat OpenSSH\\*`));
    await waitFor('eow');
    await waitFor('yes-stopped');
  });

  test('break arrives for ~B', { timeout: 60_000 }, async () => {
    const r = inPty(`exec ${sshLine('-tt')}`);
    await until(r, /ready/);
    r.child.stdin!.write('\r~B');
    const { info, wantReply } = await waitFor<{ length: number }>('break');
    assert.deepEqual(info, { length: 1000 });
    assert.equal(wantReply, false, "OpenSSH's ~B sends break without want_reply");
    assert.equal(await r.exited, 0, r.stderr());
  });

  test('pty-req from another client: values >= 2^24, unknown opcodes and opcodes >= 160 do not break parsing', { timeout: 60_000 }, async () => {
    const modes = Buffer.from([
      1, 0x01, 0x00, 0x00, 0x03, // VINTR = 0x01000003
      100, 0, 0, 0, 7, // unknown opcode < 160: skipped
      42, 0, 0, 0, 1, // IUTF8
      160, 1, 2, 3, // undefined opcode >= 160: parsing stops
      0,
    ]);
    const conn = new ssh2.Client();
    try {
      conn.connect({ host: '127.0.0.1', port, username: 'u', privateKey: clientKey });
      await once(conn, 'ready');
      const code = await new Promise<number>((resolve, reject) => {
        conn.exec('raw-modes', { pty: { term: 'vt100', modes: modes as never } }, (err, stream) => {
          if (err) return reject(err);
          stream.on('exit', (c: number) => resolve(c));
          stream.resume();
        });
      });
      assert.equal(code, 0);
    } finally {
      conn.end();
    }
    const pty = seen.filter((s) => s.type === 'pty').map((s) => s.info as PseudoTtyInfo).find((i) => i.term === 'vt100');
    assert.ok(pty);
    assert.deepEqual(pty.modes, { VINTR: 0x01000003, IUTF8: 1 });
    assert.ok(pty.rawModes.equals(modes));
  });
});
