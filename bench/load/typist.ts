/**
 * One interactive session under load: a pty shell that a simulated person
 * types into, a key at a time, for a fixed time. Each command produces some
 * output and then a marker the typed text does not contain, so the bench
 * knows when the command's output has arrived.
 *
 *   keystroke latency: key sent → its echo arrives (the remote tty echoes it)
 *   command latency:   Enter sent → the marker line arrives (after `seq` output)
 */
import ssh2 from 'ssh2';
import { performance } from 'node:perf_hooks';

export interface TypistOptions {
  port: number;
  user: string;
  privateKey: Buffer;
  /** When to stop typing (performance.now() ms). */
  until: number;
  /** Pause between keystrokes, ms (a fast typist: 100 ms is 10 keys/s). */
  thinkMs: number;
  /** Lines of output each command prints before its marker. */
  outputLines: number;
  /** Give up on one echo or command after this long, ms: counted as an error. */
  timeoutMs: number;
}

export interface TypistResult {
  keystrokeMs: number[];
  commandMs: number[];
  errors: string[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A channel's output, and waiting for a condition on what arrived since a point. */
class Screen {
  private text = '';
  /** Characters dropped from the front: positions are absolute, counted from the first byte. */
  private dropped = 0;
  private waiter?: () => void;

  feed(s: string): void {
    this.text += s;
    // Bounded: only recent output is ever looked at.
    if (this.text.length > 131072) {
      this.dropped += this.text.length - 65536;
      this.text = this.text.slice(-65536);
    }
    this.waiter?.();
  }

  /** The position of the next character to arrive. */
  mark(): number {
    return this.dropped + this.text.length;
  }

  since(mark: number): string {
    return this.text.slice(Math.max(0, mark - this.dropped));
  }

  /** Resolve true when `test(output since mark)` holds, false after timeoutMs. */
  async until(mark: number, test: (since: string) => boolean, timeoutMs: number): Promise<boolean> {
    if (test(this.since(mark))) return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        resolve(false);
      }, timeoutMs);
      this.waiter = () => {
        if (!test(this.since(mark))) return;
        clearTimeout(timer);
        this.waiter = undefined;
        resolve(true);
      };
    });
  }

  /** Resolve once nothing has arrived for `quietMs`: the last command's output has settled. */
  async quiet(quietMs: number): Promise<void> {
    for (;;) {
      const before = this.mark();
      await sleep(quietMs);
      if (this.mark() === before) return;
    }
  }
}

function openShell(o: TypistOptions): Promise<{ client: ssh2.Client; channel: ssh2.ClientChannel }> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    client.on('ready', () =>
      client.shell({ term: 'xterm', rows: 24, cols: 200 }, (err, channel) => (err ? reject(err) : resolve({ client, channel }))),
    );
    client.on('error', reject);
    client.connect({ host: '127.0.0.1', port: o.port, username: o.user, privateKey: o.privateKey, readyTimeout: o.timeoutMs, hostVerifier: () => true });
  });
}

/** Type commands into a shell until `until`; `id` keeps markers unique across sessions. */
export async function runTypist(id: number, o: TypistOptions): Promise<TypistResult> {
  const result: TypistResult = { keystrokeMs: [], commandMs: [], errors: [] };
  let session: { client: ssh2.Client; channel: ssh2.ClientChannel };
  try {
    session = await openShell(o);
  } catch (err) {
    result.errors.push(`session: ${(err as Error).message}`);
    return result;
  }
  const { client, channel } = session;
  const screen = new Screen();
  let closed = false;
  channel.on('data', (d: Buffer) => screen.feed(d.toString('latin1')));
  channel.stderr.resume();
  channel.on('close', () => (closed = true));
  try {
    // The first prompt (any output), then silence: nothing left over to be mistaken for an echo.
    if (!(await screen.until(0, (s) => s.length > 0, o.timeoutMs))) throw new Error(`no prompt within ${o.timeoutMs} ms`);
    await screen.quiet(500);
    for (let n = 1; performance.now() < o.until && !closed; n++) {
      // The marker is computed by the shell: the echoed command line never contains it.
      const marker = `M${id}x${n + 100000}Z`;
      const command = `seq 1 ${o.outputLines}; echo M${id}x$((${n}+100000))Z`;
      let failed = false;
      for (const ch of command) {
        const at = screen.mark();
        const t0 = performance.now();
        channel.write(ch);
        const echoed = await screen.until(at, (s) => s.includes(ch), o.timeoutMs);
        if (!echoed) {
          result.errors.push(`no echo of ${JSON.stringify(ch)} within ${o.timeoutMs} ms`);
          failed = true;
          break;
        }
        result.keystrokeMs.push(performance.now() - t0);
        await sleep(o.thinkMs);
      }
      if (failed) break;
      const at = screen.mark();
      const t0 = performance.now();
      channel.write('\r');
      const ok = await screen.until(at, (s) => s.includes(marker), o.timeoutMs);
      if (!ok) {
        result.errors.push(`no output of command ${n} within ${o.timeoutMs} ms`);
        break;
      }
      result.commandMs.push(performance.now() - t0);
      await screen.quiet(150);
    }
    if (closed) result.errors.push('session closed by the server');
  } catch (err) {
    result.errors.push((err as Error).message);
  } finally {
    channel.end();
    client.end();
  }
  return result;
}
