import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentConnection } from '../../src/guest/agent-connection.js';
import { FRAME_HEADER_BYTES, MAX_AGENT_STREAMS, MAX_OPEN_PAYLOAD, STREAM_WINDOW } from '../../src/guest/agent-frames.js';
import { connectUnix } from '../../src/util/unix-socket.js';
import { caseSeed, G, rng } from '../helpers/fake-agent-fuzz.js';

const SEED = process.env.AGENT_FUZZ_SEED ? Number(process.env.AGENT_FUZZ_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
const CASES = Number(process.env.AGENT_FUZZ_CASES ?? 3000);
const PARALLEL = 16;
const CASE_MS = 60;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it(`a hostile agent never crashes the gateway nor grows its memory (seed ${SEED}, AGENT_FUZZ_SEED=${SEED} reproduces)`, async () => {
  console.log(`agent fuzz seed ${SEED} (AGENT_FUZZ_SEED=${SEED} reproduces), ${CASES} cases`);
  const dir = mkdtempSync(join(tmpdir(), 'agent-fuzz-'));
  const sockPath = join(dir, 'agent.sock');
  const helper = join(import.meta.dirname, '..', 'helpers', 'fake-agent-fuzz.js');
  const child = spawn(process.execPath, [helper, sockPath, String(SEED)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const faults: string[] = [];
  const onUncaught = (e: unknown) => void faults.push(`uncaught: ${String((e as Error)?.stack ?? e)}`);
  const onUnhandled = (e: unknown) => void faults.push(`unhandled rejection: ${String((e as Error)?.stack ?? e)}`);
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUnhandled);
  const outcomes = new Map<string, number>();
  const count = (k: string) => outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
  const rss0 = process.memoryUsage().rss;
  let maxRss = rss0;
  try {
    await new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (c) => reject(new Error(`fake agent exited (${c})`)));
      child.stdout!.once('data', () => resolve());
    });
    const warns: string[] = [];
    const runCase = async (index: number) => {
      const g = new G(rng(caseSeed(SEED, index, 3)));
      const sock = await connectUnix(sockPath);
      const idx = Buffer.alloc(4);
      idx.writeUInt32BE(index, 0);
      sock.write(idx);
      let conn: AgentConnection;
      try {
        conn = await AgentConnection.over(sock, { timeoutMs: 80, log: { warn: (_o, m) => void warns.push(m) } });
      } catch (e) {
        const m = (e as Error).message;
        count(/no HELLO_ACK from the guest agent within/.test(m) ? 'handshake timeout' : /closed before/.test(m) ? 'handshake: socket closed' : /version|protocol error/.test(m) ? 'handshake refused' : `handshake other: ${m}`);
        return;
      }
      const check = () => {
        const s = conn.stats();
        if (s.decoderBytes > FRAME_HEADER_BYTES + MAX_OPEN_PAYLOAD) faults.push(`case ${index}: decoder holds ${s.decoderBytes} bytes`);
        if (s.maxStreamBufferedBytes > STREAM_WINDOW) faults.push(`case ${index}: a stream holds ${s.maxStreamBufferedBytes} bytes`);
        if (s.agentStreams > MAX_AGENT_STREAMS) faults.push(`case ${index}: ${s.agentStreams} agent streams`);
      };
      const sampler = setInterval(check, 3);
      const noop = () => {};
      const read = g.chance(0.6);
      for (let i = g.int(0, 4); i > 0; i--) {
        switch (g.int(0, 4)) {
          case 0:
            conn.ping(g.int(5, 50)).catch(noop);
            break;
          case 1:
            conn
              .exec({ command: Buffer.from('x'), onAuthAgent: g.chance(0.5) ? (s) => (read ? s.resume() : undefined) : undefined })
              .then((p) => {
                if (read) {
                  p.stdout.resume();
                  p.stderr.resume();
                }
                p.stdin.write(Buffer.alloc(g.int(0, 300_000)));
                if (g.chance(0.5)) p.stdin.end();
                if (g.chance(0.2)) p.hangUp();
                p.resize({ cols: 1, rows: 1, width: 0, height: 0 });
                void p.exit.then(noop);
              })
              .catch(noop);
            break;
          case 2:
            conn
              .connectTcp('127.0.0.1', 80)
              .then((s) => {
                if (read) s.resume();
                s.end(Buffer.alloc(g.int(0, 100_000)));
              })
              .catch(noop);
            break;
          case 3:
            conn.listenTcp('127.0.0.1', 0, (s) => (read ? s.resume() : s.destroy())).catch(noop);
            break;
          default:
            conn.identity({ hostname: 'h', unixMs: 1, seed: Buffer.alloc(32) }, 30).catch(noop);
        }
      }
      const outcome = await Promise.race([conn.closed, sleep(CASE_MS).then(() => 'timeout')]);
      check();
      clearInterval(sampler);
      conn.close('fuzz case over');
      const reason = await conn.closed;
      if (outcome === 'timeout') count('timeout');
      else if (/^protocol error: /.test(outcome)) count('protocol error');
      else if (outcome === 'socket closed') count('socket closed');
      else faults.push(`case ${index}: unexpected end ${outcome} / ${reason}`);
      maxRss = Math.max(maxRss, process.memoryUsage().rss);
    };
    let next = 0;
    const worker = async () => {
      while (next < CASES && faults.length === 0) {
        const i = next++;
        try {
          await runCase(i);
        } catch (e) {
          faults.push(`case ${i}: ${String((e as Error)?.stack ?? e)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
    console.log(`outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}; rss ${(rss0 / 2 ** 20).toFixed(0)} -> max ${(maxRss / 2 ** 20).toFixed(0)} MiB; ${warns.length} protocol errors logged`);
    assert.deepEqual(faults.slice(0, 5), [], `seed ${SEED}`);
    assert.ok((outcomes.get('protocol error') ?? 0) > 0, 'some cases end in a protocol error');
    assert.ok(maxRss - rss0 < 400 * 2 ** 20, `rss grew by ${((maxRss - rss0) / 2 ** 20).toFixed(0)} MiB`);
  } finally {
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUnhandled);
    child.stdin!.end();
    if (child.exitCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid);
      } catch {}
    }
    rmSync(dir, { recursive: true, force: true });
  }
});
