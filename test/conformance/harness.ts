import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import assert from 'node:assert/strict';
import { SshvisorServer, runProgramBytes, type RunBytes } from '../helpers/sshvisor-server.js';
import { BaselineSshd } from '../../bench/lib/ssh-servers.js';
import { DIFFERENCES, type DifferenceId } from './differences.js';

export const DOC = resolve(import.meta.dirname, '..', '..', '..', 'docs', 'ssh-differences.md');

/** The ids of docs/ssh-differences.md's `### id` headings. */
export function documentedIds(): string[] {
  return [...readFileSync(DOC, 'utf8').matchAll(/^### (\S+)\s*$/gm)].map((m) => m[1]!);
}

/** A case may tolerate a difference only if both the table and the doc list it. */
export function allow(id: DifferenceId): void {
  assert.ok(id in DIFFERENCES, `difference ${id} is not in test/conformance/differences.ts`);
  assert.ok(documentedIds().includes(id), `difference ${id} is not documented in docs/ssh-differences.md`);
}

/** One client run's exit and bytes. */
export type Run = RunBytes;

export type Side = 'sshvisor' | 'sshd';

export interface Target {
  side: Side;
  port: number;
  user: string;
  /** OpenSSH client options (no config file, this target's key and known_hosts), without the destination. */
  opts: string[];
  /** user@127.0.0.1 */
  dest: string;
}

/** Spawn a program; collect everything as bytes; SIGKILL after timeoutMs. */
export const run: (file: string, args: string[], o?: { input?: Buffer | string; timeoutMs?: number; env?: NodeJS.ProcessEnv }) => Promise<Run> = runProgramBytes;

/** What a case compares: text (latin1 keeps every byte) of stdout, stderr and the exit. */
export function view(r: Run): { code: number | null; signal: string | null; stdout: string; stderr: string } {
  return { code: r.code, signal: r.signal, stdout: r.stdout.toString('latin1'), stderr: r.stderr.toString('latin1') };
}

/** One sshvisor server (one VM) and one sshd, shared by every case; the same client key. */
export class Pair {
  readonly dir = mkdtempSync(join(tmpdir(), 'sshvisor-conformance-'));
  sshvisor!: SshvisorServer;
  sshd?: BaselineSshd;
  key = '';
  targets: Target[] = [];
  private children = new Set<ChildProcess>();

  async start(): Promise<void> {
    this.sshvisor = new SshvisorServer(['--idle-timeout', '0']);
    await this.sshvisor.start();
    this.key = this.sshvisor.makeKey('conformance');
    const pub = readFileSync(`${this.key}.pub`, 'utf8');
    this.sshd = await BaselineSshd.start({
      dir: this.dir,
      authorizedKeys: pub,
      // Debian's sshd_config: AcceptEnv LANG LC_*; SHELL too, to show sshd still ignores it.
      extraConfig: ['AcceptEnv LANG LC_* SHELL', 'MaxSessions 10'],
    });
    const mk = (side: Side, port: number, user: string): Target => ({
      side,
      port,
      user,
      dest: `${user}@127.0.0.1`,
      opts: [
        '-F', '/dev/null',
        '-p', String(port),
        '-i', this.key,
        '-o', 'IdentitiesOnly=yes',
        '-o', 'IdentityAgent=none',
        '-o', 'BatchMode=yes',
        '-o', 'StrictHostKeyChecking=accept-new',
        '-o', `UserKnownHostsFile=${join(this.dir, `known_hosts-${side}`)}`,
        '-o', 'ConnectTimeout=60',
        '-o', 'LogLevel=ERROR',
      ],
    });
    this.targets = [mk('sshvisor', this.sshvisor.port, 'conf'), mk('sshd', this.sshd.port, 'root')];
    // Boot the VM (and learn both host keys) before any case runs.
    for (const t of this.targets) {
      const r = await this.ssh(t, ['true'], { timeoutMs: 300_000 });
      assert.equal(r.code, 0, `${t.side}: first login failed: ${r.stderr.toString()}`);
    }
  }

  ssh(t: Target, args: string[], o: { input?: Buffer | string; timeoutMs?: number; env?: NodeJS.ProcessEnv; before?: string[] } = {}): Promise<Run> {
    // `before` first: ssh takes the first value of an option (e.g. LogLevel).
    return run('ssh', [...(o.before ?? []), ...t.opts, t.dest, ...args], o);
  }

  /** A long-running child that stop() kills (by pid) if the case did not. */
  track(child: ChildProcess): ChildProcess {
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  async stop(): Promise<void> {
    for (const c of this.children) {
      try {
        c.kill('SIGKILL');
      } catch {
        // gone
      }
    }
    await this.sshd?.stop();
    await this.sshvisor?.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
