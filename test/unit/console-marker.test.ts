import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LineTracker, formatMarker, formatNotice, isoSeconds } from '../../src/console/marker.js';

describe('console markers', () => {
  const at = new Date('2026-11-22T10:00:00.789Z');

  test('formatMarker: ISO seconds in UTC, one line, CRLF', () => {
    assert.equal(isoSeconds(at), '2026-11-22T10:00:00Z');
    assert.equal(formatMarker('VM exited: guest panic', at), '[sshvisor 2026-11-22T10:00:00Z] VM exited: guest panic\r\n');
  });

  test('control characters in the text cannot break the line', () => {
    assert.equal(formatMarker('VM exited: qemu said\nsomething\x1b[31m red\r\n', at), '[sshvisor 2026-11-22T10:00:00Z] VM exited: qemu said something [31m red\r\n');
    assert.equal(formatNotice('12 bytes skipped'), '[sshvisor: 12 bytes skipped]\r\n');
  });

  test('LineTracker knows whether a marker needs a fresh line', () => {
    const t = new LineTracker();
    assert.equal(t.atLineStart, true);
    assert.equal(t.lead(), '');
    t.update(Buffer.from('login: '));
    assert.equal(t.lead(), '\r\n');
    t.update(Buffer.alloc(0));
    assert.equal(t.lead(), '\r\n');
    t.update(Buffer.from('root\r\n'));
    assert.equal(t.lead(), '');
    t.update('abc');
    assert.equal(t.atLineStart, false);
    t.update('\n');
    assert.equal(t.atLineStart, true);
    t.update(Buffer.from('\r'));
    assert.equal(t.atLineStart, false, 'a bare CR leaves the guest line in place');
    assert.equal(new LineTracker(0x0a).atLineStart, true);
    assert.equal(new LineTracker(0x41).atLineStart, false);
  });
});
