import { it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostTscKhz, probeHost, resolveAccel } from '../../src/vm/accel.js';

it('auto picks KVM only with a usable /dev/kvm and vmx or svm', () => {
  assert.equal(resolveAccel('auto', { kvmUsable: true, hardwareVirt: true }), 'kvm');
  assert.equal(resolveAccel('auto', { kvmUsable: true, hardwareVirt: false }), 'tcg');
  assert.equal(resolveAccel('auto', { kvmUsable: false, hardwareVirt: true }), 'tcg');
  assert.equal(resolveAccel('tcg', { kvmUsable: true, hardwareVirt: true }), 'tcg');
  assert.equal(resolveAccel('kvm', { kvmUsable: true, hardwareVirt: false }), 'kvm');
  assert.throws(() => resolveAccel('kvm', { kvmUsable: false, hardwareVirt: true }), /\/dev\/kvm/);
});

it('reads vmx/svm and the TSC rate from cpuinfo', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sshvisor-accel-'));
  try {
    const cpuinfo = join(dir, 'cpuinfo');
    writeFileSync(cpuinfo, 'processor\t: 0\ncpu MHz\t\t: 2596.144\nflags\t\t: fpu vme svm lm\n');
    assert.equal(probeHost(join(dir, 'no-kvm'), cpuinfo).hardwareVirt, true);
    assert.equal(probeHost(join(dir, 'no-kvm'), cpuinfo).kvmUsable, false);
    writeFileSync(cpuinfo, 'flags\t\t: fpu vme lm hypervisor\n');
    assert.equal(probeHost(join(dir, 'no-kvm'), cpuinfo).hardwareVirt, false);
    writeFileSync(cpuinfo, 'cpu MHz\t\t: 2596.144\n');
    const khz = hostTscKhz(cpuinfo);
    assert.ok(khz && khz > 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it('this host: matches what /proc/cpuinfo says', () => {
  const host = probeHost();
  const accel = resolveAccel('auto', host);
  assert.equal(accel, host.kvmUsable && host.hardwareVirt ? 'kvm' : 'tcg');
});
