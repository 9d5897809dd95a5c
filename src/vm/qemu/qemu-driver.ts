import { execFileSync } from 'node:child_process';
import type { Vm, VmDriver, VmSpec } from '../driver.js';
import { assertVmName } from '../vm-name.js';
import { hostTscKhz } from '../accel.js';
import { requireTool } from '../../util/tools.js';
import { QemuVm } from './qemu-vm.js';
import { findLiveQemuVm } from './qemu-attach.js';
import { resolveVmUser, type VmUser } from './vm-user.js';

/** VMs as qemu-system-x86_64 -M microvm processes, driven over QMP. */
export class QemuDriver implements VmDriver {
  readonly name = 'qemu';
  private readonly qemuBinary: string;
  private readonly tscKhz: number | undefined;
  /** Who QEMU runs as under a root server (undefined: as sshvisor's own user). */
  readonly vmUser: VmUser | undefined;

  readonly version: string;

  /** `survivesGateway`: QEMU outlives this process (sshvisor serve); otherwise it dies with it (tests, library use). */
  constructor(private readonly options: { survivesGateway?: boolean } = {}) {
    this.qemuBinary = requireTool('qemu-system-x86_64');
    this.tscKhz = hostTscKhz();
    this.vmUser = resolveVmUser();
    const out = execFileSync(this.qemuBinary, ['--version'], { encoding: 'utf8' });
    this.version = `qemu ${/version (\d+\.\d+\.\d+)/.exec(out)?.[1] ?? 'unknown'}`;
  }

  create(spec: VmSpec): Vm {
    assertVmName(spec.name);
    return new QemuVm(spec, this.vmOptions());
  }

  async attach(dir: string): Promise<Vm | undefined> {
    const found = await findLiveQemuVm(dir);
    if (!found) return undefined;
    assertVmName(found.spec.name);
    return new QemuVm(found.spec, this.vmOptions(), found.adoption);
  }

  private vmOptions() {
    return { qemuBinary: this.qemuBinary, tscKhz: this.tscKhz, user: this.vmUser, survivesGateway: this.options.survivesGateway };
  }
}
