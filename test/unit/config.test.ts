import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { loadConfig, registerServeOptions } from '../../src/config/load-config.js';
import { UserError } from '../../src/util/errors.js';
import { defaultDataDir } from '../../src/util/paths.js';

const dir = mkdtempSync(join(tmpdir(), 'sshvisor-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function configFile(contents: unknown): string {
  const path = join(dir, `config-${n++}.json`);
  writeFileSync(path, typeof contents === 'string' ? contents : JSON.stringify(contents));
  return path;
}

/** What `sshvisor serve ARGS` would hand to loadConfig. */
function flagsFrom(args: string[]): Record<string, unknown> {
  const cmd = registerServeOptions(new Command().exitOverride());
  cmd.parse(args, { from: 'user' });
  return cmd.opts();
}

function rejects(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UserError, `expected a UserError, got ${String(err)}`);
    assert.equal(err.message, message);
    return true;
  });
}

describe('loadConfig', () => {
  test('defaults', () => {
    const c = loadConfig({ flags: {}, env: {}, cwd: '/' });
    const dataDir = defaultDataDir();
    assert.deepEqual(c, {
      listen: '127.0.0.1',
      port: 2222,
      dataDir,
      memory: 256,
      cpus: 1,
      maxVms: 8,
      accel: 'auto',
      allowInternet: false,
      auth: 'claim',
      keysDir: join(dataDir, 'keys'),
      idleTimeout: 300,
      snapshotRetention: 604800,
      diskSize: 1024,
      imageDir: join(dataDir, 'images', 'default'),
      bootTimeout: 120,
      logLevel: 'info',
      consoleBuffer: 1024 * 1024,
      consoleReplay: 100,
      consoleLogSize: 4 * 1024 * 1024,
      consoleTcpPublic: false,
      httpPublic: false,
      consoleOnly: false,
      templates: true,
      hungTimeout: 30,
      restart: 'never',
      restartMax: 5,
      restartWindow: 600,
      loginGraceTime: 60,
      maxStartups: '256:30:1024',
      maxAuthTries: 6,
      maxAuthFailures: 30,
      authFailureWindow: 60,
      maxSessions: 10,
      maxChannels: 32,
      maxUserSessions: 256,
      agentForwarding: 'on',
      remoteForwarding: 'on',
      image: 'default',
      userImages: [],
      maxMemory: 4096,
      maxCpus: 4,
      maxDiskSize: 65536,
    });
    assert.ok(Object.isFrozen(c));
  });

  test('connection limits: flags, env, and MaxStartups syntax', () => {
    const c = loadConfig({ flags: { maxStartups: '10:30:100', maxAuthTries: '3' }, env: { SSHVISOR_LOGIN_GRACE_TIME: '0', SSHVISOR_MAX_SESSIONS: '2' }, cwd: '/' });
    assert.equal(c.maxStartups, '10:30:100');
    assert.equal(c.maxAuthTries, 3);
    assert.equal(c.loginGraceTime, 0);
    assert.equal(c.maxSessions, 2);
    assert.equal(loadConfig({ flags: { maxStartups: '5' }, env: {}, cwd: '/' }).maxStartups, '5');
    rejects(() => loadConfig({ flags: { maxStartups: '10:30' }, env: {} }), 'invalid --max-startups "10:30": must be N or START:RATE:FULL, e.g. 10:30:100');
    rejects(() => loadConfig({ flags: { maxStartups: '10:30:5' }, env: {} }), 'invalid --max-startups "10:30:5": needs 1 <= START <= FULL');
    rejects(() => loadConfig({ flags: { maxStartups: '1:101:2' }, env: {} }), 'invalid --max-startups "1:101:2": RATE is a percentage, 0 to 100');
    rejects(() => loadConfig({ flags: {}, env: { SSHVISOR_MAX_AUTH_TRIES: '0' } }), 'invalid SSHVISOR_MAX_AUTH_TRIES "0": must be an integer from 1 to 1000');
  });

  test('sizes: 1MiB, 512KiB, plain bytes; a bad one names the field', () => {
    assert.equal(loadConfig({ flags: { consoleBuffer: '512KiB' }, env: {}, cwd: '/' }).consoleBuffer, 512 * 1024);
    assert.equal(loadConfig({ flags: {}, env: { SSHVISOR_CONSOLE_BUFFER: '2MiB' }, cwd: '/' }).consoleBuffer, 2 * 1024 * 1024);
    assert.equal(loadConfig({ flags: { consoleLogSize: '65536' }, env: {}, cwd: '/' }).consoleLogSize, 65536);
    assert.throws(() => loadConfig({ flags: { consoleBuffer: 'lots' }, env: {}, cwd: '/' }), /invalid --console-buffer "lots": must be a size/);
    assert.throws(() => loadConfig({ flags: { consoleTcp: '127.0.0.1' }, env: {}, cwd: '/' }), /invalid --console-tcp "127.0.0.1": must be HOST:PORT/);
  });

  test('--admin-keys is off by default and a path relative to the cwd', () => {
    assert.equal(loadConfig({ flags: {}, env: {}, cwd: '/' }).adminKeys, undefined);
    assert.equal(loadConfig({ flags: { adminKeys: 'ops.keys' }, env: {}, cwd: '/etc/sshvisor' }).adminKeys, '/etc/sshvisor/ops.keys');
    assert.equal(loadConfig({ flags: {}, env: { SSHVISOR_ADMIN_KEYS: '/k' }, cwd: '/' }).adminKeys, '/k');
    assert.deepEqual(flagsFrom(['--admin-keys', 'f']), { adminKeys: 'f' });
  });

  test('commander applies no defaults, so an absent flag stays absent', () => {
    assert.deepEqual(flagsFrom([]), {});
    assert.deepEqual(flagsFrom(['--max-vms', '3', '--allow-internet']), { maxVms: '3', allowInternet: true });
    assert.deepEqual(flagsFrom(['--no-allow-internet']), { allowInternet: false });
  });

  test('precedence: flags > env > config file > defaults', () => {
    const file = configFile({ port: 1001, memory: 512, cpus: 2, maxVms: 3 });
    const env = { SSHVISOR_CONFIG: file, SSHVISOR_PORT: '1002', SSHVISOR_MEMORY: '1024' };
    const c = loadConfig({ flags: flagsFrom(['--port', '1003']), env });
    assert.equal(c.port, 1003, 'flag beats env and file');
    assert.equal(c.memory, 1024, 'env beats file');
    assert.equal(c.cpus, 2, 'file beats default');
    assert.equal(c.maxVms, 3);
    assert.equal(c.diskSize, 1024, 'default');
  });

  test('--config beats SSHVISOR_CONFIG', () => {
    const a = configFile({ port: 1111 });
    const b = configFile({ port: 2222 });
    assert.equal(loadConfig({ flags: flagsFrom(['--config', a]), env: { SSHVISOR_CONFIG: b } }).port, 1111);
  });

  test('keysDir and imageDir follow dataDir unless set', () => {
    const c = loadConfig({ flags: flagsFrom(['--data-dir', '/srv/sv', '--auth', 'keys']), env: {} });
    assert.equal(c.keysDir, '/srv/sv/keys');
    assert.equal(c.imageDir, '/srv/sv/images/default');
    const d = loadConfig({ flags: { dataDir: '/srv/sv' }, env: { SSHVISOR_KEYS_DIR: '/etc/sv-keys' } });
    assert.equal(d.keysDir, '/etc/sv-keys');
  });

  test('relative paths: flags and env against cwd, config file against its directory', () => {
    assert.equal(loadConfig({ flags: { dataDir: 'state' }, env: {}, cwd: '/home/a' }).dataDir, '/home/a/state');
    assert.equal(loadConfig({ flags: {}, env: { SSHVISOR_IMAGE_DIR: 'img' }, cwd: '/x' }).imageDir, '/x/img');
    const file = configFile({ dataDir: 'state' });
    assert.equal(loadConfig({ flags: { config: file }, env: {}, cwd: '/' }).dataDir, join(dir, 'state'));
  });

  test('env booleans', () => {
    for (const [text, value] of [
      ['1', true],
      ['true', true],
      ['TRUE', true],
      ['0', false],
      ['false', false],
    ] as const) {
      assert.equal(loadConfig({ flags: {}, env: { SSHVISOR_ALLOW_INTERNET: text } }).allowInternet, value, text);
    }
    assert.equal(loadConfig({ flags: {}, env: { SSHVISOR_ALLOW_INTERNET: '' } }).allowInternet, false, 'empty = unset');
    rejects(
      () => loadConfig({ flags: {}, env: { SSHVISOR_ALLOW_INTERNET: 'maybe' } }),
      'invalid SSHVISOR_ALLOW_INTERNET "maybe": must be true or false',
    );
    const c = loadConfig({ flags: flagsFrom(['--no-allow-internet']), env: { SSHVISOR_ALLOW_INTERNET: '1' } });
    assert.equal(c.allowInternet, false, '--no-allow-internet beats the env');
  });

  test('env names are SSHVISOR_ + UPPER_SNAKE', () => {
    const c = loadConfig({
      flags: {},
      env: { SSHVISOR_MAX_VMS: '2', SSHVISOR_IDLE_TIMEOUT: '0', SSHVISOR_BOOT_TIMEOUT: '30', SSHVISOR_LOG_LEVEL: 'debug' },
    });
    assert.equal(c.maxVms, 2);
    assert.equal(c.idleTimeout, 0);
    assert.equal(c.bootTimeout, 30);
    assert.equal(c.logLevel, 'debug');
  });

  test('error messages name the field and the source', () => {
    rejects(() => loadConfig({ flags: flagsFrom(['--port', '70000']), env: {} }), 'invalid --port "70000": must be an integer from 1 to 65535');
    rejects(() => loadConfig({ flags: { port: '22x' }, env: {} }), 'invalid --port "22x": must be an integer from 1 to 65535');
    rejects(() => loadConfig({ flags: { port: '1.5' }, env: {} }), 'invalid --port "1.5": must be an integer from 1 to 65535');
    rejects(() => loadConfig({ flags: {}, env: { SSHVISOR_PORT: '0' } }), 'invalid SSHVISOR_PORT "0": must be an integer from 1 to 65535');
    rejects(() => loadConfig({ flags: { accel: 'foo' }, env: {} }), 'invalid --accel "foo": must be one of auto, kvm, tcg');
    rejects(() => loadConfig({ flags: { auth: 'none' }, env: {} }), 'invalid --auth "none": must be one of claim, keys, open');
    rejects(() => loadConfig({ flags: { memory: '32' }, env: {} }), 'invalid --memory "32": must be an integer from 64 to 65536');
    rejects(() => loadConfig({ flags: { cpus: '65' }, env: {} }), 'invalid --cpus "65": must be an integer from 1 to 64');
    rejects(() => loadConfig({ flags: {}, env: { SSHVISOR_MAX_VMS: '0' } }), 'invalid SSHVISOR_MAX_VMS "0": must be an integer >= 1');
    rejects(() => loadConfig({ flags: { idleTimeout: '-1' }, env: {} }), 'invalid --idle-timeout "-1": must be an integer >= 0');
    rejects(() => loadConfig({ flags: { listen: 'not a host' }, env: {} }), 'invalid --listen "not a host": must be an IP address or hostname');
    rejects(() => loadConfig({ flags: { dataDir: '' }, env: {} }), 'invalid --data-dir "": must be a non-empty path');
    rejects(() => loadConfig({ flags: { logLevel: 'loud' }, env: {} }), 'invalid --log-level "loud": must be one of fatal, error, warn, info, debug, trace, silent');
  });

  test('a bad value is reported even when a higher source overrides it', () => {
    rejects(() => loadConfig({ flags: { port: '22' }, env: { SSHVISOR_PORT: 'x' } }), 'invalid SSHVISOR_PORT "x": must be an integer from 1 to 65535');
  });

  test('config file errors', () => {
    const typo = configFile({ prot: 22 });
    rejects(() => loadConfig({ flags: { config: typo }, env: {} }), `config file ${typo}: unknown key "prot" (known keys: listen, port, dataDir, memory, cpus, maxVms, accel, allowInternet, auth, keysDir, idleTimeout, snapshotRetention, diskSize, imageDir, bootTimeout, logLevel, consoleBuffer, consoleReplay, consoleLogSize, consoleTcp, consoleTcpPublic, http, httpPublic, kernel, initrd, append, consoleOnly, templates, adminKeys, hungTimeout, restart, restartMax, restartWindow, loginGraceTime, maxStartups, maxAuthTries, maxAuthFailures, authFailureWindow, maxSessions, maxChannels, maxUserSessions, agentForwarding, remoteForwarding, image, userImages, rootfs, maxMemory, maxCpus, maxDiskSize)`);
    const bigPort = configFile({ port: 70000 });
    rejects(() => loadConfig({ flags: { config: bigPort }, env: {} }), `config file ${bigPort}: invalid "port" 70000: must be an integer from 1 to 65535`);
    const stringPort = configFile({ port: '22' });
    rejects(() => loadConfig({ flags: { config: stringPort }, env: {} }), `config file ${stringPort}: invalid "port" "22": must be an integer from 1 to 65535`);
    const badBool = configFile({ allowInternet: 'yes' });
    rejects(() => loadConfig({ flags: { config: badBool }, env: {} }), `config file ${badBool}: invalid "allowInternet" "yes": must be true or false`);
    const notJson = configFile('{port: 22');
    assert.throws(() => loadConfig({ flags: { config: notJson }, env: {} }), (err: Error) => err instanceof UserError && err.message.startsWith(`config file ${notJson}: not valid JSON: `));
    const array = configFile([1]);
    rejects(() => loadConfig({ flags: { config: array }, env: {} }), `config file ${array}: must be a JSON object, e.g. {"port": 2222}`);
    const missing = join(dir, 'nope.json');
    rejects(() => loadConfig({ flags: {}, env: { SSHVISOR_CONFIG: missing } }), `config file ${missing}: cannot read it: no such file`);
    rejects(() => loadConfig({ flags: { config: dir }, env: {} }), `config file ${dir}: cannot read it: EISDIR: illegal operation on a directory, read`);
  });

  test('a config file may set every field', () => {
    const file = configFile({
      listen: '::',
      port: 22,
      dataDir: '/d',
      memory: 64,
      cpus: 64,
      maxVms: 100,
      accel: 'tcg',
      allowInternet: true,
      auth: 'open',
      keysDir: '/k',
      idleTimeout: 0,
      diskSize: 2048,
      imageDir: '/i',
      bootTimeout: 5,
      logLevel: 'warn',
    });
    const c = loadConfig({ flags: { config: file }, env: {} });
    assert.equal(c.listen, '::');
    assert.equal(c.allowInternet, true);
    assert.equal(c.keysDir, '/k');
    assert.equal(c.imageDir, '/i');
  });
});
