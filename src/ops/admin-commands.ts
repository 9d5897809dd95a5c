import { errorMessage } from '../util/errors.js';
import { ADMIN_NAME, parseUsername, quoteForDisplay } from '../ssh/routing.js';
import { isValidVmName } from '../vm/vm-name.js';
import type { StopResult, SuspendResult } from '../manager/vm-manager.js';
import type { ShapeRequest } from '../manager/vm-shape.js';
import { isImageNameForm } from '../image/image-name.js';
import type { VmShape } from '../store/store.js';
import { formatStatus, formatTable, statusJson, type VmStatusReport } from './vm-status.js';

/**
 * The operator's commands, the same over `ssh admin@host CMD` and
 * `sshvisor CMD` (through the control socket): parsed here in one place,
 * run against the small AdminOps interface, output written to a CommandIo.
 *
 * Exit status: 0 done (or nothing to do), 1 it could not be done, 2 the
 * command itself is wrong (unknown command, bad or unknown name, rm without
 * --yes).
 */

export type AdminCommand =
  | { cmd: 'help' }
  | { cmd: 'ls'; json: boolean }
  | { cmd: 'status'; name: string; json: boolean }
  | { cmd: 'stop' | 'suspend' | 'resume' | 'logs' | 'watch'; name: string }
  | { cmd: 'rm'; name: string; yes: boolean }
  | { cmd: 'create'; name: string; request: ShapeRequest };

export type ParseResult = { ok: true; command: AdminCommand } | { ok: false; error: string };

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

const USAGE: readonly [string, string][] = [
  ['ls [--json]', 'every VM: name, owner, state, uptime, memory, sessions, last console line'],
  ['status NAME [--json]', "one VM's status report"],
  ['stop NAME', 'power the VM off (a suspended VM: delete its saved state)'],
  ['suspend NAME', 'suspend the VM to disk now'],
  ['resume NAME', 'resume (or boot) the VM without a session; the idle timeout then applies'],
  ['rm NAME --yes', "stop the VM and delete it: disk, snapshot, console log, owners and grants"],
  ['create NAME [--image I] [--memory MiB] [--cpus N] [--disk-size MiB]', 'create a VM with its own image and shape; its first login boots it'],
  ['logs NAME', "the VM's console history"],
  ['watch NAME', "the VM's console, live and read-only (over SSH)"],
];

const COMMANDS = ['help', 'ls', 'status', 'stop', 'suspend', 'resume', 'rm', 'create', 'logs', 'watch'] as const;

export function usage(eol = '\n'): string {
  const width = Math.max(...USAGE.map(([c]) => c.length)) + 2;
  return ['commands:', ...USAGE.map(([c, what]) => `  ${c.padEnd(width)}${what}`)].join(eol) + eol;
}

/** Split an SSH exec command line: plain whitespace-separated words (names and flags need no quoting). */
export function splitCommandLine(line: string): string[] {
  return line.trim().split(/\s+/).filter(Boolean);
}

function nameError(arg: string): string | undefined {
  if (isValidVmName(arg)) return undefined;
  const parsed = parseUsername(arg);
  return parsed.ok ? `invalid VM name ${quoteForDisplay(arg)}` : parsed.reason;
}

/** Parse `CMD [NAME] [flags]`; every error is one line naming what is wrong. */
export function parseAdminCommand(argv: readonly string[]): ParseResult {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') return { ok: true, command: { cmd: 'help' } };
  if (!(COMMANDS as readonly string[]).includes(cmd)) {
    return { ok: false, error: `unknown command ${quoteForDisplay(cmd)}; commands: ${COMMANDS.filter((c) => c !== 'help').join(', ')} (help lists them)` };
  }
  if (cmd === 'create') return parseCreate(rest);
  const flags = rest.filter((a) => a.startsWith('-'));
  const args = rest.filter((a) => !a.startsWith('-'));
  const allowed: Record<string, readonly string[]> = { ls: ['--json', 'json'], status: ['--json', 'json'], rm: ['--yes', '-y'] };
  const ok = allowed[cmd] ?? [];
  // "json" may also be given bare: `ssh admin@host ls json`, as for +status.
  const jsonWord = ok.includes('json') && args[args.length - 1] === 'json' && (cmd === 'ls' || args.length > 1);
  const positional = jsonWord ? args.slice(0, -1) : args;
  const badFlag = flags.find((f) => !ok.includes(f));
  if (badFlag !== undefined) {
    const known = ok.filter((f) => f.startsWith('-'));
    return { ok: false, error: `${cmd}: unknown option ${quoteForDisplay(badFlag)}${known.length ? ` (it takes ${known.join(', ')})` : ''}` };
  }
  const json = jsonWord || flags.includes('--json');
  if (cmd === 'ls') {
    if (positional.length > 0) return { ok: false, error: `ls takes no VM name (got ${quoteForDisplay(positional[0]!)}); for one VM: status NAME` };
    return { ok: true, command: { cmd: 'ls', json } };
  }
  if (positional.length === 0) return { ok: false, error: `${cmd} needs a VM name: ${cmd} NAME` };
  if (positional.length > 1) return { ok: false, error: `${cmd} takes one VM name, got ${positional.length}: ${positional.map((a) => quoteForDisplay(a)).join(' ')}` };
  const name = positional[0]!;
  const bad = nameError(name);
  if (bad) return { ok: false, error: bad };
  switch (cmd) {
    case 'status':
      return { ok: true, command: { cmd, name, json } };
    case 'rm':
      return { ok: true, command: { cmd, name, yes: flags.includes('--yes') || flags.includes('-y') } };
    default:
      return { ok: true, command: { cmd: cmd as 'stop' | 'suspend' | 'resume' | 'logs' | 'watch', name } };
  }
}

const CREATE_OPTIONS = { '--image': 'image', '--memory': 'memoryMiB', '--cpus': 'cpus', '--disk-size': 'diskMiB' } as const;

/** `create NAME [--image I] [--memory MiB] [--cpus N] [--disk-size MiB]`, each option as `--opt VALUE` or `--opt=VALUE`. */
function parseCreate(rest: readonly string[]): ParseResult {
  const request: ShapeRequest = {};
  const names: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (!arg.startsWith('-')) {
      names.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const key = (CREATE_OPTIONS as Record<string, keyof ShapeRequest>)[flag];
    if (!key) return { ok: false, error: `create: unknown option ${quoteForDisplay(arg)} (it takes ${Object.keys(CREATE_OPTIONS).join(', ')})` };
    const value = eq > 0 ? arg.slice(eq + 1) : rest[++i];
    if (value === undefined || value === '') return { ok: false, error: `create: ${flag} needs a value` };
    if (key === 'image') {
      if (!isImageNameForm(value)) return { ok: false, error: `create: invalid image name ${quoteForDisplay(value)}` };
      request.image = value;
    } else {
      if (!/^\d{1,9}$/.test(value)) return { ok: false, error: `create: ${flag} must be a whole number, not ${quoteForDisplay(value)}` };
      request[key] = Number(value);
    }
  }
  if (names.length !== 1) return { ok: false, error: names.length === 0 ? 'create needs a VM name: create NAME [--image I] ...' : `create takes one VM name, got ${names.length}` };
  const bad = nameError(names[0]!);
  if (bad) return { ok: false, error: bad };
  // `ssh admin@host` is the operators' account: a VM of that name could never be logged into.
  if (names[0] === ADMIN_NAME) return { ok: false, error: `${ADMIN_NAME} is the operators' account, not a VM name` };
  return { ok: true, command: { cmd: 'create', name: names[0]!, request } };
}

/** What the commands need from the server (see ops/vm-ops.ts). */
export interface AdminOps {
  names(): string[];
  isKnown(name: string): boolean;
  report(name: string, opts?: { consoleLines?: number }): VmStatusReport;
  stop(name: string): Promise<StopResult>;
  suspend(name: string): Promise<SuspendResult>;
  /** Bring it up without a session; resolves with the status after. */
  resume(name: string): Promise<{ already: boolean; report: VmStatusReport }>;
  remove(name: string): Promise<{ wasRunning: boolean }>;
  /** Create a VM with its own image and shape (VmManager.create); throws a UserError saying what is wrong. */
  create(name: string, request: ShapeRequest): VmShape;
  history(name: string): Buffer;
}

export interface CommandIo {
  out(data: string | Buffer): void;
  /** One line for stderr (without "sshvisor: " or a line end). */
  err(line: string): void;
  /** A terminal is on the other end: colour is welcome. */
  color: boolean;
  eol: string;
  /** Terminal width, when known. */
  columns?: number;
}

/**
 * Run a parsed command (except `watch`, which needs a live channel: the SSH
 * admin session serves it). Resolves with the exit status.
 */
export async function runAdminCommand(command: AdminCommand, ops: AdminOps, io: CommandIo): Promise<number> {
  const say = (line: string): void => io.out(line + io.eol);
  if (command.cmd === 'help') {
    io.out(usage(io.eol));
    return EXIT_OK;
  }
  if (command.cmd === 'ls') {
    const reports = ops.names().map((n) => ops.report(n, { consoleLines: 1 }));
    if (command.json) say(JSON.stringify(reports.map(statusJson)));
    else if (reports.length === 0) say('no VMs yet');
    else io.out(formatTable(reports, { color: io.color, eol: io.eol, columns: io.columns }));
    return EXIT_OK;
  }
  const { name } = command;
  if (command.cmd === 'create') {
    try {
      const shape = ops.create(name, command.request);
      say(`${name} created: image ${shape.image}, ${shape.memoryMiB} MiB, ${shape.cpus} vCPU${shape.cpus === 1 ? '' : 's'}, ${shape.diskMiB} MiB disk; its first login boots it`);
      return EXIT_OK;
    } catch (err) {
      io.err(`create ${name}: ${errorMessage(err)}`);
      return EXIT_FAILED;
    }
  }
  if (!ops.isKnown(name)) {
    io.err(`no VM named ${quoteForDisplay(name)} (ls lists them)`);
    return EXIT_USAGE;
  }
  try {
    switch (command.cmd) {
      case 'status': {
        const report = ops.report(name);
        if (command.json) say(JSON.stringify(statusJson(report)));
        else io.out(formatStatus(report, { color: io.color, eol: io.eol }));
        return EXIT_OK;
      }
      case 'logs':
        io.out(ops.history(name));
        return EXIT_OK;
      case 'stop': {
        const r = await ops.stop(name);
        if (r.kind === 'stopped') say(`${name} stopped: ${r.exit.detail}`);
        else if (r.kind === 'discarded') say(`${name} was suspended: its saved state is deleted, so it is stopped (its next start boots from its disk)`);
        else say(`${name} is not running (${ops.report(name, { consoleLines: 0 }).state})`);
        return EXIT_OK;
      }
      case 'suspend': {
        const r = await ops.suspend(name);
        if (r.kind === 'suspended') {
          say(`${name} suspended to disk`);
          return EXIT_OK;
        }
        if (r.kind === 'not-running') {
          say(`${name} is not running (${ops.report(name, { consoleLines: 0 }).state})`);
          return EXIT_OK;
        }
        io.err(`${name} could not be suspended${r.error ? `: ${r.error}` : ''}${r.exit ? `; it ended instead: ${r.exit.detail}` : '; it keeps running'}`);
        return EXIT_FAILED;
      }
      case 'resume': {
        const { already, report } = await ops.resume(name);
        say(already ? `${name} is already running` : `${name} is running (${report.resumedThisRun ? 'resumed from its snapshot' : 'booted from its disk'})`);
        return EXIT_OK;
      }
      case 'rm': {
        if (!command.yes) {
          io.err(`rm deletes ${name} for good (disk, snapshot, console log, owners, grants); to do it: rm ${name} --yes`);
          return EXIT_USAGE;
        }
        const { wasRunning } = await ops.remove(name);
        say(`${name} removed${wasRunning ? ' (its VM was running and has been killed)' : ''}`);
        return EXIT_OK;
      }
      case 'watch':
        io.err('watch needs a live console: use ssh -t admin@host watch NAME');
        return EXIT_USAGE;
    }
  } catch (err) {
    io.err(`${command.cmd} ${name}: ${errorMessage(err)}`);
    return EXIT_FAILED;
  }
}
