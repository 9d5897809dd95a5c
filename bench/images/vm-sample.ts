/**
 * One VM of the images bench, measured through a running server: its start
 * to login, its disk on the host, `sshvisor suspend` and the resume to
 * login, and (cold server) 100 MiB written inside and its disk again. Plus
 * the helpers the bench's other parts share: the sshvisor CLI, `du`, the
 * server's teardown.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { mustSucceed, runClient, type ClientResult } from '../lib/proc.js';
import { SshvisorServe, clientOptions } from '../lib/ssh-servers.js';
import { ForeignQemuMonitor, fileSize, findEvent, waitForEvent, type FileSize, type LogEvent } from '../startup/observe.js';

/** The images compared, the default (the baseline of every row) first. */
export const IMAGES = ['default', 'debian', 'busybox'] as const;
export type ImageName = (typeof IMAGES)[number];

export const WRITE_MIB = 100;
export const WRITE_CMD = `dd if=/dev/urandom of=/root/x bs=1M count=${WRITE_MIB} && sync`;

export const log = (s: string): boolean => process.stderr.write(s + '\n');
export const mib = (bytes: number | undefined, digits = 1): string => (bytes === undefined || Number.isNaN(bytes) ? '-' : (bytes / 1024 ** 2).toFixed(digits));

/** `sshvisor ARGS` from this build, in its own process group, timed. */
export function cli(args: string[], timeoutMs = 300_000): Promise<ClientResult> {
  return runClient([process.execPath, SshvisorServe.mainJs(), ...args], { stdout: 'pipe', timeoutMs });
}

/** Allocated and apparent bytes of a VM's disk file(s) (disk.img for the default image, disk.qcow2 over a rootfs). */
function vmDisk(vmDir: string): FileSize & { files: string[] } {
  const files = readdirSync(vmDir).filter((f) => /^disk\.(img|qcow2)$/.test(f));
  let allocated = 0;
  let apparent = 0;
  for (const f of files) {
    const s = fileSize(join(vmDir, f));
    allocated += s?.allocated ?? 0;
    apparent += s?.apparent ?? 0;
  }
  return { allocated, apparent, files };
}

export function du(path: string): number {
  return Number(execFileSync('du', ['-s', '-B1', path], { encoding: 'utf8' }).split(/\s/)[0]);
}

export interface VmSample {
  image: ImageName;
  server: 'cold' | 'templates';
  run: number;
  vm: string;
  /** `ssh -o SetEnv=SSHVISOR_IMAGE=I NAME@host true` for a new NAME: client spawn to exit. */
  startMs: number;
  /** The server event that started the VM (must be vm-boot, resp. vm-clone). */
  startEvent?: string;
  /** The disk file(s) right after the first login. */
  diskNew: FileSize & { files: string[] };
  /** `du` of DATA_DIR/vms/NAME then (RAM file, console log, sockets...). */
  vmDirNew: number;
  /** `sshvisor suspend NAME`: the CLI's wall time (Node start-up and control socket included). */
  suspendMs: number;
  /** The server's vm-suspend event's ms (QMP stop, state written and synced, QEMU gone). */
  suspendServerMs?: number;
  /** `ssh NAME@host true` of the suspended VM. */
  resumeMs: number;
  resumeEvent?: string;
  /** Cold server only: the 100 MiB write and the disk after it. */
  writeMs?: number;
  diskWritten?: FileSize & { files: string[] };
  /** The VM suspended once more at the end (so it uses no CPU); not in the tables. */
  finalSuspendMs?: number;
  finalSuspendServerMs?: number;
  foreignQemus: number;
  load1: number;
}

export class VmBench {
  readonly samples: VmSample[] = [];

  constructor(
    readonly dir: string,
    readonly key: string,
    readonly ssh: string,
    readonly foreign: ForeignQemuMonitor,
  ) {}

  argv(sv: SshvisorServe, knownHosts: string, user: string, command: string, extra: string[] = []): string[] {
    return [this.ssh, ...clientOptions({ key: this.key, port: sv.port, knownHosts }), ...extra, `${user}@127.0.0.1`, command];
  }

  /** `ssh [extra] USER@host COMMAND`, timed; throws unless it exits 0; returns the VM start event seen meanwhile. */
  async run(sv: SshvisorServe, knownHosts: string, user: string, command: string, extra: string[] = []): Promise<{ ms: number; event?: string }> {
    const since = Date.now();
    const r = await runClient(this.argv(sv, knownHosts, user, command, extra), { timeoutMs: 300_000 });
    mustSucceed(`ssh ${[...extra, `${user}@127.0.0.1`].join(' ')} ${command}`, r);
    sv.qemuPid(user); // tracked: killed if the bench ends while it runs
    const ev = (['vm-boot', 'vm-clone', 'vm-resume'] as const).find((e) => findEvent(sv, e, since, (x) => x.vm === user));
    return { ms: r.ms, event: ev };
  }

  /** `sshvisor suspend USER`, timed, and the server's vm-suspend ms. */
  async suspend(sv: SshvisorServe, user: string): Promise<{ ms: number; serverMs?: number }> {
    const since = Date.now();
    const r = mustSucceed(`sshvisor suspend ${user}`, await cli(['suspend', user, '--data-dir', sv.dataDir]));
    const ev = await waitForEvent(sv, 'vm-suspend', since, (e: LogEvent) => e.vm === user, {
      timeoutMs: 10_000,
      failOn: ['vm-suspend-failed'],
      what: `${user}: suspend`,
      vm: user,
    }).catch(() => undefined);
    return { ms: r.ms, serverMs: ev ? Number(ev.ms) : undefined };
  }

  /**
   * A new VM of `image` through `sv` and what follows: its disk, suspend and
   * resume, (cold server) 100 MiB written and its disk again; it ends suspended.
   */
  async vm(sv: SshvisorServe, server: VmSample['server'], image: ImageName, run: number): Promise<VmSample> {
    const user = `${server === 'cold' ? 'cold' : 'clone'}-${image}-${run}`;
    const kh = join(this.dir, `known_hosts-${server}`);
    const foreignQemus = this.foreign.sample();
    const load1 = loadavg()[0]!;
    const start = await this.run(sv, kh, user, 'true', ['-o', `SetEnv=SSHVISOR_IMAGE=${image}`]);
    const want = server === 'cold' ? 'vm-boot' : 'vm-clone';
    if (start.event !== want) throw new Error(`${user}: expected ${want}, the server logged ${start.event ?? 'no VM start'}`);
    const vmDir = join(sv.dataDir, 'vms', user);
    const diskNew = vmDisk(vmDir);
    const vmDirNew = du(vmDir);
    const sus = await this.suspend(sv, user);
    const resume = await this.run(sv, kh, user, 'true');
    if (resume.event !== 'vm-resume') throw new Error(`${user}: expected vm-resume, the server logged ${resume.event ?? 'no VM start'}`);
    const s: VmSample = {
      image,
      server,
      run,
      vm: user,
      startMs: start.ms,
      startEvent: start.event,
      diskNew,
      vmDirNew,
      suspendMs: sus.ms,
      suspendServerMs: sus.serverMs,
      resumeMs: resume.ms,
      resumeEvent: resume.event,
      foreignQemus,
      load1,
    };
    if (server === 'cold') {
      const w = await this.run(sv, kh, user, WRITE_CMD);
      s.writeMs = w.ms;
      s.diskWritten = vmDisk(vmDir);
    }
    const fin = await this.suspend(sv, user);
    s.finalSuspendMs = fin.ms;
    s.finalSuspendServerMs = fin.serverMs;
    this.samples.push(s);
    log(
      `  ${user}: ${server === 'cold' ? 'cold boot' : 'clone'} + login ${Math.round(s.startMs)} ms, disk ${mib(diskNew.allocated)} MiB; ` +
        `suspend ${Math.round(s.suspendMs)} ms (server ${s.suspendServerMs ?? '-'}), resume + login ${Math.round(s.resumeMs)} ms` +
        (s.writeMs !== undefined ? `; ${WRITE_MIB} MiB written in ${Math.round(s.writeMs)} ms, disk ${mib(s.diskWritten?.allocated)} MiB` : ''),
    );
    return s;
  }
}

