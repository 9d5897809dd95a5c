import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { ManagerEvents } from '../../src/manager/vm-manager.js';
import type { VmStateName } from '../../src/ops/vm-status.js';
import { SshvisorMetrics } from '../../src/metrics/sshvisor-metrics.js';
import { parsePrometheusText, sample } from '../helpers/prometheus-text.js';

describe('SshvisorMetrics', () => {
  const setup = () => {
    const states: VmStateName[] = [];
    const console = { bytesCaptured: 0, viewerCount: 0 };
    const metrics = new SshvisorMetrics({ vmStates: () => states, console });
    const manager = new EventEmitter<ManagerEvents>();
    metrics.watchManager(manager);
    const read = async () => parsePrometheusText(await metrics.render());
    return { states, console, metrics, manager, read };
  };

  test('exposes every metric, zeroed, as valid Prometheus text', async () => {
    const { metrics, read } = setup();
    assert.match(metrics.contentType, /^text\/plain; version=0\.0\.4/);
    const m = await read();
    for (const state of ['running', 'starting', 'stopping', 'suspended', 'stopped', 'crashed']) assert.equal(sample(m, `sshvisor_vms{state="${state}"}`), 0);
    assert.equal(sample(m, 'sshvisor_vm_boots_total{how="boot"}'), 0);
    assert.equal(sample(m, 'sshvisor_vm_boots_total{how="clone"}'), 0);
    assert.equal(sample(m, 'sshvisor_vm_resumes_total'), 0);
    assert.equal(sample(m, 'sshvisor_vm_suspends_total'), 0);
    assert.equal(sample(m, 'sshvisor_vm_resume_duration_seconds_count'), 0);
    assert.equal(sample(m, 'sshvisor_ssh_connections_total'), 0);
    assert.equal(sample(m, 'sshvisor_ssh_auth_failures_total'), 0);
    assert.equal(sample(m, 'sshvisor_console_bytes_captured_total'), 0);
    assert.equal(sample(m, 'sshvisor_console_viewers'), 0);
    assert.equal(m.types.get('sshvisor_vm_boot_duration_seconds'), 'histogram');
    assert.equal(m.types.get('sshvisor_vms'), 'gauge');
  });

  test('counts manager events and SSH events; reads states and console figures at scrape time', async () => {
    const { states, console, metrics, manager, read } = setup();
    manager.emit('vm-started', 'alice', 'boot');
    manager.emit('vm-ready', 'alice', 'boot', 3_500);
    manager.emit('vm-started', 'bob', 'clone');
    manager.emit('vm-ready', 'bob', 'clone', 400);
    manager.emit('vm-exit', 'alice', { reason: 'suspended', detail: 'suspended', code: null, signal: null, at: new Date() });
    manager.emit('vm-exit', 'bob', { reason: 'poweroff', detail: 'powered off', code: 0, signal: null, at: new Date() });
    manager.emit('vm-started', 'alice', 'resume');
    manager.emit('vm-ready', 'alice', 'resume', 900);
    metrics.ssh.connection();
    metrics.ssh.connection();
    metrics.ssh.authFailure();
    states.push('running', 'running', 'suspended');
    console.bytesCaptured = 12345;
    console.viewerCount = 3;
    const m = await read();
    assert.equal(sample(m, 'sshvisor_vm_boots_total{how="boot"}'), 1);
    assert.equal(sample(m, 'sshvisor_vm_boots_total{how="clone"}'), 1);
    assert.equal(sample(m, 'sshvisor_vm_resumes_total'), 1);
    assert.equal(sample(m, 'sshvisor_vm_suspends_total'), 1);
    assert.equal(sample(m, 'sshvisor_vm_boot_duration_seconds_count{how="boot"}'), 1);
    assert.equal(sample(m, 'sshvisor_vm_boot_duration_seconds_sum{how="boot"}'), 3.5);
    assert.equal(sample(m, 'sshvisor_vm_boot_duration_seconds_bucket{le="2",how="boot"}'), 0);
    assert.equal(sample(m, 'sshvisor_vm_boot_duration_seconds_bucket{le="4",how="boot"}'), 1);
    assert.equal(sample(m, 'sshvisor_vm_boot_duration_seconds_bucket{le="+Inf",how="boot"}'), 1);
    assert.equal(sample(m, 'sshvisor_vm_resume_duration_seconds_sum'), 0.9);
    assert.equal(sample(m, 'sshvisor_ssh_connections_total'), 2);
    assert.equal(sample(m, 'sshvisor_ssh_auth_failures_total'), 1);
    assert.equal(sample(m, 'sshvisor_vms{state="running"}'), 2);
    assert.equal(sample(m, 'sshvisor_vms{state="suspended"}'), 1);
    assert.equal(sample(m, 'sshvisor_vms{state="stopped"}'), 0);
    assert.equal(sample(m, 'sshvisor_console_bytes_captured_total'), 12345);
    assert.equal(sample(m, 'sshvisor_console_viewers'), 3);
    // A gauge follows its source down again.
    states.splice(0);
    assert.equal(sample(await read(), 'sshvisor_vms{state="running"}'), 0);
  });
});

describe('the test suite Prometheus reader', () => {
  test('rejects what is not the text format', () => {
    assert.throws(() => parsePrometheusText('a_metric 1\nthis is not a sample\n'), /line 2/);
    assert.throws(() => parsePrometheusText('# TYPE a_metric bogus\n'), /not a HELP or TYPE/);
    assert.throws(() => parsePrometheusText('a{b="c} 1\n'), /not a sample/);
    assert.throws(() => parsePrometheusText('a 1x\n'), /not a sample/);
    const ok = parsePrometheusText('# HELP a A thing.\n# TYPE a counter\na{b="x\\"y"} 2 1700000000000\nc +Inf\n');
    assert.equal(ok.samples.get('a{b="x\\"y"}'), 2);
    assert.equal(ok.samples.get('c'), Infinity);
  });
});
