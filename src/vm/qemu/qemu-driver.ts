import type { Vm, VmDriver, VmSpec } from '../driver.js';
import { assertVmName } from '../vm-name.js';
import { hostTscKhz } from '../accel.js';
import { requireTool } from '../../util/tools.js';
import { QemuVm } from './qemu-vm.js';

/** VMs as qemu-system-x86_64 -M microvm processes, driven over QMP. */
export class QemuDriver implements VmDriver {
  readonly name = 'qemu';
  private readonly qemuBinary: string;
  private readonly tscKhz: number | undefined;

  constructor() {
    this.qemuBinary = requireTool('qemu-system-x86_64');
    this.tscKhz = hostTscKhz();
  }

  create(spec: VmSpec): Vm {
    assertVmName(spec.name);
    return new QemuVm(spec, { qemuBinary: this.qemuBinary, tscKhz: this.tscKhz });
  }
}
