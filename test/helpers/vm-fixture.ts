import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Vm, VmSpec } from '../../src/vm/driver.js';
import { QemuDriver } from '../../src/vm/qemu/qemu-driver.js';
import { ensureDisk } from '../../src/vm/disk.js';
import { testImage } from './test-image.js';

/**
 * Per-test scratch space and VMs, all torn down by dispose() whether the test
 * passed or not: call it from `after`/`t.after`.
 */
export class VmFixture {
  readonly dir = mkdtempSync(join(tmpdir(), 'sshvisor-test-'));
  readonly driver = new QemuDriver();
  private readonly vms: Vm[] = [];

  async diskFor(name: string, sizeMiB = 64): Promise<string> {
    const path = join(this.dir, `${name}.disk`);
    await ensureDisk(path, sizeMiB);
    return path;
  }

  async spec(name: string, overrides: Partial<VmSpec> = {}): Promise<VmSpec> {
    return {
      name,
      dir: join(this.dir, 'vms', name),
      image: await testImage(),
      memoryMiB: 256,
      cpus: 1,
      accel: 'tcg',
      network: { allowInternet: false },
      kernelArgs: [`sshvisor.name=${name}`],
      ...overrides,
    };
  }

  create(spec: VmSpec): Vm {
    const vm = this.driver.create(spec);
    this.vms.push(vm);
    return vm;
  }

  async dispose(): Promise<void> {
    await Promise.all(this.vms.map((vm) => vm.kill().catch(() => undefined)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
