import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SshvisorServer, type RunResult } from '../helpers/sshvisor-server.js';
import { hostileImage } from '../helpers/hostile-image.js';
import { qemuProcesses } from '../helpers/host-listener.js';

const HOSTILE = ['garbage1', 'silent1', 'huge1'] as const;
/** A generous bound on the gateway's resident memory while three agents misbehave at once. */
const RSS_BOUND_KIB = 400 * 1024;

/**
 * Real guests whose agent is hostile (test/helpers/hostile-image.ts): one
 * floods the port with random bytes, one never answers, one handshakes and
 * then announces a 4 GiB frame. The gateway must refuse each login with a
 * reason, end each VM, keep its memory bounded, and go on serving others.
 */
describe('real guests with a hostile agent', () => {
  let image: Awaited<ReturnType<typeof hostileImage>> | undefined;
  let server: SshvisorServer | undefined;
  let key: string;

  before(async () => {
    image = await hostileImage();
    server = await new SshvisorServer(['--boot-timeout', '30'], { imageDir: image.dir }).start();
    key = server.makeKey('mallory');
  });
  after(async () => {
    await server?.stop();
    image?.dispose();
  });

  it('refuses garbage, silence and a 4 GiB frame at once with a reason each, ends those VMs, stays bounded and answers others', async () => {
    const s = server!;
    const pid = s.pid;
    assert.ok(pid, 'the server runs');
    let maxRssKiB = 0;
    const sampleRss = () => {
      try {
        const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
        if (m) maxRssKiB = Math.max(maxRssKiB, Number(m[1]));
      } catch {
        // the server exited: the assertions below say so
      }
    };
    sampleRss();
    const readBefore = readBytes(pid);
    const sampler = setInterval(sampleRss, 100);
    try {
      const logins = Promise.all(HOSTILE.map((name) => s.ssh(name, key, ['echo', 'should-never-run'], { timeoutMs: 300_000 })));

      // The flood is on once the script says so on garbage1's console; then other requests must still be answered.
      const consoleLog = join(s.dataDir, 'vms', 'garbage1', 'console.log');
      await waitUntil(() => readOr(consoleLog).includes('hostile-agent: garbage1 on /dev/'), 240_000, 'the garbage agent starts flooding');
      const statuses: RunResult[] = [];
      for (let i = 0; i < 3; i++) {
        statuses.push(await s.ssh('garbage1+status', key, [], { timeoutMs: 60_000 }));
        await new Promise((r) => setTimeout(r, 500));
      }
      // Answered while garbage1 was still flooding (its login has not been given up on yet).
      const stillFlooding = s.events('vm-boot-failed').every((e) => e.vm !== 'garbage1');
      for (const st of statuses) assert.equal(st.code, 0, `garbage1+status during the flood: ${st.stderr}`);
      assert.match(statuses[0]!.stdout, /garbage1/);
      assert.ok(stillFlooding, 'the status requests were answered while garbage1 still flooded');

      const results = await logins;
      sampleRss();
      const byName = Object.fromEntries(HOSTILE.map((n, i) => [n, results[i]!]));
      for (const name of HOSTILE) {
        const r = byName[name]!;
        assert.equal(r.code, 1, `${name}: exit status (stderr: ${r.stderr})`);
        assert.equal(r.stdout, '', `${name}: no output`);
        const lines = r.stderr.split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l !== '');
        assert.equal(lines.length, 1, `${name}: one line on stderr:\n${r.stderr}`);
        // huge1 may break the protocol before or after its guest says it is ready: a failed boot, or a failed session start.
        const how = name === 'huge1' ? `(VM ${name} failed to boot|cannot start a session in VM ${name})` : `VM ${name} failed to boot`;
        assert.match(lines[0]!, new RegExp(`^sshvisor: ${how}: `), name);
      }
      assert.match(byName.garbage1!.stderr, /no HELLO_ACK from the guest agent/);
      assert.match(byName.silent1!.stderr, /no HELLO_ACK from the guest agent/);
      assert.match(byName.huge1!.stderr, /protocol error: DATA payload of 4294967295 bytes is over the 65536-byte limit/);

      // Each hostile VM was ended: its QEMU is gone, and none was ever reported ready.
      await waitUntil(() => qemuProcesses(s.dataDir).length === 0, 30_000, 'every hostile QEMU has exited');
      // garbage1 and silent1 never handshake; huge1 may (then breaks the protocol, and is ended for it).
      assert.deepEqual(s.events('vm-ready').filter((e) => e.vm !== 'huge1'), [], 'no agent that never answered was taken for ready');
      const endedBy = (name: string): number => [...s.events('vm-boot-failed'), ...s.events('vm-agent-violation')].filter((e) => e.vm === name).length;
      for (const name of HOSTILE) {
        assert.equal(endedBy(name), 1, `${name}: one vm-boot-failed or vm-agent-violation`);
        assert.ok(s.events('vm-exit').some((e) => e.vm === name), `${name}: its exit was logged`);
      }

      // The 4 GiB header was refused as a protocol error before anything was buffered for it.
      const protocolErrors = logLines(s.log).filter((l) => l.vm === 'huge1' && /4294967295/.test(String(l.violation ?? '')));
      assert.equal(protocolErrors.length, 1, `huge1: one protocol error logged:\n${s.log}`);

      // The server lives on; its only errors are the three failed boots (each VM that does not come
      // up is worth an operator's attention, and that is the one error line a failed boot makes).
      assert.ok(s.running, 'the server still runs');
      const errors = logLines(s.log).filter((l) => Number(l.level) >= 50);
      assert.deepEqual(
        errors.map((l) => `${l.event}:${l.vm}`.replace('vm-agent-violation:huge1', 'vm-boot-failed:huge1')).sort(),
        HOSTILE.map((n) => `vm-boot-failed:${n}`).sort(),
        `only the expected errors:\n${errors.map((l) => JSON.stringify(l)).join('\n')}`,
      );

      // Still serving after it all: a status, and the server's memory stayed bounded.
      const after = await s.ssh('silent1+status', key, [], { timeoutMs: 60_000 });
      assert.equal(after.code, 0, after.stderr);
      // What the gateway read meanwhile (sockets included): mostly the garbage agent's flood.
      const readMiB = Math.round((readBytes(pid) - readBefore) / 2 ** 20);
      console.log(`hostile-agent: max gateway RSS ${Math.round(maxRssKiB / 1024)} MiB, ${readMiB} MiB read by the gateway; ${HOSTILE.map((n) => byName[n]!.stderr.trim()).join(' | ')}`);
      assert.ok(maxRssKiB > 0, 'RSS was sampled');
      assert.ok(maxRssKiB < RSS_BOUND_KIB, `gateway RSS peaked at ${maxRssKiB} KiB (bound ${RSS_BOUND_KIB} KiB)`);
    } finally {
      clearInterval(sampler);
    }
  });
});

/** rchar of /proc/PID/io: bytes the process read, from files and sockets alike. */
function readBytes(pid: number): number {
  return Number(/^rchar:\s+(\d+)$/m.exec(readOr(`/proc/${pid}/io`))?.[1] ?? 0);
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return '';
  }
}

function logLines(log: string): Array<Record<string, unknown>> {
  return log
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        return {};
      }
    });
}

async function waitUntil(ok: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
