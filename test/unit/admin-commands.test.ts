import { UserError } from '../../src/util/errors.js';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAdminCommand, runAdminCommand, splitCommandLine, type AdminOps, type CommandIo } from '../../src/ops/admin-commands.js';
import type { VmStatusReport } from '../../src/ops/vm-status.js';

const error = (argv: string[]): string => {
  const r = parseAdminCommand(argv);
  assert.ok(!r.ok, `expected an error for ${JSON.stringify(argv)}`);
  return r.error;
};

describe('parseAdminCommand', () => {
  test('the commands', () => {
    assert.deepEqual(parseAdminCommand([]), { ok: true, command: { cmd: 'help' } });
    assert.deepEqual(parseAdminCommand(['ls']), { ok: true, command: { cmd: 'ls', json: false } });
    assert.deepEqual(parseAdminCommand(['ls', '--json']), { ok: true, command: { cmd: 'ls', json: true } });
    assert.deepEqual(parseAdminCommand(['ls', 'json']), { ok: true, command: { cmd: 'ls', json: true } });
    assert.deepEqual(parseAdminCommand(['status', 'alice', 'json']), { ok: true, command: { cmd: 'status', name: 'alice', json: true } });
    assert.deepEqual(parseAdminCommand(['status', 'json']), { ok: true, command: { cmd: 'status', name: 'json', json: false } }, 'a VM may be called json');
    for (const cmd of ['stop', 'suspend', 'resume', 'logs', 'watch'] as const) {
      assert.deepEqual(parseAdminCommand([cmd, 'alice']), { ok: true, command: { cmd, name: 'alice' } });
    }
    assert.deepEqual(parseAdminCommand(['rm', 'alice']), { ok: true, command: { cmd: 'rm', name: 'alice', yes: false } });
    assert.deepEqual(parseAdminCommand(['rm', '--yes', 'alice']), { ok: true, command: { cmd: 'rm', name: 'alice', yes: true } });
    assert.deepEqual(parseAdminCommand(['rm', 'alice', '-y']), { ok: true, command: { cmd: 'rm', name: 'alice', yes: true } });
  });

  test('one specific line for each mistake', () => {
    assert.equal(error(['frob']), 'unknown command "frob"; commands: ls, status, stop, suspend, resume, rm, create, logs, watch (help lists them)');
    assert.equal(error(['stop']), 'stop needs a VM name: stop NAME');
    assert.equal(error(['stop', 'a', 'b']), 'stop takes one VM name, got 2: "a" "b"');
    assert.equal(error(['stop', 'alice', '--force']), 'stop: unknown option "--force"');
    assert.equal(error(['rm', 'alice', '--json']), 'rm: unknown option "--json" (it takes --yes, -y)');
    assert.equal(error(['ls', 'alice']), 'ls takes no VM name (got "alice"); for one VM: status NAME');
    assert.match(error(['stop', 'Alice']), /has uppercase letters/);
    assert.match(error(['stop', '../x']), /must start with a lowercase letter/);
    assert.match(error(['stop', '\x1b[2J']), /\\u001b/, 'control characters never reach the terminal');
  });

  test('split: whitespace only', () => {
    assert.deepEqual(splitCommandLine('  stop \t alice  '), ['stop', 'alice']);
    assert.deepEqual(splitCommandLine(''), []);
  });
});

function report(name: string, state: VmStatusReport['state'] = 'running'): VmStatusReport {
  return {
    name, state, image: 'default', kernel: 'Linux x', vcpus: 1, memoryMiB: 256, diskMiB: 1024, pid: null, startedAt: null, uptimeSeconds: null, resumedThisRun: state === 'running',
    cpuSeconds: null, sessions: 0, consoleViewers: 0, suspendedSince: null, owners: [], boots: 1, lastBootAt: null, suspends: 0,
    lastSuspendAt: null, resumes: 0, lastResumeAt: null, lastExit: null, console: ['hello'], hung: null, restart: null,
  };
}

function fakeOps(calls: string[]): AdminOps {
  return {
    names: () => ['alice', 'bob'],
    isKnown: (n) => n === 'alice' || n === 'bob',
    report: (n) => report(n, n === 'bob' ? 'stopped' : 'running'),
    stop: async (n) => {
      calls.push(`stop ${n}`);
      return n === 'bob' ? { kind: 'not-running' } : { kind: 'stopped', exit: { reason: 'stopped', detail: 'guest powered off on request', code: 0, signal: null, at: new Date() } };
    },
    suspend: async (n) => {
      calls.push(`suspend ${n}`);
      return { kind: 'failed', exit: { reason: 'stopped', detail: 'guest powered off on request', code: 0, signal: null, at: new Date() } };
    },
    resume: async (n) => {
      calls.push(`resume ${n}`);
      return { already: false, report: report(n) };
    },
    create: (n, r) => {
      calls.push(`create ${n} ${JSON.stringify(r)}`);
      if (n === 'alice') throw new UserError('VM alice already exists (image default)');
      return { image: r.image ?? 'default', memoryMiB: r.memoryMiB ?? 256, cpus: r.cpus ?? 1, diskMiB: r.diskMiB ?? 1024 };
    },
    remove: async (n) => {
      calls.push(`rm ${n}`);
      return { wasRunning: true };
    },
    history: () => Buffer.from('line1\r\nline2\r\n'),
  };
}

async function run(argv: string[], calls: string[] = []): Promise<{ code: number; out: string; err: string[] }> {
  let out = '';
  const err: string[] = [];
  const io: CommandIo = { out: (d) => (out += d.toString()), err: (l) => err.push(l), color: false, eol: '\n' };
  const parsed = parseAdminCommand(argv);
  assert.ok(parsed.ok);
  const code = await runAdminCommand(parsed.command, fakeOps(calls), io);
  return { code, out, err };
}

describe('runAdminCommand', () => {
  test('ls, status, logs', async () => {
    const ls = await run(['ls']);
    assert.equal(ls.code, 0);
    assert.match(ls.out, /^NAME +OWNER +STATE/);
    assert.match(ls.out, /\nbob +- +stopped/);
    const json = JSON.parse((await run(['ls', '--json'])).out) as Array<{ name: string }>;
    assert.deepEqual(json.map((r) => r.name), ['alice', 'bob']);
    assert.equal(JSON.parse((await run(['status', 'alice', '--json'])).out).state, 'running');
    assert.match((await run(['status', 'alice'])).out, /^alice\n {2}state/);
    assert.equal((await run(['logs', 'alice'])).out, 'line1\r\nline2\r\n');
  });

  test('actions and their exit statuses', async () => {
    const calls: string[] = [];
    assert.deepEqual(await run(['stop', 'alice'], calls), { code: 0, out: 'alice stopped: guest powered off on request\n', err: [] });
    assert.deepEqual(await run(['stop', 'bob'], calls), { code: 0, out: 'bob is not running (stopped)\n', err: [] });
    assert.deepEqual(await run(['resume', 'alice'], calls), { code: 0, out: 'alice is running (resumed from its snapshot)\n', err: [] });
    const failed = await run(['suspend', 'alice'], calls);
    assert.equal(failed.code, 1);
    assert.deepEqual(failed.err, ['alice could not be suspended; it ended instead: guest powered off on request']);
    const noYes = await run(['rm', 'alice'], calls);
    assert.equal(noYes.code, 2);
    assert.match(noYes.err[0]!, /^rm deletes alice for good .*; to do it: rm alice --yes$/);
    assert.deepEqual(await run(['rm', 'alice', '--yes'], calls), { code: 0, out: 'alice removed (its VM was running and has been killed)\n', err: [] });
    assert.deepEqual(calls, ['stop alice', 'stop bob', 'resume alice', 'suspend alice', 'rm alice'], 'rm without --yes did nothing');
  });

  test('an unknown VM is a usage error, and nothing is done', async () => {
    const calls: string[] = [];
    for (const cmd of ['stop', 'suspend', 'resume', 'logs', 'status']) {
      const r = await run([cmd, 'carol'], calls);
      assert.equal(r.code, 2);
      assert.deepEqual(r.err, ['no VM named "carol" (ls lists them)']);
    }
    assert.deepEqual(calls, []);
  });
});

describe('create', () => {
  test('parses --opt VALUE and --opt=VALUE, and refuses what is not a shape', () => {
    const ok = parseAdminCommand(['create', 'carol', '--image', 'debian', '--memory=1024', '--cpus', '2', '--disk-size', '4096']);
    assert.deepEqual(ok, { ok: true, command: { cmd: 'create', name: 'carol', request: { image: 'debian', memoryMiB: 1024, cpus: 2, diskMiB: 4096 } } });
    for (const [argv, why] of [
      [['create'], /needs a VM name/],
      [['create', 'a', 'b'], /one VM name/],
      [['create', 'carol', '--memory'], /--memory needs a value/],
      [['create', 'carol', '--memory', 'lots'], /whole number/],
      [['create', 'carol', '--image', 'Bad/Name'], /invalid image name/],
      [['create', 'carol', '--colour', 'red'], /unknown option/],
      [['create', 'Bad Name'], /./],
      [['create', 'admin'], /admin is the operators' account, not a VM name/],
    ] as const) {
      const r = parseAdminCommand(argv);
      assert.equal(r.ok, false, argv.join(' '));
      if (!r.ok) assert.match(r.error, why);
    }
  });

  test('says what it made, and why it could not', async () => {
    const calls: string[] = [];
    const out: string[] = [];
    const errs: string[] = [];
    const io = { out: (d: string | Buffer) => void out.push(String(d)), err: (l: string) => void errs.push(l), color: false, eol: '\n' };
    const made = parseAdminCommand(['create', 'carol', '--image', 'debian']);
    assert.ok(made.ok);
    assert.equal(await runAdminCommand(made.command, fakeOps(calls), io), 0);
    assert.match(out.join(''), /^carol created: image debian, 256 MiB, 1 vCPU, 1024 MiB disk/);
    const taken = parseAdminCommand(['create', 'alice']);
    assert.ok(taken.ok);
    assert.equal(await runAdminCommand(taken.command, fakeOps(calls), io), 1);
    assert.match(errs.join('\n'), /create alice: VM alice already exists/);
  });
});
