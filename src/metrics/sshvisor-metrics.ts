import type { EventEmitter } from 'node:events';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { LaunchHow, ManagerEvents } from '../manager/vm-manager.js';
import type { VmStateName } from '../ops/vm-status.js';

/**
 * sshvisor's Prometheus metrics. Events that happen (boots, logins) are
 * counted as they are reported; things that are (VMs by state, console
 * viewers, bytes captured) are read from their owners at scrape time, so
 * nothing here can drift from the truth.
 */

export const VM_STATES: readonly VmStateName[] = ['running', 'starting', 'stopping', 'suspended', 'stopped', 'crashed'];

/** Boot and resume times under TCG on a busy host run to tens of seconds; KVM resumes take well under one. */
const DURATION_BUCKETS = [0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120];

export interface MetricsSources {
  /** The state of every VM sshvisor knows (see ops/vm-status). */
  vmStates(): VmStateName[];
  console: { readonly bytesCaptured: number; readonly viewerCount: number };
}

export class SshvisorMetrics {
  readonly registry = new Registry();
  private readonly boots: Counter<'how'>;
  private readonly resumes: Counter;
  private readonly suspends: Counter;
  private readonly bootSeconds: Histogram<'how'>;
  private readonly resumeSeconds: Histogram;
  private readonly sshConnections: Counter;
  private readonly sshAuthFailures: Counter;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    new Gauge({
      name: 'sshvisor_vms',
      help: 'VMs by state',
      labelNames: ['state'],
      registers,
      collect() {
        const counts = new Map<VmStateName, number>(VM_STATES.map((s) => [s, 0]));
        for (const s of sources.vmStates()) counts.set(s, (counts.get(s) ?? 0) + 1);
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
    this.boots = new Counter({ name: 'sshvisor_vm_boots_total', help: 'VMs booted (cold, or cloned from the template)', labelNames: ['how'], registers });
    this.resumes = new Counter({ name: 'sshvisor_vm_resumes_total', help: 'VMs resumed from their snapshot', registers });
    this.suspends = new Counter({ name: 'sshvisor_vm_suspends_total', help: 'VMs suspended to disk', registers });
    this.bootSeconds = new Histogram({
      name: 'sshvisor_vm_boot_duration_seconds',
      help: 'From starting a VM (boot or clone) to the guest saying its SSH daemon is up',
      labelNames: ['how'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.resumeSeconds = new Histogram({
      name: 'sshvisor_vm_resume_duration_seconds',
      help: 'From starting a resume to the restored guest running again',
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.sshConnections = new Counter({ name: 'sshvisor_ssh_connections_total', help: 'SSH connections accepted', registers });
    this.sshAuthFailures = new Counter({ name: 'sshvisor_ssh_auth_failures_total', help: 'SSH authentication attempts rejected', registers });
    for (const how of ['boot', 'clone']) {
      this.boots.inc({ how }, 0);
      this.bootSeconds.zero({ how });
    }
    new Counter({
      name: 'sshvisor_console_bytes_captured_total',
      help: 'Console bytes captured from VMs (by the console channels in memory)',
      registers,
      collect() {
        this.reset();
        this.inc(sources.console.bytesCaptured);
      },
    });
    new Gauge({
      name: 'sshvisor_console_viewers',
      help: 'Console viewers attached (SSH and web)',
      registers,
      collect() {
        this.set(sources.console.viewerCount);
      },
    });
  }

  /** Count what the VM manager reports. */
  watchManager(manager: EventEmitter<ManagerEvents>): void {
    manager.on('vm-started', (_name, how) => this.vmStarted(how));
    manager.on('vm-ready', (_name, how, ms) => this.vmReady(how, ms));
    manager.on('vm-exit', (_name, info) => {
      if (info.reason === 'suspended') this.suspends.inc();
    });
  }

  vmStarted(how: LaunchHow): void {
    if (how === 'resume') this.resumes.inc();
    else this.boots.inc({ how });
  }

  vmReady(how: LaunchHow, ms: number): void {
    if (how === 'resume') this.resumeSeconds.observe(ms / 1000);
    else this.bootSeconds.observe({ how }, ms / 1000);
  }

  /** For the SSH front door. */
  readonly ssh = {
    connection: (): void => this.sshConnections.inc(),
    authFailure: (): void => this.sshAuthFailures.inc(),
  };

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
