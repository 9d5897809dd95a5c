import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controlSocketPath, sendControlCommand, startControlServer, type ControlRequest } from '../../src/ops/control-socket.js';
import { silentLogger } from '../../src/util/log.js';
import { UserError } from '../../src/util/errors.js';

const root = mkdtempSync(join(tmpdir(), 'sshvisor-ctl-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = (): string => {
  const d = join(root, `d${n++}`);
  mkdirSync(d, { mode: 0o700 });
  return d;
};

async function send(dataDir: string, argv: string[]): Promise<{ code: number; out: Buffer; err: string[] }> {
  const out: Buffer[] = [];
  const err: string[] = [];
  const code = await sendControlCommand(dataDir, { argv }, { stdout: (d) => out.push(d), stderr: (l) => err.push(l) });
  return { code, out: Buffer.concat(out), err };
}

describe('control socket', () => {
  test('a request runs, its output and exit status come back; the socket is 0600', async () => {
    const dataDir = freshDir();
    const seen: ControlRequest[] = [];
    const server = await startControlServer({
      dataDir,
      logger: silentLogger,
      run: async (req, io) => {
        seen.push(req);
        io.out(Buffer.from([0, 1, 2, 255]));
        io.out('text\n');
        io.err('a warning');
        return req.argv[0] === 'fail' ? 2 : 0;
      },
    });
    try {
      assert.equal(statSync(server.path).mode & 0o777, 0o600);
      const ok = await send(dataDir, ['ls']);
      assert.equal(ok.code, 0);
      assert.deepEqual(ok.out, Buffer.concat([Buffer.from([0, 1, 2, 255]), Buffer.from('text\n')]), 'bytes pass unchanged');
      assert.deepEqual(ok.err, ['a warning']);
      assert.equal((await send(dataDir, ['fail'])).code, 2);
      const both = await Promise.all([send(dataDir, ['a']), send(dataDir, ['b'])]);
      assert.deepEqual(both.map((r) => r.code), [0, 0], 'concurrent clients');
      assert.deepEqual(seen[0], { argv: ['ls'], color: false, columns: undefined });
    } finally {
      await server.close();
    }
  });

  test('no server: one line saying so', async () => {
    const dataDir = freshDir();
    await assert.rejects(send(dataDir, ['ls']), (err: unknown) => {
      assert.ok(err instanceof UserError);
      assert.equal(err.message, `no sshvisor server is running with data dir ${dataDir} (no answer on ${controlSocketPath(dataDir)}); start one with \`sshvisor serve --data-dir ${dataDir}\``);
      return true;
    });
  });

  test('a stale socket file is replaced; a live one means another server', async () => {
    const dataDir = freshDir();
    // What a server killed with SIGKILL leaves: a file nobody answers on.
    writeFileSync(controlSocketPath(dataDir), '');
    await assert.rejects(send(dataDir, ['ls']), /no sshvisor server is running/);
    const server = await startControlServer({ dataDir, logger: silentLogger, run: async () => 0 });
    try {
      await assert.rejects(startControlServer({ dataDir, logger: silentLogger, run: async () => 0 }), /another sshvisor server is already running with data dir/);
      assert.equal((await send(dataDir, ['ls'])).code, 0);
    } finally {
      await server.close();
    }
  });

  test('a malformed request gets an error and status 2', async () => {
    const dataDir = freshDir();
    const server = await startControlServer({ dataDir, logger: silentLogger, run: async () => 0 });
    try {
      const reply = await new Promise<string>((resolve) => {
        const s = createConnection(server.path);
        let text = '';
        s.setEncoding('utf8');
        s.on('data', (d: string) => (text += d));
        s.on('close', () => resolve(text));
        s.write('{"argv": "ls"}\n');
      });
      assert.deepEqual(
        reply.trim().split('\n').map((l) => JSON.parse(l)),
        [{ err: 'bad request: "argv" must be an array of strings' }, { exit: 2 }],
      );
    } finally {
      await server.close();
    }
  });
});
