/**
 * The raw throughput of the guest agent's virtio-serial channel, without SSH:
 * connects to a VM's agent socket (DATA_DIR/vms/NAME/agent.sock) with the
 * gateway's own AgentConnection (src/guest/agent-connection.ts: the same
 * frames, windows and flow control the gateway relays sessions through) and
 * runs one exec stream:
 *
 *   --direction up:   `cat > /dev/null` in the guest, N zero bytes written to its stdin
 *   --direction down: `head -c N /dev/zero` in the guest, its stdout read and dropped
 *
 * The socket takes one client: the gateway must not be connected to it (the
 * ssh bench SIGKILLs `sshvisor serve` first; its VMs outlive it by design).
 * Prints one JSON line on stdout: bytes, the time of the handshake and of the
 * transfer (exec open to the exit status and the last byte), and this
 * process's CPU seconds during the transfer (process.cpuUsage).
 *
 *   node dist/bench/ssh/agent-raw.js --socket PATH --bytes N --direction up|down [--timeout SECONDS]
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { AgentConnection } from '../../src/guest/agent-connection.js';

export interface RawResult {
  direction: 'up' | 'down';
  bytes: number;
  /** Bytes that actually crossed (down: read from stdout; up: written to stdin). */
  moved: number;
  /** Socket connect + HELLO/HELLO_ACK. */
  handshakeMs: number;
  /** exec OPEN to EXIT with all output read. */
  transferMs: number;
  /** utime + stime of this process during the transfer, seconds. */
  cpuS: number;
  exit: unknown;
  agent: string;
}

const CHUNK = 64 * 1024;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      socket: { type: 'string' },
      bytes: { type: 'string' },
      direction: { type: 'string' },
      timeout: { type: 'string', default: '900' },
    },
    strict: true,
  });
  const bytes = Number(values.bytes);
  const direction = values.direction;
  if (!values.socket || !(bytes > 0) || (direction !== 'up' && direction !== 'down')) {
    throw new Error('usage: agent-raw.js --socket PATH --bytes N --direction up|down [--timeout SECONDS]');
  }
  const timeoutMs = Number(values.timeout) * 1000;
  const killer = setTimeout(() => {
    process.stderr.write(`agent-raw: no result within ${timeoutMs / 1000} s\n`);
    process.exit(2);
  }, timeoutMs);
  killer.unref();

  const t0 = performance.now();
  const agent = await AgentConnection.connect(values.socket, { deadline: Date.now() + 30_000 });
  const t1 = performance.now();
  const cpu0 = process.cpuUsage();
  let moved = 0;
  const proc = await agent.exec({ command: Buffer.from(direction === 'up' ? 'cat > /dev/null' : `head -c ${bytes} /dev/zero`) });
  proc.stderr.resume();
  if (direction === 'down') {
    proc.stdout.on('data', (b: Buffer) => (moved += b.length));
    proc.stdin.end();
  } else {
    proc.stdout.resume();
    const zeros = Buffer.alloc(CHUNK);
    while (moved < bytes) {
      const n = Math.min(CHUNK, bytes - moved);
      moved += n;
      if (!proc.stdin.write(n === CHUNK ? zeros : zeros.subarray(0, n))) await new Promise((r) => proc.stdin.once('drain', r));
    }
    proc.stdin.end();
  }
  const exit = await proc.exit;
  await proc.closed;
  const t2 = performance.now();
  const cpu = process.cpuUsage(cpu0);
  agent.close('bench done');
  const result: RawResult = {
    direction,
    bytes,
    moved,
    handshakeMs: t1 - t0,
    transferMs: t2 - t1,
    cpuS: (cpu.user + cpu.system) / 1e6,
    exit,
    agent: agent.hello.agent,
  };
  process.stdout.write(JSON.stringify(result) + '\n');
  if (moved !== bytes) process.exitCode = 1;
}

main().catch((err) => {
  process.stderr.write(`agent-raw: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
