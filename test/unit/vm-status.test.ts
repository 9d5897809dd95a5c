import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VmRuntime } from '../../src/manager/vm-manager.js';
import type { OwnerKey, VmRecord } from '../../src/store/store.js';
import {
  collectStatus,
  consoleLines,
  formatDuration,
  formatStatus,
  formatTable,
  isKnownVm,
  listVmNames,
  parseProcStatCpu,
  procCpuSeconds,
  statusJson,
  type StatusSources,
} from '../../src/ops/vm-status.js';

const root = mkdtempSync(join(tmpdir(), 'sshvisor-status-'));
after(() => rmSync(root, { recursive: true, force: true }));

const NOW = Date.parse('2026-11-22T10:00:00Z');
const record = (name: string, fields: Partial<VmRecord> = {}): VmRecord => ({
  name,
  createdAt: NOW - 3600_000,
  lastBootAt: null,
  lastExitReason: null,
  lastExitDetail: null,
  lastExitAt: null,
  boots: 0,
  lastSuspendAt: null,
  lastResumeAt: null,
  suspends: 0,
  resumes: 0,
  shape: null,
  ...fields,
});

function sources(opts: { runtime?: Record<string, VmRuntime>; records?: VmRecord[]; owners?: Record<string, string[]>; console?: Record<string, string> } = {}): StatusSources {
  const dataDir = mkdtempSync(join(root, 'data-'));
  const runtime = opts.runtime ?? {};
  const records = opts.records ?? [];
  return {
    dataDir,
    kernel: 'Linux 6.1.0-test',
    defaults: { image: 'default', memoryMiB: 256, cpus: 2, diskMiB: 1024 },
    manager: { inspect: (n) => runtime[n], names: () => Object.keys(runtime) },
    store: {
      getVm: (n) => records.find((r) => r.name === n),
      listVms: () => records,
      ownersOf: (n) => (opts.owners?.[n] ?? []).map((fingerprint): OwnerKey => ({ vm: n, fingerprint, publicKey: '', addedAt: 0 })),
    },
    console: {
      history: (n, o) => {
        const lines = (opts.console?.[n] ?? '').split(/(?<=\n)/);
        return Buffer.from(o.lines === undefined ? lines.join('') : lines.slice(-o.lines).join(''));
      },
      viewers: () => 1,
    },
    now: () => NOW,
    cpuSeconds: () => 12.5,
  };
}

function suspendOnDisk(src: StatusSources, name: string, takenAt: number): void {
  const dir = join(src.dataDir, 'vms', name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'snapshot.json'),
    JSON.stringify({ format: 1, takenAt, hypervisor: 'qemu 7.2', image: 'x', memoryMiB: 256, cpus: 2, stateBytes: 1, stateSha256: 'x' }),
  );
}

describe('collectStatus', () => {
  test('a running VM: uptime, CPU time, sessions, console tail', () => {
    const src = sources({
      runtime: { alice: { state: 'running', pid: 4242, startedAt: NOW - 125_000, resumedFrom: undefined, sessions: 2 } },
      records: [record('alice', { boots: 3, lastBootAt: NOW - 125_000 })],
      owners: { alice: ['SHA256:abcdefghijklmnop'] },
      console: { alice: Array.from({ length: 15 }, (_, i) => `line ${i}\r\n`).join('') },
    });
    const r = collectStatus(src, 'alice');
    assert.equal(r.state, 'running');
    assert.equal(r.uptimeSeconds, 125);
    assert.equal(r.cpuSeconds, 12.5);
    assert.equal(r.sessions, 2);
    assert.equal(r.consoleViewers, 1);
    assert.equal(r.vcpus, 2);
    assert.deepEqual(r.console, Array.from({ length: 10 }, (_, i) => `line ${i + 5}`));
    const text = formatStatus(r, { now: () => NOW });
    assert.match(text, /^alice\n {2}state {6}running\n/);
    assert.match(text, /uptime {5}2m 05s \(started 2026-11-22T09:57:55Z\)/);
    assert.match(text, /CPU time {3}12\.50 s/);
    assert.match(text, /sessions {3}2 \(and 1 console viewer\)/);
    assert.match(text, /booted {5}2026-11-22T09:57:55Z \(2m 05s ago; 3 boots\)/);
    assert.match(text, /last 10 console lines:\n {4}line 5\n/);
    assert.ok(!text.includes('\x1b'), 'no colour unless asked');
    assert.match(formatStatus(r, { color: true, eol: '\r\n' }), /\x1b\[32mrunning\x1b\[0m\r\n/);
  });

  test('a suspended VM: state from its snapshot, times from the store', () => {
    const src = sources({ records: [record('bob', { suspends: 1, lastSuspendAt: NOW - 60_000, lastExitReason: 'suspended', lastExitDetail: 'suspended to disk', lastExitAt: NOW - 60_000 })] });
    suspendOnDisk(src, 'bob', NOW - 61_000);
    const r = collectStatus(src, 'bob');
    assert.equal(r.state, 'suspended');
    assert.equal(r.suspendedSince, NOW - 61_000);
    assert.equal(r.cpuSeconds, null, 'no CPU time without a process');
    assert.equal(r.uptimeSeconds, null);
    const text = formatStatus(r, { now: () => NOW });
    assert.match(text, /state {6}suspended since 2026-11-22T09:58:59Z \(1m 01s ago\)/);
    assert.match(text, /last exit {2}suspended to disk, 2026-11-22T09:59:00Z/);
    const json = statusJson(r);
    assert.equal(json.state, 'suspended');
    assert.equal(json.lastSuspendAt, '2026-11-22T09:59:00.000Z');
  });

  test('crashed and stopped come from the last exit', () => {
    const src = sources({
      records: [
        record('carol', { lastExitReason: 'panic', lastExitDetail: 'guest kernel panic', lastExitAt: NOW }),
        record('dave', { lastExitReason: 'stopped', lastExitDetail: 'guest powered off on request', lastExitAt: NOW }),
        record('erin', { lastExitReason: 'crashed', lastExitDetail: 'qemu killed by SIGKILL', lastExitAt: NOW }),
      ],
    });
    assert.equal(collectStatus(src, 'carol').state, 'crashed');
    assert.equal(collectStatus(src, 'dave').state, 'stopped');
    assert.equal(collectStatus(src, 'erin').state, 'crashed');
    assert.match(formatStatus(collectStatus(src, 'dave')), /last exit {2}guest powered off on request \(stopped\), /);
    assert.match(formatStatus(collectStatus(src, 'carol')), /console: nothing captured yet/);
  });

  test('starting and stopping are reported as such; an exited entry falls back to the disk', () => {
    const src = sources({
      runtime: {
        a: { state: 'created', pid: undefined, startedAt: undefined, resumedFrom: undefined, sessions: 1 },
        b: { state: 'stopping', pid: 1, startedAt: NOW, resumedFrom: NOW - 5000, sessions: 0 },
        c: { state: 'exited', pid: undefined, startedAt: NOW, resumedFrom: undefined, sessions: 0 },
      },
    });
    assert.equal(collectStatus(src, 'a').state, 'starting');
    assert.equal(collectStatus(src, 'b').state, 'stopping');
    assert.equal(collectStatus(src, 'b').resumedThisRun, true);
    assert.equal(collectStatus(src, 'c').state, 'stopped');
  });

  test('known names: manager, store, owners or a directory', () => {
    const src = sources({ runtime: { run: { state: 'running', pid: 1, startedAt: NOW, resumedFrom: undefined, sessions: 0 } }, records: [record('rec')], owners: { own: ['SHA256:x'] } });
    mkdirSync(join(src.dataDir, 'vms', 'ondisk'), { recursive: true });
    mkdirSync(join(src.dataDir, 'vms', 'Not-A-Name'), { recursive: true });
    for (const n of ['run', 'rec', 'own', 'ondisk']) assert.ok(isKnownVm(src, n), n);
    assert.ok(!isKnownVm(src, 'nobody'));
    assert.ok(!isKnownVm(src, '../etc'));
    assert.deepEqual(listVmNames(src), ['ondisk', 'rec', 'run']);
  });
});

describe('helpers', () => {
  test('CPU time from /proc/PID/stat, command names with spaces and parentheses', () => {
    const stat = '1234 (qemu (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 3 0 100 1000 200';
    assert.equal(parseProcStatCpu(stat), 3.8);
    const self = procCpuSeconds(process.pid);
    assert.ok(self !== undefined && self >= 0);
    assert.equal(procCpuSeconds(2 ** 30), undefined);
  });

  test('console lines: escapes and control characters removed, \\r redraws keep the last text', () => {
    const raw = Buffer.from('\x1b[1;32mgreen\x1b[0m text\r\nprogress 10%\rprogress 100%\r\n\x07bell\ttab\r\n\x1b]0;title\x07after osc\n');
    assert.deepEqual(consoleLines(raw), ['green text', 'progress 100%', 'bell tab', 'after osc']);
  });

  test('durations', () => {
    assert.deepEqual([5, 65, 3725, 90000].map(formatDuration), ['5s', '1m 05s', '1h 02m', '1d 01h']);
  });

  test('the ls table is aligned, coloured only when asked, and cut to the terminal width', () => {
    const src = sources({
      runtime: { alice: { state: 'running', pid: 1, startedAt: NOW - 5000, resumedFrom: undefined, sessions: 1 } },
      records: [record('alice'), record('bob-the-builder', { lastExitReason: 'panic', lastExitDetail: 'guest panic' })],
      owners: { alice: ['SHA256:abcdefghijklmnop', 'SHA256:zzz'] },
      console: { alice: 'x'.repeat(200) + '\n', 'bob-the-builder': 'Kernel panic - not syncing\n' },
    });
    const reports = ['alice', 'bob-the-builder'].map((n) => collectStatus(src, n, { consoleLines: 1 }));
    const plain = formatTable(reports);
    const lines = plain.trimEnd().split('\n');
    assert.equal(lines.length, 3);
    const col = lines[0]!.indexOf('STATE');
    assert.equal(lines[1]!.indexOf('running'), col);
    assert.equal(lines[2]!.indexOf('crashed'), col);
    assert.match(lines[1]!, /^alice +SHA256:abcdefgh \+1 +running +default +2cpu\/256M\/1024M +5s +1 +x{200}$/);
    assert.match(lines[2]!, /crashed +- +2cpu\/256M\/1024M +- +0 +Kernel panic - not syncing$/);
    assert.ok(!plain.includes('\x1b'));
    const narrow = formatTable(reports, { columns: 100 });
    assert.ok(narrow.split('\n').every((l) => l.length <= 100), 'fits 100 columns');
    assert.match(narrow, /x+\.\.\.\n/);
    const coloured = formatTable(reports, { color: true, eol: '\r\n' });
    assert.match(coloured, /\x1b\[1;31mcrashed\x1b\[0m/);
    assert.equal(coloured.replace(/\x1b\[[0-9;]*m/g, ''), plain.replace(/\n/g, '\r\n'), 'same layout as plain');
  });
});
