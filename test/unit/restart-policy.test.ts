import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { RestartPolicy, backoffSec } from '../../src/manager/restart-policy.js';
import type { ExitInfo } from '../../src/vm/driver.js';

const exit = (reason: ExitInfo['reason']): ExitInfo => ({ reason, detail: `guest ${reason}`, code: null, signal: null, at: new Date() });

function setup(policy: 'never' | 'on-failure', maxRestarts = 2) {
  let now = 1_000_000;
  const restarted: string[] = [];
  const notes: string[] = [];
  const p = new RestartPolicy({
    policy,
    maxRestarts,
    windowSec: 600,
    logger: pino({ level: 'silent' }),
    restart: async (name) => void restarted.push(name),
    note: (_name, text) => void notes.push(text),
    now: () => now,
  });
  return { p, restarted, notes, advance: (ms: number) => (now += ms) };
}

describe('restart policy', () => {
  test('backoff: 1, 2, 4 ... seconds, at most 60', () => {
    assert.deepEqual([0, 1, 2, 3, 5, 6, 7, 20].map(backoffSec), [1, 2, 4, 8, 32, 60, 60, 60]);
  });

  test('never: nothing is restarted, nothing reported', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const { p, restarted } = setup('never');
    p.exited('alice', exit('panic'));
    t.mock.timers.tick(120_000);
    assert.deepEqual(restarted, []);
    assert.equal(p.info('alice'), undefined);
  });

  test('on-failure: panics and crashes are restarted after the backoff; power-offs, stops and suspends are not', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const { p, restarted, notes } = setup('on-failure', 5);
    for (const r of ['poweroff', 'stopped', 'killed', 'suspended', 'reboot'] as const) p.exited(`vm-${r}`, exit(r));
    p.exited('alice', exit('panic'));
    assert.equal(p.info('alice')?.pendingAt !== undefined, true);
    t.mock.timers.tick(999);
    assert.deepEqual(restarted, []);
    t.mock.timers.tick(1);
    assert.deepEqual(restarted, ['alice']);
    assert.match(notes[0]!, /^restarting after a failure \(guest panic\): restart 1 of at most 5 in 10 min$/);
    p.exited('alice', exit('crashed'));
    t.mock.timers.tick(1999);
    assert.equal(restarted.length, 1);
    t.mock.timers.tick(1);
    assert.deepEqual(restarted, ['alice', 'alice']);
    assert.deepEqual(p.info('alice'), { policy: 'on-failure', restarts: 2, pendingAt: undefined, gaveUp: undefined });
  });

  test('a crash loop gives up after maxRestarts in the window, and says so; stop forgets it', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const { p, restarted, notes, advance } = setup('on-failure', 2);
    for (let i = 0; i < 3; i++) {
      p.exited('loop', exit('panic'));
      advance(60_000);
      t.mock.timers.tick(60_000);
    }
    assert.equal(restarted.length, 2);
    assert.equal(p.info('loop')?.gaveUp, 'crash loop: restarted 2 times in 10 min; giving up');
    assert.equal(notes.at(-1), 'crash loop: restarted 2 times in 10 min; giving up');
    // Once the window has passed, a failure is restarted again.
    advance(600_000);
    p.exited('loop', exit('panic'));
    t.mock.timers.tick(1000);
    assert.equal(restarted.length, 3);
    p.exited('loop', exit('panic'));
    p.cancel('loop', { forget: true });
    t.mock.timers.tick(120_000);
    assert.equal(restarted.length, 3, 'a cancelled restart does not happen');
    assert.deepEqual(p.info('loop'), { policy: 'on-failure', restarts: 0, pendingAt: undefined, gaveUp: undefined });
  });
});
