import { after, it } from 'node:test';
import assert from 'node:assert/strict';
import { GUEST_READY_MARKER } from '../../src/image/guest-contract.js';
import { VmFixture } from '../helpers/vm-fixture.js';
import { ConsoleReader } from '../helpers/console-reader.js';

const BOOTS = Number(process.env.SSHVISOR_RELIABILITY_BOOTS ?? 20);

// Under TCG a guest that miscalibrates its TSC hangs at boot; this is the guard against that coming back.
it(`boots the default image ${BOOTS} times in a row without a hang`, async (t) => {
  const fx = new VmFixture();
  after(() => fx.dispose());
  for (let i = 0; i < BOOTS; i++) {
    const vm = fx.create(await fx.spec(`boot${i}`));
    const con = new ConsoleReader(vm);
    await vm.start();
    try {
      await con.waitFor(GUEST_READY_MARKER, 60_000);
    } catch (err) {
      assert.fail(`boot ${i + 1} of ${BOOTS} did not reach userspace: ${(err as Error).message}`);
    } finally {
      await vm.kill();
    }
  }
  t.diagnostic(`${BOOTS} of ${BOOTS} boots reached ${GUEST_READY_MARKER}`);
});
