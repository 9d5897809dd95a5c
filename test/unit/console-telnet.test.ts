import { it } from 'node:test';
import assert from 'node:assert/strict';
import { TELNET_INIT, TelnetInitStripper, escapeTelnet } from '../../src/vm/qemu/console-telnet.js';

it("drops QEMU's telnet negotiation at the start of a connection, however it is split", () => {
  const out = Buffer.from('boot\xffline\n', 'latin1');
  const whole = Buffer.concat([TELNET_INIT, out]);
  for (let cut = 0; cut <= whole.length; cut++) {
    const s = new TelnetInitStripper();
    const got = Buffer.concat([s.push(whole.subarray(0, cut)), s.push(whole.subarray(cut))]);
    assert.deepEqual(got, out, `split at ${cut}`);
  }
  const byByte = new TelnetInitStripper();
  assert.deepEqual(Buffer.concat([...whole].map((b) => byByte.push(Buffer.from([b])))), out);
});

it('passes a stream that does not start with the negotiation through untouched', () => {
  const s = new TelnetInitStripper();
  const partial = TELNET_INIT.subarray(0, 5);
  const got = Buffer.concat([s.push(partial), s.push(Buffer.from('x')), s.push(TELNET_INIT)]);
  assert.deepEqual(got, Buffer.concat([partial, Buffer.from('x'), TELNET_INIT]));
});

it('doubles 0xff in input, and leaves other bytes alone', () => {
  assert.deepEqual(escapeTelnet(Buffer.from([1, 0xff, 2, 0xff, 0xff])), Buffer.from([1, 0xff, 0xff, 2, 0xff, 0xff, 0xff, 0xff]));
  const plain = Buffer.from('abc');
  assert.equal(escapeTelnet(plain), plain);
});
