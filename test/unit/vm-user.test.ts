import { it } from 'node:test';
import assert from 'node:assert/strict';
import { resolveVmUser } from '../../src/vm/qemu/vm-user.js';
import { UserError } from '../../src/util/errors.js';

it('a server that is not root runs QEMU as itself', () => {
  assert.equal(resolveVmUser('no-such-user-sshvisor', false), undefined);
});

it('a root server without the VM user refuses, saying how to create it', () => {
  assert.throws(() => resolveVmUser('no-such-user-sshvisor', true), (err: Error) => err instanceof UserError && /useradd --system .* no-such-user-sshvisor/.test(err.message));
});

it('root itself is refused as the VM user', () => {
  assert.throws(() => resolveVmUser('root', true), /must be an unprivileged account/);
});
