import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConsoleHub, type ConsoleVm } from '../../src/console/console-hub.js';
import type { ViewerOptions } from '../../src/console/viewer.js';
import type { ExitInfo, Vm } from '../../src/vm/driver.js';
import { UserError } from '../../src/util/errors.js';
import { FakeVm } from '../helpers/fake-vm.js';

const root = mkdtempSync(join(tmpdir(), 'sshvisor-console-hub-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDataDir = (): string => join(root, `data${n++}`);

// A real Vm must be usable wherever the hub takes a ConsoleVm.
const vmIsConsoleVm = (vm: Vm): ConsoleVm => vm;
void vmIsConsoleVm;

const T = new Date('2026-11-22T10:00:00Z');
const now = (): Date => T;
const STARTED = '[sshvisor 2026-11-22T10:00:00Z] VM started\r\n';


/** A viewer sink that records what it gets; `full` makes it push back. */
function recorder(opts: Partial<ViewerOptions> & { full?: () => boolean } = {}) {
  const chunks: Buffer[] = [];
  const closes: string[] = [];
  const sink: ViewerOptions = {
    ...opts,
    write: (b) => {
      chunks.push(Buffer.from(b));
      return !(opts.full?.() ?? false);
    },
    onClose: (r) => closes.push(r),
  };
  return { sink, closes, text: () => Buffer.concat(chunks).toString('latin1'), bytes: () => Buffer.concat(chunks) };
}

function rand(seed: number): (k: number) => number {
  return (k) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % k;
  };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('ConsoleChannel capture', () => {
  test('markers around a boot, same bytes in ring and console.log', async () => {
    const dataDir = freshDataDir();
    const hub = new ConsoleHub({ dataDir, now });
    const vm = new FakeVm('alice', now);
    const ch = hub.attach(vm);
    const exits: ExitInfo[] = [];
    ch.on('exit', (i) => exits.push(i));
    assert.equal(ch.vm, vm);
    vm.out('Linux version 6.1\r\nlogin: ');
    vm.exit('guest panic', new Date('2026-11-22T10:05:07.5Z'));
    const want = `${STARTED}Linux version 6.1\r\nlogin: \r\n[sshvisor 2026-11-22T10:05:07Z] VM exited: guest panic\r\n`;
    assert.equal(ch.history().toString('latin1'), want);
    assert.equal(exits.length, 1);
    assert.equal(ch.vm, undefined);
    assert.equal(ch.input('x'), false);
    assert.equal(ch.bytesCaptured, 'Linux version 6.1\r\nlogin: '.length);
    await ch.log?.flush();
    assert.equal(readFileSync(join(dataDir, 'vms', 'alice', 'console.log'), 'latin1'), want);
    await hub.close();
  });

  test('the same name booted again continues one history; the old Vm is ignored', async () => {
    const hub = new ConsoleHub({ now });
    const first = new FakeVm('bob', now);
    hub.attach(first);
    first.out('boot 1\n');
    first.exit('guest powered off');
    const second = new FakeVm('bob', now);
    const ch = hub.attach(second);
    assert.equal(hub.channel('bob'), ch);
    first.out('stray bytes from a dead vm\n');
    first.exit('late');
    second.out('boot 2\n');
    ch.mark('VM paused');
    assert.equal(
      ch.history().toString(),
      `${STARTED}boot 1\n[sshvisor 2026-11-22T10:00:00Z] VM exited: guest powered off\r\n${STARTED}boot 2\n[sshvisor 2026-11-22T10:00:00Z] VM paused\r\n`,
    );
    assert.equal(ch.history({ lines: 2 }).toString(), `boot 2\n[sshvisor 2026-11-22T10:00:00Z] VM paused\r\n`);
    assert.equal(ch.history({ maxBytes: 10 }).toString(), 'M paused\r\n');
    await hub.close();
  });

  test('names are validated before they touch a path', () => {
    const hub = new ConsoleHub({ dataDir: freshDataDir() });
    assert.throws(() => hub.channel('../etc'), UserError);
    assert.throws(() => hub.history('a/b'), UserError);
  });
});

describe('ConsoleChannel viewers', () => {
  test('20 viewers, some pushing back, all get identical bytes in the same order', async () => {
    const hub = new ConsoleHub({ now, capacity: 1 << 20 });
    const ch = hub.channel('fan');
    const r = rand(7);
    const viewers = Array.from({ length: 20 }, (_, i) => {
      const rec = recorder({ full: () => i % 2 === 1 && r(3) === 0 });
      const v = ch.addViewer({ ...rec.sink, maxQueueBytes: 1 << 20 });
      return { rec, v };
    });
    assert.equal(ch.viewerCount, 20);
    const vm = new FakeVm('fan', now);
    ch.attach(vm);
    for (let i = 0; i < 400; i++) {
      const len = 1 + r(3000);
      vm.out(Buffer.alloc(len, 0x20 + (i % 90)));
      if (i % 10 === 0) ch.mark(`event ${i}`);
      // Pushed-back viewers drain later, in the event loop, as a real socket would.
      if (i % 25 === 0) {
        await tick();
        for (const { v } of viewers) v.drain();
      }
    }
    vm.exit('done');
    for (const { v } of viewers) v.drain();
    const all = ch.history();
    for (const [i, { rec, v }] of viewers.entries()) {
      assert.equal(v.bytesSkipped, 0, `viewer ${i} skipped`);
      assert.ok(rec.bytes().equals(all), `viewer ${i} saw a different stream`);
    }
    assert.equal(hub.viewerCount, 20);
    await hub.close();
  });

  test('a stalled viewer never blocks the guest or the others; it skips to live with a note', async () => {
    const hub = new ConsoleHub({ now, capacity: 64 * 1024 });
    const ch = hub.channel('stall');
    const vm = new FakeVm('stall', now);
    ch.attach(vm);
    const fine = recorder();
    ch.addViewer(fine.sink);
    let full = true;
    const stalled = recorder({ full: () => full });
    const sv = ch.addViewer({ ...stalled.sink, maxQueueBytes: 1000 });
    const t0 = Date.now();
    for (let i = 0; i < 500; i++) {
      vm.out(`${String(i).padStart(4, '0')} ${'.'.repeat(94)}\n`);
      assert.ok(sv.lagBytes <= 1000, `lag ${sv.lagBytes} exceeds the bound`);
    }
    assert.ok(Date.now() - t0 < 1000);
    assert.equal(stalled.text().length, 100, 'only the first chunk before it pushed back');
    assert.ok(sv.bytesSkipped > 40_000);
    assert.equal(sv.bytesDelivered + sv.bytesSkipped + sv.lagBytes, 500 * 100);
    assert.equal(fine.text(), ch.history().toString().slice(STARTED.length));
    // The stalled viewer resumes: a note, then its (bounded) backlog, then live, with nothing out of order.
    const backlog = ch.ring.read(sv.offset).data.toString();
    full = false;
    sv.drain();
    vm.out('live\n');
    const skipped = sv.bytesSkipped;
    assert.equal(stalled.text(), `${'0000 ' + '.'.repeat(94)}\n[sshvisor: ${skipped} bytes skipped]\r\n${backlog}live\n`);
    assert.equal(ch.bytesSkipped, skipped);
    await hub.close();
  });

  test("policy 'disconnect' ends a stalled viewer with a reason", async () => {
    const hub = new ConsoleHub({ now });
    const ch = hub.channel('disc');
    const vm = new FakeVm('disc', now);
    ch.attach(vm);
    const other = recorder();
    ch.addViewer(other.sink);
    const slow = recorder({ full: () => true });
    const v = ch.addViewer({ ...slow.sink, maxQueueBytes: 500, overflow: 'disconnect' });
    for (let i = 0; i < 20; i++) vm.out('x'.repeat(100));
    assert.equal(v.closed, true);
    assert.equal(slow.closes.length, 1);
    assert.match(slow.closes[0] ?? '', /^console viewer fell \d+ bytes behind \(limit 500\)$/);
    assert.equal(ch.viewerCount, 1);
    assert.equal(ch.viewersDisconnected, 1);
    assert.equal(other.text(), 'x'.repeat(2000));
    await hub.close();
    assert.deepEqual(other.closes, ['console closed']);
  });

  test('replay then live: no gap and no duplicate, even while pushing back', async () => {
    const hub = new ConsoleHub({ now, capacity: 4 << 20 });
    const ch = hub.channel('replay');
    const vm = new FakeVm('replay', now);
    ch.attach(vm);
    const r = rand(99);
    let line = 0;
    const emit = (k: number): void => {
      let s = '';
      for (let i = 0; i < k; i++) s += `line ${line++} ${'#'.repeat(r(200))}\r\n`;
      // Split mid-line, as a serial port does.
      const cut = r(s.length);
      vm.out(s.slice(0, cut));
      vm.out(s.slice(cut));
    };
    emit(3000); // ~300 KiB, so the replay spans several chunks
    const rec = recorder({ full: () => r(2) === 0 });
    const v = ch.addViewer({ ...rec.sink, replayLines: 2000, maxQueueBytes: 64 * 1024 });
    const startOffset = ch.ring.end - ch.ring.lastLines(2000).length;
    assert.ok(rec.text().startsWith('line 1000 '));
    for (let round = 0; round < 50; round++) {
      emit(1 + r(20));
      if (r(3) === 0) vm.out('partial-');
      await tick();
      v.drain();
    }
    while (v.lagBytes > 0) v.drain();
    assert.equal(v.bytesSkipped, 0);
    assert.ok(rec.bytes().equals(ch.ring.read(startOffset).data));
    const lines = rec.text().split('\r\n').map((l) => l.replace(/^(partial-)+/, '').split(' ')[1]);
    lines.pop();
    assert.deepEqual(lines.map(Number), Array.from({ length: lines.length }, (_, i) => 1000 + i));
    await hub.close();
  });

  test('a replay bigger than maxQueueBytes is not an overflow; replayLines 0 is live only', async () => {
    const hub = new ConsoleHub({ now });
    const ch = hub.channel('big');
    const vm = new FakeVm('big', now);
    ch.attach(vm);
    vm.out('a'.repeat(10_000) + '\n');
    const rec = recorder({ full: () => true });
    const v = ch.addViewer({ ...rec.sink, replayLines: 1, maxQueueBytes: 100 });
    vm.out('b'.repeat(50));
    assert.equal(v.bytesSkipped, 0);
    v.drain();
    const live = recorder();
    ch.addViewer(live.sink);
    vm.out('c');
    assert.equal(live.text(), 'c');
    await hub.close();
  });

  test('keystrokes go to the current Vm unless the viewer is read-only', async () => {
    const hub = new ConsoleHub({ now });
    const ch = hub.channel('keys');
    const rw = ch.addViewer(recorder().sink);
    const ro = ch.addViewer({ ...recorder().sink, readOnly: true });
    assert.equal(rw.input('early'), false, 'no VM attached yet');
    const vm = new FakeVm('keys', now);
    ch.attach(vm);
    assert.equal(rw.input('root\r'), true);
    assert.equal(ro.input('rm -rf /\r'), false);
    rw.close();
    assert.equal(rw.input('after close'), false);
    assert.deepEqual(vm.typed, ['root\r']);
    await hub.close();
  });

  test('a throwing sink ends only its own viewer; a sink calling back into the channel keeps order', async () => {
    const hub = new ConsoleHub({ now });
    const ch = hub.channel('odd');
    const vm = new FakeVm('odd', now);
    const bad = recorder();
    const bv = ch.addViewer({ ...bad.sink, write: () => { throw new Error('socket gone'); } });
    let reentered = false;
    const good = recorder();
    ch.addViewer({
      ...good.sink,
      write: (b) => {
        const ok = good.sink.write(b);
        if (!reentered && b.includes('trigger')) {
          reentered = true;
          ch.mark('from inside a write');
        }
        return ok;
      },
    });
    const third = recorder();
    ch.addViewer(third.sink);
    ch.attach(vm);
    vm.out('trigger\n');
    vm.out('after\n');
    assert.equal(bv.closed, true);
    assert.deepEqual(bad.closes, ['console viewer write failed: socket gone']);
    assert.equal(good.text(), ch.history().toString());
    assert.equal(third.text(), ch.history().toString());
    assert.match(third.text(), /trigger\n\[sshvisor [^\]]+\] from inside a write\r\nafter\n$/);
    await hub.close();
  });

  test('closing the channel ends its viewers; a viewer added after is closed at once', async () => {
    const hub = new ConsoleHub({ now });
    const ch = hub.channel('bye');
    const rec = recorder();
    ch.addViewer(rec.sink);
    await hub.drop('bye');
    assert.deepEqual(rec.closes, ['console closed']);
    assert.equal(hub.get('bye'), undefined);
    const late = recorder();
    assert.equal(ch.addViewer(late.sink).closed, true);
    assert.deepEqual(late.closes, ['console closed']);
  });
});

describe('ConsoleHub history', () => {
  test('from memory, and from disk after a restart (seeding the new channel)', async () => {
    const dataDir = freshDataDir();
    const hub = new ConsoleHub({ dataDir, now });
    const vm = new FakeVm('carol', now);
    hub.attach(vm);
    vm.out('one\ntwo\nthree\nprompt$ ');
    vm.exit('guest powered off');
    const before = hub.history('carol').toString();
    assert.equal(hub.history('carol', { lines: 2 }).toString(), 'prompt$ \r\n[sshvisor 2026-11-22T10:00:00Z] VM exited: guest powered off\r\n');
    await hub.close();

    const restarted = new ConsoleHub({ dataDir, now });
    assert.equal(restarted.history('carol').toString(), before);
    assert.equal(restarted.history('carol', { lines: 3 }).toString(), 'three\nprompt$ \r\n[sshvisor 2026-11-22T10:00:00Z] VM exited: guest powered off\r\n');
    assert.equal(restarted.get('carol'), undefined, 'history from disk creates no channel');
    assert.equal(restarted.history('nobody').length, 0);
    const again = new FakeVm('carol', now);
    const ch = restarted.attach(again);
    again.out('booted again\n');
    assert.equal(ch.history().toString(), `${before}${STARTED}booted again\n`);
    assert.equal(ch.bytesCaptured, 'booted again\n'.length);
    await restarted.close();
    assert.equal(readFileSync(join(dataDir, 'vms', 'carol', 'console.log'), 'latin1'), `${before}${STARTED}booted again\n`);
  });

  test('memory-only hub and metrics', async () => {
    const hub = new ConsoleHub({ now });
    const a = new FakeVm('a1', now);
    const b = new FakeVm('b1', now);
    hub.attach(a);
    hub.attach(b);
    hub.channel('a1').addViewer(recorder().sink);
    a.out('12345');
    b.out('678');
    assert.equal(hub.bytesCaptured, 8);
    assert.equal(hub.viewerCount, 1);
    assert.deepEqual(hub.names.sort(), ['a1', 'b1']);
    assert.equal(hub.history('zz').length, 0);
    assert.equal(hub.channel('a1').bytesNotLogged, 0);
    await hub.close();
  });
});
