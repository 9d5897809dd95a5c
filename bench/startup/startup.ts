/**
 * How long `ssh NAME@host true` takes through sshvisor in each state NAME's
 * VM can be in, against OpenSSH's own sshd on loopback with the same client
 * and client options:
 *
 *   (a) new user, cold boot: `sshvisor serve --no-templates`
 *   (b) new user, clone of the template: `sshvisor serve --templates`, after template-ready
 *   (c) new user from a warm pool: sshvisor has none (no --pool), printed as n/a
 *   (d) returning user whose VM is suspended to disk (short --idle-timeout):
 *       a clone's first resume (its RAM comes out of snapshot.state), and a
 *       cold-booted VM's resume (its RAM is its own file)
 *   (e) user whose VM is running
 *
 * Plus, per login, where the time goes (server log events, QEMU's pid file
 * and the guest's console lines); the suspend time (vm-suspend's ms) and
 * size on disk of a suspended VM, cold-booted and cloned; and the host memory
 * (PSS, smaps_rollup) of N idle clones against N idle cold-booted VMs.
 *
 * The two servers run one after the other, each with its own data dir;
 * samples are taken one at a time with distinct user names, each followed by
 * one sshd baseline login (so drift hits both), and each VM's idle suspend is
 * waited for before the next login. A server is killed (SIGKILL to its
 * process group, QEMUs included) once its part is done: suspending its VMs
 * would only write state that goes with the temp dir.
 *
 * Defaults: --samples 7 per case, --logins 10 for (e), --vms 10, --idle-timeout 2.
 *
 *   node dist/bench/startup/startup.js [--samples N] [--logins N] [--vms N] [--idle-timeout SECONDS]
 *                                      [--accel auto|kvm|tcg] [--image-dir DIR] [--json PATH]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { cpus as hostCpus, loadavg, release as hostKernel, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { AccelMode } from '../../src/vm/driver.js';
import { requireTool } from '../../src/util/tools.js';
import { UserError } from '../../src/util/errors.js';
import { formatTable, summarize, writeResultsJson, type Summary } from '../lib/table.js';
import { makeTempDir, runBench, removeTempDir, trackGroup, untrackGroup } from '../lib/cleanup.js';
import { mustSucceed, runClient } from '../lib/proc.js';
import { BaselineSshd, SshvisorServe, clientOptions, killServer, makeKey, parseNegotiated, type Negotiated } from '../lib/ssh-servers.js';
import {
  ForeignQemuMonitor,
  VmDirWatch,
  dirUsage,
  eventsOf,
  findEvent,
  findMessage,
  sleep,
  smapsParts,
  smapsRollup,
  waitForEvent,
  type DirUsage,
  type LogEvent,
  type MemParts,
  type MemRollup,
} from './observe.js';
import { accelOption, imageDirOption, intOption, loadBenchImage } from '../lib/options.js';
import { PREVIOUS_LABEL, PREVIOUS_STARTUP_MS } from '../lib/previous.js';

const MEMORY_MIB = 256;
/** The KEX sshvisor (ssh2) negotiates with OpenSSH's client; sshd prefers sntrup761x25519-sha512, which costs more. */
const SAME_KEX = 'curve25519-sha256';

interface Options {
  samples: number;
  logins: number;
  vms: number;
  idleTimeoutSec: number;
  accelFlag?: AccelMode;
  imageDir: string;
  json?: string;
}

const USAGE =
  'usage: startup.js [--samples N] [--logins N] [--vms N] [--idle-timeout SECONDS] [--accel auto|kvm|tcg] [--image-dir DIR] [--json PATH]\n';

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      samples: { type: 'string', default: '7' },
      logins: { type: 'string', default: '10' },
      vms: { type: 'string', default: '10' },
      'idle-timeout': { type: 'string', default: '2' },
      accel: { type: 'string' },
      'image-dir': { type: 'string' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  return {
    samples: intOption('samples', values.samples),
    logins: intOption('logins', values.logins),
    vms: intOption('vms', values.vms),
    idleTimeoutSec: intOption('idle-timeout', values['idle-timeout']),
    accelFlag: accelOption(values.accel),
    imageDir: imageDirOption(values['image-dir']),
    json: values.json,
  };
}

// ---------------------------------------------------------------------------------------------
// One timed login and where its time went.

type Case = 'cold' | 'clone' | 'resumeRamInState' | 'resumeRamFile' | 'running' | 'runningSameKex' | 'baseline' | 'baselineSameKex';

/** Points in time (epoch ms) a login passes, in order; each phase of the breakdown ends at one. */
const MARKS = ['client', 'auth', 'vmStart', 'pidFile', 'restored', 'init', 'agent', 'identity', 'ready', 'vmReady', 'sessionStart', 'sessionEnd', 'exit'] as const;
type Mark = (typeof MARKS)[number];

/** Column header and meaning of the phase that ends at each mark (the time since the previous mark seen). */
const PHASES: Record<Exclude<Mark, 'client'>, { col: string; what: string }> = {
  auth: { col: 'auth', what: 'client spawn to "auth accepted": TCP, SSH handshake and publickey auth with sshvisor' },
  vmStart: { col: 'to vm-*', what: 'to the vm-boot/vm-clone/vm-resume event: session + exec request, new disk (mkfs.ext4) or snapshot check (sha256 of snapshot.state)' },
  pidFile: { col: 'qemu up', what: "to QEMU's pid file appearing (free port, spawn, QEMU start-up)" },
  init: { col: 'init', what: 'cold boot: firmware, kernel and initramfs up to the guest init line on the console' },
  restored: {
    col: 'restore',
    what: "to the end of the state load when QEMU reads it through a child (`exec:cat`); the gateway now feeds snapshot.state to QEMU through an fd, so this is '-' and the load is in 'agent'",
  },
  agent: {
    col: 'agent',
    what:
      'to "guest agent connected" (server log): the gateway retries agent.sock every 50 ms until the agent answers its HELLO; ' +
      'cold: the agent starts first in init and waits for its virtio-serial port; clone: cont, then the handshake; resume: QMP, the state load, cont, the handshake',
  },
  identity: { col: 'identity', what: 'clone: the identity request through the agent (name, clock, RNG seed), "identity received" on the console' },
  ready: { col: 'guest up', what: 'guest init: (cold) modules, network; (clone) the template\'s disk cache dropped; mount the disk ("ready" on the console)' },
  vmReady: { col: 'vm-ready', what: 'to vm-ready: the gateway sees the ready line; resume: set-clock through the agent (there is no login into the guest any more)' },
  sessionStart: { col: 'exec', what: "to session-start: lease, the agent's exec OPEN/OPEN_OK (the guest forks the command)" },
  sessionEnd: { col: 'true', what: 'to session-end: `true` runs in the guest, EXIT and CLOSE relayed' },
  exit: { col: 'close', what: 'to the client exiting (connection teardown)' },
};

interface LoginSample {
  case: Case;
  user: string;
  ms: number;
  /** Epoch ms of each mark seen. */
  marks: Partial<Record<Mark, number>>;
  /** The server event that started the VM: vm-boot, vm-clone, vm-resume (none for a running VM). */
  start?: string;
  /** Other users' QEMUs and the 1-minute load average when the sample was taken. */
  foreignQemus: number;
  load1: number;
}

/** Milliseconds of each phase: the time from the previous mark seen to this one. */
function phasesOf(s: LoginSample): Partial<Record<Mark, number>> {
  const out: Partial<Record<Mark, number>> = {};
  let prev: number | undefined;
  for (const m of MARKS) {
    const t = s.marks[m];
    if (t === undefined) continue;
    if (prev !== undefined) out[m] = Math.max(0, t - prev);
    prev = t;
  }
  return out;
}

interface SuspendSample {
  kind: 'cold' | 'cloneFirst' | 'cloneResumed' | 'coldResumed';
  user: string;
  /** The vm-suspend event's ms: QMP stop, state written and fsynced, meta (sha256), quit, QEMU exit. */
  ms: number;
  /** vm-idle to vm-suspend: also the guest's `sync` before it. */
  idleToSuspendedMs?: number;
  usage: DirUsage;
}

interface Target {
  label: string;
  user: string;
  port: number;
  knownHosts: string;
}

class Bench {
  readonly logins: LoginSample[] = [];
  readonly suspends: SuspendSample[] = [];

  constructor(
    readonly opts: Options,
    readonly dir: string,
    readonly key: string,
    readonly ssh: string,
    readonly foreign: ForeignQemuMonitor,
  ) {}

  argv(t: Target, command: string, extra: string[] = [], logLevel?: string): string[] {
    return [this.ssh, ...clientOptions({ key: this.key, port: t.port, knownHosts: t.knownHosts, logLevel }), ...extra, `${t.user}@127.0.0.1`, command];
  }

  /** `ssh USER@127.0.0.1 true`, timed; with a server, also the marks from its log and the VM's directory. */
  async login(t: Target, kase: Case, sv?: SshvisorServe, extra: string[] = []): Promise<LoginSample> {
    const foreignQemus = this.foreign.sample();
    const load1 = loadavg()[0]!;
    const watch = sv ? new VmDirWatch(join(sv.dataDir, 'vms', t.user)) : undefined;
    const client = Date.now();
    let r;
    try {
      r = await runClient(this.argv(t, 'true', extra), { timeoutMs: 300_000 });
    } finally {
      watch?.stop();
    }
    mustSucceed(`${t.label}: ssh ${[...extra, `${t.user}@127.0.0.1`].join(' ')} true`, r);
    const sample: LoginSample = { case: kase, user: t.user, ms: r.ms, marks: { client, exit: client + r.ms }, foreignQemus, load1 };
    if (sv) {
      // session-end is logged as the channel closes: it can come in just after the client is gone.
      const end = await waitForEvent(sv, 'session-end', client, (e) => e.user === t.user, { timeoutMs: 2000, what: `${t.user}: session-end` }).catch(() => undefined);
      const byVm = (e: LogEvent): boolean => e.vm === t.user;
      const until = (end?.time ?? sample.marks.exit!) + 1;
      const at = (ev: string, match: (e: LogEvent) => boolean): number | undefined => {
        const e = findEvent(sv, ev, client, match);
        return e && e.time <= until ? e.time : undefined;
      };
      const agentAt = (): number | undefined => {
        const e = findMessage(sv, 'guest agent connected', client, byVm);
        return e && e.time <= until ? e.time : undefined;
      };
      const startEvent = ['vm-boot', 'vm-clone', 'vm-resume'].map((ev) => ({ ev, time: at(ev, byVm) })).find((x) => x.time !== undefined);
      sample.start = startEvent?.ev;
      Object.assign(sample.marks, {
        auth: at('auth', (e) => byVm(e) && e.result === 'accepted'),
        vmStart: startEvent?.time,
        agent: startEvent ? agentAt() : undefined,
        vmReady: startEvent ? at('vm-ready', byVm) : undefined,
        sessionStart: at('session-start', (e) => e.user === t.user),
        sessionEnd: end?.time,
      });
      if (startEvent && watch) Object.assign(sample.marks, watch.seen);
    }
    this.logins.push(sample);
    return sample;
  }

  /** Wait for USER's VM to be suspended by the idle timer (after `since`), then record it and its directory's size. */
  async awaitSuspend(sv: SshvisorServe, user: string, since: number, kind: SuspendSample['kind']): Promise<SuspendSample> {
    const byVm = (e: LogEvent): boolean => e.vm === user;
    const ev = await waitForEvent(sv, 'vm-suspend', since, byVm, {
      // The server gives the guest's sync 15 s and the state save 120 s before it reports vm-suspend-failed.
      timeoutMs: (this.opts.idleTimeoutSec + 150) * 1000,
      failOn: ['vm-suspend-failed'],
      what: `${user}: waiting for the idle suspend`,
      vm: user,
    });
    const idle = findEvent(sv, 'vm-idle', since, byVm);
    const s: SuspendSample = {
      kind,
      user,
      ms: Number(ev.ms),
      idleToSuspendedMs: idle ? ev.time - idle.time : undefined,
      usage: dirUsage(join(sv.dataDir, 'vms', user)),
    };
    this.suspends.push(s);
    return s;
  }
}

const med = (xs: number[]): number => summarize(xs).median;
const mib = (bytes: number | undefined, digits = 1): string => (bytes === undefined || Number.isNaN(bytes) ? '-' : (bytes / 1024 ** 2).toFixed(digits));

function cell(s: Summary | undefined, digits = 0): string {
  if (!s || s.n === 0) return '-';
  const f = (n: number): string => n.toFixed(digits);
  return s.n === 1 ? f(s.median) : `${f(s.median)} [${f(s.min)}-${f(s.max)}]`;
}

function ratio(a: Summary | undefined, b: Summary | undefined): string {
  if (!a || !b || !(a.n > 0) || !(b.median > 0)) return '-';
  const r = a.median / b.median;
  return r >= 10 ? `${r.toFixed(0)}x` : `${r.toFixed(2)}x`;
}

/** First non-empty line a program prints for its version (ssh -V writes to stderr). */
function versionOf(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return `${r.stdout ?? ''}\n${r.stderr ?? ''}`.split('\n').map((l) => l.trim()).find(Boolean) ?? 'unknown';
}


interface MemoryResult {
  kind: 'clone' | 'cold';
  vms: number;
  /** Client spawn to session-start of each holding session (a new-user login with the earlier VMs up and idle). */
  bringupMs: number[];
  perVm: Array<{ user: string; pid: number; rollup: MemRollup; parts: MemParts }>;
  total: MemRollup;
}

/**
 * Start `n` new users' VMs one after another and keep each up with a session
 * (`ssh NAME@host sleep`: the idle timer cannot fire), wait for them to
 * settle, then read every QEMU's smaps_rollup.
 */
async function measureMemory(bench: Bench, sv: SshvisorServe, kind: MemoryResult['kind'], prefix: string, target: (user: string) => Target): Promise<MemoryResult> {
  const holds: ChildProcess[] = [];
  try {
    const bringupMs: number[] = [];
    const users: string[] = [];
    for (let i = 1; i <= bench.opts.vms; i++) {
      const user = `${prefix}${i}`;
      users.push(user);
      const t0 = Date.now();
      const [file, ...args] = bench.argv(target(user), 'sleep 3600');
      const child = spawn(file!, args, { detached: true, stdio: 'ignore' });
      trackGroup(child);
      holds.push(child);
      const gone = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`${user}: the holding ssh session exited (${code}) before its VM was up`))));
      gone.catch(() => undefined);
      const started = await Promise.race([
        waitForEvent(sv, 'session-start', t0, (e) => e.user === user, { timeoutMs: 240_000, failOn: ['vm-boot-failed'], what: `${user}: memory VM`, vm: user }),
        gone,
      ]);
      bringupMs.push(started.time - t0);
      process.stderr.write(`  ${kind} ${user} up and held (${started.time - t0} ms)\n`);
    }
    process.stderr.write(`  ${bench.opts.vms} ${kind} VMs up; letting them settle for 5 s\n`);
    await sleep(5000);
    const perVm = users.map((user) => {
      const pid = sv.qemuPid(user);
      if (pid === undefined) throw new Error(`no QEMU pid for ${user}`);
      return { user, pid, rollup: smapsRollup(pid), parts: smapsParts(pid) };
    });
    const total: MemRollup = {};
    for (const v of perVm) for (const [k, n] of Object.entries(v.rollup)) total[k] = (total[k] ?? 0) + n;
    const idleEvents = eventsOf(sv, 'vm-idle').filter((e) => users.includes(String(e.vm)));
    if (idleEvents.length > 0) throw new Error(`memory VMs went idle while held: ${idleEvents.map((e) => e.vm).join(', ')}`);
    return { kind, vms: users.length, bringupMs, perVm, total };
  } finally {
    for (const h of holds) untrackGroup(h);
  }
}

async function main(): Promise<void> {
  const opts = parseOptions();
  const image = loadBenchImage(opts.imageDir);
  const ssh = requireTool('ssh');
  requireTool('ssh-keygen');
  if (process.getuid?.() !== 0) throw new UserError('run the startup bench as root: the sshd baseline needs it');

  const loadStart = loadavg();
  const benchStart = Date.now();
  const dir = makeTempDir('sshvisor-bench-startup-');
  const foreign = new ForeignQemuMonitor(dir);
  const key = makeKey(join(dir, 'client_ed25519'), 'sshvisor-bench-client');
  const bench = new Bench(opts, dir, key, ssh, foreign);
  const serverArgs = ['--idle-timeout', String(opts.idleTimeoutSec), '--max-vms', String(opts.vms + 2), '--memory', String(MEMORY_MIB)];
  const log = (s: string): boolean => process.stderr.write(s + '\n');

  let sshd: BaselineSshd | undefined;
  let sv: SshvisorServe | undefined;
  const memory: MemoryResult[] = [];
  const templateInfo: { readyMs?: number; usage?: DirUsage } = {};
  let accel = '';
  const negotiated: { sshvisor?: Negotiated; baseline?: Negotiated } = {};
  try {
    log(`startup bench: sshd baseline, then sshvisor serve --no-templates and --templates (image ${opts.imageDir}, idle timeout ${opts.idleTimeoutSec} s)`);
    mkdirSync(join(dir, 'sshd'));
    sshd = await BaselineSshd.start({ dir: join(dir, 'sshd'), authorizedKeys: readFileSync(`${key}.pub`, 'utf8') });
    const base: Target = { label: 'sshd', user: 'root', port: sshd.port, knownHosts: join(dir, 'known_hosts-sshd') };
    await bench.login(base, 'baseline'); // warm-up: host key learnt, binaries and keys in the page cache
    bench.logins.pop();
    negotiated.baseline = parseNegotiated(mustSucceed('sshd: ssh -v', await runClient(bench.argv(base, 'true', [], 'DEBUG1'))).stderr);
    const baseline = (): Promise<LoginSample> => bench.login(base, 'baseline');

    // ---- (a) and (d'): --no-templates. -------------------------------------------------------
    {
      const dirCold = join(dir, 'cold');
      mkdirSync(dirCold);
      sv = await SshvisorServe.start({ dir: dirCold, imageDir: opts.imageDir, accel: opts.accelFlag, extraArgs: ['--no-templates', ...serverArgs] });
      accel = sv.accel;
      const server = sv;
      const target = (user: string): Target => ({ label: 'sshvisor --no-templates', user, port: server.port, knownHosts: join(dir, 'known_hosts-cold') });
      log(`  sshvisor --no-templates on 127.0.0.1:${sv.port} (accel ${sv.accel})`);
      const users = Array.from({ length: opts.samples }, (_, i) => `cold${i + 1}`);
      for (const user of users) {
        const s = await bench.login(target(user), 'cold', sv);
        if (s.start !== 'vm-boot') throw new Error(`${user}: expected a cold boot, the server logged ${s.start ?? 'no VM start'}`);
        await baseline();
        const sus = await bench.awaitSuspend(sv, user, s.marks.exit!, 'cold');
        log(`  (a) ${user}: cold boot + login ${Math.round(s.ms)} ms; idle suspend ${sus.ms} ms, ${mib(sus.usage.du)} MiB on disk`);
      }
      for (const user of users) {
        const s = await bench.login(target(user), 'resumeRamFile', sv);
        if (s.start !== 'vm-resume') throw new Error(`${user}: expected a resume, the server logged ${s.start ?? 'no VM start'}`);
        await baseline();
        const sus = await bench.awaitSuspend(sv, user, s.marks.exit!, 'coldResumed');
        log(`  (d') ${user}: resume + login ${Math.round(s.ms)} ms; suspended again in ${sus.ms} ms`);
      }
      log(`  memory: ${opts.vms} cold-booted VMs`);
      memory.push(await measureMemory(bench, sv, 'cold', 'coldmem', target));
      await killServer(sv);
      sv = undefined;
    }

    // ---- (b), (d), (e): --templates. ---------------------------------------------------------
    {
      const dirTpl = join(dir, 'templates');
      mkdirSync(dirTpl);
      sv = await SshvisorServe.start({ dir: dirTpl, imageDir: opts.imageDir, accel: opts.accelFlag, extraArgs: ['--templates', ...serverArgs] });
      const server = sv;
      const target = (user: string): Target => ({ label: 'sshvisor --templates', user, port: server.port, knownHosts: join(dir, 'known_hosts-templates') });
      log(`  sshvisor --templates on 127.0.0.1:${sv.port}: waiting for template-ready`);
      const ready = await waitForEvent(sv, 'template-ready', 0, () => true, { timeoutMs: 300_000, failOn: ['template-failed'], what: 'template' });
      templateInfo.readyMs = Number(ready.ms);
      templateInfo.usage = dirUsage(String(ready.dir));
      log(`  template ready after ${ready.ms} ms (${mib(templateInfo.usage.du)} MiB on disk)`);
      const users = Array.from({ length: opts.samples }, (_, i) => `clone${i + 1}`);
      for (const user of users) {
        const s = await bench.login(target(user), 'clone', sv);
        if (s.start !== 'vm-clone') throw new Error(`${user}: expected a clone, the server logged ${s.start ?? 'no VM start'}`);
        await baseline();
        const sus = await bench.awaitSuspend(sv, user, s.marks.exit!, 'cloneFirst');
        log(`  (b) ${user}: clone + login ${Math.round(s.ms)} ms; first suspend ${sus.ms} ms, ${mib(sus.usage.du)} MiB on disk`);
      }
      for (const user of users) {
        const s = await bench.login(target(user), 'resumeRamInState', sv);
        if (s.start !== 'vm-resume') throw new Error(`${user}: expected a resume, the server logged ${s.start ?? 'no VM start'}`);
        await baseline();
        const sus = await bench.awaitSuspend(sv, user, s.marks.exit!, 'cloneResumed');
        log(`  (d) ${user}: resume + login ${Math.round(s.ms)} ms; suspended again in ${sus.ms} ms, ${mib(sus.usage.du)} MiB on disk`);
      }
      // (e): one VM kept running by logins closer together than the idle timeout.
      const runner = users[users.length - 1]!;
      await bench.login(target(runner), 'running', sv); // resumes it
      bench.logins.pop();
      negotiated.sshvisor = parseNegotiated(mustSucceed('sshvisor: ssh -v', await runClient(bench.argv(target(runner), 'true', [], 'DEBUG1'))).stderr);
      const before = Date.now();
      for (let i = 0; i < opts.logins; i++) {
        for (const [kase, extra] of [['running', []], ['runningSameKex', ['-o', `KexAlgorithms=${SAME_KEX}`]]] as const) {
          const s = await bench.login(target(runner), kase, sv, [...extra]);
          if (s.start) throw new Error(`${runner}: expected a running VM, the server logged ${s.start}: raise --idle-timeout`);
          await bench.login(base, kase === 'running' ? 'baseline' : 'baselineSameKex', undefined, [...extra]);
        }
      }
      if (findEvent(sv, 'vm-idle', before, (e) => e.vm === runner)) throw new Error(`${runner} went idle during the running-VM logins: raise --idle-timeout`);
      await bench.awaitSuspend(sv, runner, before, 'cloneResumed').then(() => bench.suspends.pop());
      log(`  (e) ${runner}: ${opts.logins} logins to the running VM, median ${Math.round(med(bench.logins.filter((l) => l.case === 'running').map((l) => l.ms)))} ms`);
      log(`  memory: ${opts.vms} clones`);
      memory.push(await measureMemory(bench, sv, 'clone', 'clonemem', target));
      await killServer(sv);
      sv = undefined;
    }
    await sshd.stop();
    sshd = undefined;

    report(bench, opts, { memory, templateInfo });

    const foreignStats = foreign.stop();
    const host = {
      accel,
      cpuModel: hostCpus()[0]?.model.trim() ?? 'unknown',
      hostCpus: hostCpus().length,
      hostMemoryMiB: Math.round(totalmem() / 1024 ** 2),
      hostKernel: hostKernel(),
      dataDirFs: spawnSync('stat', ['-f', '-c', '%T', dir], { encoding: 'utf8' }).stdout.trim(),
      node: process.version,
      opensshClient: versionOf([ssh, '-V']),
      sshd: negotiated.baseline?.serverSoftware ?? 'unknown',
      qemuVersion: versionOf(['qemu-system-x86_64', '--version']),
      guestKernel: image.manifest?.kernel.release ?? 'unknown',
      guest: { memoryMiB: MEMORY_MIB, cpus: 1 },
      otherQemus: {
        ...foreignStats,
        note: "QEMUs not started by this bench (someone else's VMs), counted every 2 s; cpuSeconds: what they used while the bench ran",
      },
      loadavgAtStart: loadStart.map((l) => Math.round(l * 100) / 100),
      loadavgAtEnd: loadavg().map((l) => Math.round(l * 100) / 100),
      benchSeconds: Math.round((Date.now() - benchStart) / 1000),
      date: new Date().toISOString(),
    };
    process.stdout.write(
      `\nhost: ${host.cpuModel}, ${host.hostCpus} cores, accel ${accel}; other users' QEMUs: ${foreignStats.atStart} at start, up to ${foreignStats.max}, ` +
        `${foreignStats.cpuSeconds.toFixed(0)} CPU-s in ${foreignStats.wallSeconds.toFixed(0)} s (${Math.round((foreignStats.cpuSeconds / foreignStats.wallSeconds) * 100)}% of one core); ` +
        `load ${host.loadavgAtStart[0]} -> ${host.loadavgAtEnd[0]}\n`,
    );
    const out = writeResultsJson(
      'startup',
      {
        bench: 'startup',
        config: {
          samples: opts.samples,
          logins: opts.logins,
          vms: opts.vms,
          idleTimeoutSec: opts.idleTimeoutSec,
          memoryMiB: MEMORY_MIB,
          serverArgs,
          accelFlag: opts.accelFlag ?? null,
          imageDir: opts.imageDir,
          clientOptions: clientOptions({ key, port: 0, knownHosts: '$TMP/known_hosts' }).map((o) => o.replace(dir, '$TMP')),
          sameKex: SAME_KEX,
          units: {
            ms: 'wall ms, client spawn to client exit',
            marks: 'epoch ms: server log event times (pino), QEMU pid file and console.log lines polled every 10 ms',
            bytes: 'bytes; allocated = st_blocks * 512, du = du -s -B1',
          },
          phases: PHASES,
        },
        host,
        negotiated,
        results: {
          logins: summaries(bench),
          pool: 'n/a: sshvisor has no --pool',
          previousDropbear: { ms: PREVIOUS_STARTUP_MS, note: 'not measured by this run: the last run before the agent (README.md, the issue)' },
          suspends: bench.suspends,
          template: templateInfo,
          memory,
          samples: bench.logins.map((s) => ({ ...s, phases: phasesOf(s) })),
        },
      },
      opts.json,
    );
    log(`wrote ${out}`);
  } finally {
    await Promise.all([killServer(sv), sshd?.stop()]);
    foreign.stop();
    removeTempDir(dir);
  }
}

const CASES: Array<{ case: Case; label: string }> = [
  { case: 'cold', label: '(a) new user, cold boot (--no-templates)' },
  { case: 'clone', label: '(b) new user, clone of the template (--templates)' },
  { case: 'resumeRamInState', label: "(d) returning user, suspended clone (1st resume: RAM in snapshot.state)" },
  { case: 'resumeRamFile', label: "(d') returning user, suspended cold-booted VM (RAM in its own file)" },
  { case: 'running', label: '(e) user whose VM is running' },
  { case: 'baseline', label: 'OpenSSH sshd baseline: ssh root@127.0.0.1 true' },
  { case: 'runningSameKex', label: `(e) with -o KexAlgorithms=${SAME_KEX}` },
  { case: 'baselineSameKex', label: `sshd baseline with -o KexAlgorithms=${SAME_KEX}` },
];

function summaries(bench: Bench): Record<string, Summary & { phases: Partial<Record<Mark, number>> }> {
  const out: Record<string, Summary & { phases: Partial<Record<Mark, number>> }> = {};
  for (const { case: c } of CASES) {
    const ss = bench.logins.filter((s) => s.case === c);
    const phases: Partial<Record<Mark, number>> = {};
    for (const m of MARKS) {
      const xs = ss.map((s) => phasesOf(s)[m]).filter((x): x is number => x !== undefined);
      if (xs.length) phases[m] = med(xs);
    }
    out[c] = { ...summarize(ss.map((s) => s.ms)), phases };
  }
  return out;
}

function report(bench: Bench, opts: Options, extra: { memory: MemoryResult[]; templateInfo: { readyMs?: number; usage?: DirUsage } }): void {
  const sums = summaries(bench);
  const base = sums.baseline;
  const baseKex = sums.baselineSameKex;
  const prev = (c: Case): string => (PREVIOUS_STARTUP_MS as Record<string, string>)[c] ?? '-';
  const row = (c: Case, label: string, b = base): string[] => [label, cell(sums[c]), String(sums[c]?.n ?? 0), ratio(sums[c], b), prev(c)];
  const rows = [
    row('cold', CASES[0]!.label),
    row('clone', CASES[1]!.label),
    ['(c) new user, warm pool', 'n/a (no --pool)', '-', '-', '-'],
    row('resumeRamInState', CASES[2]!.label),
    row('resumeRamFile', CASES[3]!.label),
    row('running', CASES[4]!.label),
    row('baseline', CASES[5]!.label),
    row('runningSameKex', CASES[6]!.label, baseKex),
    row('baselineSameKex', CASES[7]!.label, baseKex),
  ];
  process.stdout.write('\n' + formatTable(['ssh NAME@host true (through the agent)', 'ms, median [min-max]', 'n', 'vs sshd', `${PREVIOUS_LABEL}, ms`], rows) + '\n');
  process.stdout.write(
    `(last two rows: ratio against the same-KEX sshd baseline; last column: not measured now, the medians of the last run before the agent, on this machine)\n`,
  );

  // Where the time goes: median of each phase.
  const cols = MARKS.filter((m) => m !== 'client') as Array<Exclude<Mark, 'client'>>;
  const phaseRows = CASES.filter((c) => ['cold', 'clone', 'resumeRamInState', 'resumeRamFile', 'running'].includes(c.case)).map((c) => [
    c.label.split(' ')[0]!,
    ...cols.map((m) => {
      const v = sums[c.case]?.phases[m];
      return v === undefined ? '-' : String(Math.round(v));
    }),
  ]);
  process.stdout.write(
    '\nwhere the time goes (median ms of each phase; a phase runs from the previous mark seen to this one)\n' +
      formatTable(['case', ...cols.map((m) => PHASES[m].col)], phaseRows) +
      '\n' +
      cols.map((m) => `  ${PHASES[m].col.padEnd(10)} ${PHASES[m].what}`).join('\n') +
      '\n',
  );

  // Suspend and size on disk.
  const kinds: Array<{ kind: SuspendSample['kind']; label: string }> = [
    { kind: 'cold', label: 'cold-booted VM (RAM in its own file)' },
    { kind: 'cloneFirst', label: "clone's 1st suspend (RAM into snapshot.state)" },
    { kind: 'coldResumed', label: 'resumed cold-booted VM, suspended again' },
    { kind: 'cloneResumed', label: 'resumed clone, suspended again (own RAM file)' },
  ];
  const medBytes = (ss: SuspendSample[], f: (u: DirUsage) => number | undefined): number | undefined => {
    const xs = ss.map((s) => f(s.usage)).filter((x): x is number => x !== undefined);
    return xs.length ? med(xs) : undefined;
  };
  const sRows = kinds.map(({ kind, label }) => {
    const ss = bench.suspends.filter((s) => s.kind === kind);
    const file = (name: string) => (u: DirUsage) => u.files[name]?.allocated;
    const apparent = (name: string) => (u: DirUsage) => u.files[name]?.apparent;
    return [
      label,
      cell(summarize(ss.map((s) => s.ms))),
      cell(summarize(ss.map((s) => s.idleToSuspendedMs).filter((x): x is number => x !== undefined))),
      mib(medBytes(ss, (u) => u.du)),
      `${mib(medBytes(ss, file('ram')))} / ${mib(medBytes(ss, apparent('ram')), 0)}`,
      `${mib(medBytes(ss, file('snapshot.state')), 2)}`,
      `${mib(medBytes(ss, file('disk.img')))} / ${mib(medBytes(ss, apparent('disk.img')), 0)}`,
    ];
  });
  process.stdout.write(
    `\nsuspend (n=${opts.samples} each) and a suspended VM on disk (DATA_DIR/vms/NAME, median MiB; allocated / apparent)\n` +
      formatTable(['suspend', 'vm-suspend ms', 'idle->suspended ms', 'du total', 'ram', 'snapshot.state', 'disk.img'], sRows) +
      '\n',
  );
  if (extra.templateInfo.usage) {
    const u = extra.templateInfo.usage;
    process.stdout.write(
      `template (shared by all clones): ${mib(u.du)} MiB on disk (ram ${mib(u.files.ram?.allocated)} MiB, snapshot.state ${mib(u.files['snapshot.state']?.allocated, 2)} MiB), built in ${extra.templateInfo.readyMs} ms\n`,
    );
  }

  // Memory.
  const mRows = extra.memory.map((m) => {
    const per = (k: string): string => mib((m.total[k] ?? NaN) / m.vms);
    const part = (p: keyof MemParts, f: 'pss' | 'anon'): string => mib(m.perVm.reduce((a, v) => a + v.parts[p][f], 0) / m.vms);
    return [
      `${m.vms} idle ${m.kind === 'clone' ? 'clones' : 'cold-booted VMs'}`,
      mib(m.total.Pss, 0),
      per('Pss'),
      per('Pss_Anon'),
      per('Pss_File'),
      per('Rss'),
      `${part('guestRam', 'pss')} (${part('guestRam', 'anon')})`,
      part('tcgCode', 'pss'),
      part('other', 'pss'),
    ];
  });
  process.stdout.write(
    `\nhost memory of the QEMU processes (smaps_rollup and smaps, MiB; ${MEMORY_MIB} MiB guests, each held up by one \`sleep\` session)\n` +
      formatTable(['VMs', 'PSS total', 'PSS/VM', 'anon/VM', 'file/VM', 'RSS/VM', 'guest RAM/VM (CoW anon)', 'TCG code/VM', 'rest/VM'], mRows) +
      '\n' +
      extra.memory.map((m) => `  new-user login while the other ${m.kind === 'clone' ? 'clones' : 'cold-booted VMs'} run: ${cell(summarize(m.bringupMs))} ms (spawn to session-start)`).join('\n') +
      '\n',
  );
}

await runBench(main);
