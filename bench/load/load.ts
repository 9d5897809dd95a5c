/**
 * sshvisor under load, against OpenSSH's own sshd in the same run:
 *
 *   storm:   N connections (default 200) opened at once by this process, each
 *            authenticating and running `true` (sshvisor: spread over the VMs)
 *   typing:  S interactive pty sessions (default 20, over 5 VMs) typed into a
 *            key at a time for D seconds (default 60), each command printing
 *            output; keystroke echo and command latency
 *   logins:  L back-to-back `ssh USER@host true` with the OpenSSH client
 *
 * Reported per scenario and side: p50 and p99 latency, errors (0 expected:
 * every client is legitimate), the server's CPU and peak RSS (sshvisor: the
 * gateway process; its QEMU CPU separately; sshd: the listener with every
 * per-connection process and shell it ran).
 *
 *   node dist/bench/load/load.js [--connections N] [--sessions N] [--vms N] [--duration S]
 *        [--logins N] [--think-ms MS] [--accel auto|kvm|tcg] [--image-dir DIR] [--json PATH]
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { cpus as hostCpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { requireTool } from '../../src/util/tools.js';
import { UserError } from '../../src/util/errors.js';
import { formatTable, ms, percentile, writeResultsJson } from '../lib/table.js';
import { makeTempDir, removeTempDir, runBench } from '../lib/cleanup.js';
import { runClient, waitForNoChildren } from '../lib/proc.js';
import { BaselineSshd, SshvisorServe, clientOptions, makeKey } from '../lib/ssh-servers.js';
import { connectionStorm } from './storm.js';
import { runTypist, type TypistResult } from './typist.js';
import { UsageMeter, type Usage } from './server-usage.js';
import { accelOption, imageDirOption, intOption } from '../lib/options.js';

type Side = 'sshvisor' | 'sshd';

interface Options {
  connections: number;
  sessions: number;
  vms: number;
  durationS: number;
  logins: number;
  thinkMs: number;
  accel?: string;
  imageDir: string;
  json?: string;
}

const USAGE =
  'usage: load.js [--connections N] [--sessions N] [--vms N] [--duration S] [--logins N] [--think-ms MS] [--accel auto|kvm|tcg] [--image-dir DIR] [--json PATH]\n';

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      connections: { type: 'string', default: '200' },
      sessions: { type: 'string', default: '20' },
      vms: { type: 'string', default: '5' },
      duration: { type: 'string', default: '60' },
      logins: { type: 'string', default: '50' },
      'think-ms': { type: 'string', default: '100' },
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
    connections: intOption('connections', values.connections, 1),
    sessions: intOption('sessions', values.sessions, 1),
    vms: intOption('vms', values.vms, 1),
    durationS: intOption('duration', values.duration, 1),
    logins: intOption('logins', values.logins, 1),
    thinkMs: intOption('think-ms', values['think-ms'], 0),
    accel: accelOption(values.accel),
    imageDir: imageDirOption(values['image-dir']),
    json: values.json,
  };
}

/** Limits sized for the load, on both sides: the bench's clients are all legitimate. */
function sshvisorLoadFlags(o: Options): string[] {
  return ['--max-vms', String(Math.max(o.vms, 8))];
}

function sshdLoadConfig(o: Options): string[] {
  // OpenSSH's default MaxStartups 10:30:100 would drop most of a 200-connection storm.
  return [`MaxStartups ${o.connections + 50}`];
}

interface Latency {
  n: number;
  errors: number;
  p50: number;
  p99: number;
  max: number;
}

function latency(samples: number[], errors: number): Latency {
  return { n: samples.length, errors, p50: percentile(samples, 50), p99: percentile(samples, 99), max: percentile(samples, 100) };
}

interface ScenarioResult {
  scenario: string;
  side: Side;
  wallMs: number;
  latency: Latency;
  extra?: Record<string, Latency>;
  usage: Usage;
  errorSamples: string[];
}

const userOf = (i: number): string => `load${i + 1}`;

async function main(): Promise<void> {
  const o = parseOptions();
  const ssh = requireTool('ssh');
  requireTool('ssh-keygen');
  if (process.getuid?.() !== 0) throw new UserError('run the load bench as root: the sshd baseline needs it');
  const loadStart = loadavg();
  const dir = makeTempDir('sshvisor-bench-load-');
  const key = makeKey(join(dir, 'client_ed25519'), 'sshvisor-bench-load');
  const privateKey = readFileSync(key);
  const results: ScenarioResult[] = [];
  let sv: SshvisorServe | undefined;
  let sshd: BaselineSshd | undefined;
  try {
    const svDir = join(dir, 'sshvisor');
    const sshdDir = join(dir, 'sshd');
    for (const d of [svDir, sshdDir]) mkdirSync(d);
    sshd = await BaselineSshd.start({ dir: sshdDir, authorizedKeys: readFileSync(`${key}.pub`, 'utf8'), extraConfig: sshdLoadConfig(o) });
    sv = await SshvisorServe.start({ dir: svDir, imageDir: o.imageDir, accel: o.accel, extraArgs: sshvisorLoadFlags(o) });
    const server = sv;
    const sides: Record<Side, { port: number; pid: number; user: (i: number) => string; qemuPids: () => number[] }> = {
      sshvisor: { port: sv.port, pid: sv.pid!, user: (i) => userOf(i % o.vms), qemuPids: () => [...Array(o.vms).keys()].map((i) => server.qemuPid(userOf(i))).filter((p): p is number => p !== undefined) },
      sshd: { port: sshd.port, pid: sshd.pid!, user: () => 'root', qemuPids: () => [] },
    };
    process.stderr.write(`load bench: sshvisor on 127.0.0.1:${sv.port} (accel ${sv.accel}), sshd on 127.0.0.1:${sshd.port}\n`);
    const knownHosts = join(dir, 'known_hosts');
    const sshTrue = (side: Side, user: string, timeoutMs = 300_000) =>
      runClient([ssh, ...clientOptions({ key, port: sides[side].port, knownHosts }), `${user}@127.0.0.1`, 'true'], { timeoutMs });

    // Warm-up: every VM booted (the names claimed by the bench key), sshd's host key known.
    for (let i = 0; i < o.vms; i++) {
      const r = await sshTrue('sshvisor', userOf(i));
      if (r.code !== 0) throw new Error(`warm-up login as ${userOf(i)} failed: ${r.stderr.trim().split('\n').slice(-3).join(' / ')}`);
      process.stderr.write(`  ${userOf(i)}: VM up (${Math.round(r.ms)} ms)\n`);
    }
    await sshTrue('sshd', 'root');

    const measure = async (scenario: string, side: Side, run: () => Promise<Omit<ScenarioResult, 'scenario' | 'side' | 'usage' | 'wallMs'>>): Promise<void> => {
      const s = sides[side];
      const qemu = s.qemuPids();
      const meter = new UsageMeter(s.pid, qemu, qemu);
      const t0 = performance.now();
      const r = await run();
      const wallMs = performance.now() - t0;
      // sshd: every per-connection process reaped, so its CPU is in the listener's cutime.
      if (side === 'sshd') await waitForNoChildren(s.pid, 10_000);
      const result = { scenario, side, wallMs, usage: meter.stop(), ...r };
      results.push(result);
      process.stderr.write(
        `  ${scenario} ${side}: p50 ${ms(r.latency.p50)} ms, p99 ${ms(r.latency.p99)} ms, errors ${r.latency.errors}, cpu ${pct(result.usage.cpuS, wallMs)}, peak rss ${result.usage.peakRssMiB.toFixed(0)} MiB\n`,
      );
      for (const e of r.errorSamples.slice(0, 3)) process.stderr.write(`    error: ${e}\n`);
    };

    for (const side of ['sshvisor', 'sshd'] as const) {
      await measure('storm', side, async () => {
        const rs = await connectionStorm({ port: sides[side].port, user: sides[side].user, privateKey }, o.connections, 300_000);
        const ok = rs.filter((r) => !r.error);
        const errors = rs.filter((r) => r.error).map((r) => r.error!);
        return {
          latency: latency(ok.map((r) => r.totalMs), errors.length),
          extra: { auth: latency(rs.filter((r) => !Number.isNaN(r.authMs)).map((r) => r.authMs), errors.length) },
          errorSamples: [...new Set(errors)],
        };
      });
    }
    for (const side of ['sshvisor', 'sshd'] as const) {
      await measure('typing', side, async () => {
        const until = performance.now() + o.durationS * 1000;
        const typists = [...Array(o.sessions).keys()].map((i) =>
          runTypist(i, { port: sides[side].port, user: sides[side].user(i), privateKey, until, thinkMs: o.thinkMs, outputLines: 40, timeoutMs: 30_000 }),
        );
        const rs: TypistResult[] = await Promise.all(typists);
        const errors = rs.flatMap((r) => r.errors);
        return {
          latency: latency(rs.flatMap((r) => r.keystrokeMs), errors.length),
          extra: { command: latency(rs.flatMap((r) => r.commandMs), errors.length) },
          errorSamples: [...new Set(errors)],
        };
      });
    }
    for (const side of ['sshvisor', 'sshd'] as const) {
      await measure('logins', side, async () => {
        const samples: number[] = [];
        const errors: string[] = [];
        for (let i = 0; i < o.logins; i++) {
          const r = await sshTrue(side, sides[side].user(0), 60_000);
          if (r.code === 0) samples.push(r.ms);
          else errors.push(r.stderr.trim().split('\n').slice(-1)[0] ?? `exit ${r.code}`);
        }
        return { latency: latency(samples, errors.length), errorSamples: [...new Set(errors)] };
      });
    }

    report(o, results, sv.accel);
    const out = writeResultsJson(
      'load',
      {
        bench: 'load',
        config: { ...o, sshvisorFlags: sshvisorLoadFlags(o), sshdConfigExtra: sshdLoadConfig(o), units: { ms: 'wall ms', cpuS: 'CPU seconds', rss: 'MiB' } },
        host: { accel: sv.accel, hostCpus: hostCpus().length, cpuModel: hostCpus()[0]?.model.trim(), node: process.version, loadavgAtStart: loadStart, loadavgAtEnd: loadavg(), date: new Date().toISOString() },
        results,
      },
      o.json,
    );
    process.stderr.write(`wrote ${out}\n`);
  } finally {
    process.stderr.write('  stopping sshvisor and sshd\n');
    await Promise.all([sv?.stop(), sshd?.stop()]);
    removeTempDir(dir);
  }
}

const pct = (cpuS: number, wallMs: number): string => (Number.isNaN(cpuS) ? '-' : `${Math.round((cpuS / (wallMs / 1000)) * 100)}%`);

function report(o: Options, results: ScenarioResult[], accel: string): void {
  const label: Record<string, string> = {
    storm: `storm: ${o.connections} connections at once, auth + \`true\` (ms)`,
    'storm/auth': '  of which connect to authenticated (ms)',
    typing: `typing: ${o.sessions} pty sessions, ${o.durationS} s, keystroke echo (ms)`,
    'typing/command': '  command with 40 lines of output (ms)',
    logins: `logins: ${o.logins} x \`ssh USER@host true\` back to back (ms)`,
  };
  const rows = results.flatMap((r) => {
    const base = [label[r.scenario] ?? r.scenario, r.side, r.latency.n, r.latency.errors, ms(r.latency.p50), ms(r.latency.p99), ms(r.latency.max), pct(r.usage.cpuS, r.wallMs), r.usage.peakRssMiB.toFixed(0), r.side === 'sshvisor' ? pct(r.usage.extraCpuS, r.wallMs) : '-'];
    const extra = Object.entries(r.extra ?? {}).map(([k, l]) => [label[`${r.scenario}/${k}`] ?? k, r.side, l.n, '', ms(l.p50), ms(l.p99), ms(l.max), '', '', '']);
    return [base, ...extra];
  });
  process.stdout.write(
    `\nload (accel ${accel}, ${hostCpus().length} cores; CPU in % of one core over the scenario's wall time)\n` +
      formatTable(['scenario', 'server', 'n', 'errors', 'p50', 'p99', 'max', 'server cpu', 'peak rss MiB', 'qemu cpu'], rows) +
      '\n',
  );
}

await runBench(main);
