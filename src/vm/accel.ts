import { accessSync, constants, readFileSync } from 'node:fs';
import { UserError } from '../util/errors.js';
import type { Accel, AccelMode } from './driver.js';

export interface HostCpu {
  kvmUsable: boolean;
  /** vmx (Intel) or svm (AMD): the CPU itself does hardware virtualization, not a nested emulation of it. */
  hardwareVirt: boolean;
}

export function probeHost(kvmPath = '/dev/kvm', cpuinfoPath = '/proc/cpuinfo'): HostCpu {
  let kvmUsable = false;
  try {
    accessSync(kvmPath, constants.R_OK | constants.W_OK);
    kvmUsable = true;
  } catch {
    kvmUsable = false;
  }
  let hardwareVirt = false;
  try {
    hardwareVirt = /^flags\s*:.*\b(vmx|svm)\b/m.test(readFileSync(cpuinfoPath, 'utf8'));
  } catch {
    hardwareVirt = false;
  }
  return { kvmUsable, hardwareVirt };
}

/**
 * `auto` takes KVM only where it is both accessible and backed by vmx/svm:
 * a /dev/kvm without them (nested, emulated) runs 64-bit guests far slower
 * than plain TCG.
 */
export function resolveAccel(mode: AccelMode, host: HostCpu = probeHost()): Accel {
  if (mode === 'tcg') return 'tcg';
  if (mode === 'kvm') {
    if (!host.kvmUsable) throw new UserError('--accel kvm: /dev/kvm is missing or not readable and writable by this user (add it to the kvm group)');
    return 'kvm';
  }
  return host.kvmUsable && host.hardwareVirt ? 'kvm' : 'tcg';
}

/**
 * The host TSC rate in kHz. Under TCG the guest reads the host's TSC, and a
 * guest that has to calibrate it against the emulated PIT sometimes fails
 * and hangs at boot, so sshvisor tells it the rate (tsc_early_khz).
 */
export function hostTscKhz(cpuinfoPath = '/proc/cpuinfo'): number | undefined {
  try {
    const khz = Number(readFileSync('/sys/devices/system/cpu/cpu0/tsc_freq_khz', 'utf8').trim());
    if (khz > 0) return khz;
  } catch {
    // most kernels don't expose it
  }
  try {
    const m = /^cpu MHz\s*:\s*([0-9.]+)/m.exec(readFileSync(cpuinfoPath, 'utf8'));
    if (m?.[1]) return Math.round(Number(m[1]) * 1000);
  } catch {
    // fall through
  }
  return undefined;
}
