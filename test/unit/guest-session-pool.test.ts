import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import pino from 'pino';
import { GuestSessionPool } from '../../src/manager/guest-session-pool.js';
import type { GuestClient } from '../../src/manager/guest-connection.js';

/** Just enough of an ssh2 Client: an open socket flag, end(), 'close'. */
class FakeClient extends EventEmitter {
  ended = false;
  _sock = { writable: true, destroyed: false };
  constructor(readonly id: number) {
    super();
  }
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this._sock.writable = false;
    this.emit('close');
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const logger = pino({ level: 'silent' });

function pool(opts: { spares?: number; maxDialing?: number; fail?: () => boolean } = {}) {
  const dialled: FakeClient[] = [];
  let inFlight = 0;
  let peak = 0;
  const p = new GuestSessionPool({
    logger,
    spares: opts.spares,
    maxDialing: opts.maxDialing,
    dial: async () => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await tick();
      inFlight--;
      if (opts.fail?.()) throw new Error('connection refused');
      const c = new FakeClient(dialled.length);
      dialled.push(c);
      return c as unknown as GuestClient;
    },
  });
  return { p, dialled, peak: () => peak };
}

describe('guest session pool', () => {
  it('keeps spares ready and lends each connection to one session at a time', async () => {
    const { p, dialled } = pool({ spares: 2 });
    p.warm();
    await tick();
    await tick();
    assert.deepEqual(p.stats, { idle: 2, lent: 0, dialing: 0, waiting: 0 });
    const a = await p.take();
    const b = await p.take();
    assert.notEqual(a.client, b.client);
    a.release();
    const c = await p.take();
    assert.equal(c.client, a.client, 'a released connection is reused');
    assert.notEqual(c.client, b.client);
    p.close();
    assert.ok(dialled.every((d) => d.ended));
  });

  it('ends what is beyond the spares, and broken or closed connections, instead of reusing them', async () => {
    const { p } = pool({ spares: 1 });
    const lent = await Promise.all([p.take(), p.take(), p.take()]);
    lent[0]!.release(true);
    assert.equal((lent[0]!.client as unknown as FakeClient).ended, true);
    (lent[1]!.client as unknown as FakeClient).end();
    lent[1]!.release();
    lent[2]!.release();
    await tick();
    await tick();
    assert.equal(p.stats.idle, 1);
    const next = await p.take();
    assert.notEqual(next.client, lent[0]!.client);
    assert.notEqual(next.client, lent[1]!.client);
    p.close();
  });

  it('dials at most maxDialing at once, whatever the demand', async () => {
    const { p, peak } = pool({ spares: 0, maxDialing: 3 });
    const lent = await Promise.all(Array.from({ length: 12 }, () => p.take()));
    assert.equal(new Set(lent.map((l) => l.client)).size, 12);
    assert.ok(peak() <= 3, `peak ${peak()}`);
    p.close();
  });

  it('gives a waiting session the dial error rather than a hang, and refuses takers after close', async () => {
    const { p } = pool({ spares: 0, fail: () => true });
    await assert.rejects(p.take(), /connection refused/);
    p.close();
    await assert.rejects(p.take(), /shutting down/);
  });

  it('a session waiting when the pool closes is refused', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const p = new GuestSessionPool({
      logger,
      spares: 0,
      dial: async () => {
        await gate;
        return new FakeClient(0) as unknown as GuestClient;
      },
    });
    const waiting = p.take();
    p.close();
    release();
    await assert.rejects(waiting, /shutting down/);
  });

  it('pause ends the spares and keeps none; takers are still served; unpause brings them back', async () => {
    const { p } = pool({ spares: 2 });
    p.warm();
    await tick();
    await tick();
    const spares = [await p.take(), await p.take()];
    spares.forEach((s) => s.release());
    assert.equal(p.stats.idle, 2);
    p.pause();
    assert.equal(p.stats.idle, 0);
    assert.ok(spares.every((s) => (s.client as unknown as FakeClient).ended));
    const during = await p.take();
    during.release();
    await tick();
    await tick();
    assert.deepEqual(p.stats, { idle: 0, lent: 0, dialing: 0, waiting: 0 }, 'nothing kept while paused');
    p.unpause();
    await tick();
    await tick();
    assert.equal(p.stats.idle, 2);
    p.close();
  });

  it("lends the main connection when no spare is ready, to one session at a time, and never ends it unless hung up", async () => {
    const { p, dialled } = pool({ spares: 0 });
    const main = new FakeClient(99);
    p.primary(main as unknown as GuestClient);
    const first = await p.take();
    assert.equal(first.client, main as unknown as GuestClient, 'no handshake to wait for');
    const second = await p.take();
    assert.notEqual(second.client, main as unknown as GuestClient, 'the main connection carries one session');
    assert.equal(dialled.length, 1);
    first.release();
    assert.equal(main.ended, false);
    const third = await p.take();
    assert.equal(third.client, main as unknown as GuestClient);
    third.release(true);
    assert.equal(main.ended, true, 'a hang-up ends it');
    p.close();
  });
});
