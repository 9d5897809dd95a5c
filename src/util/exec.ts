import { spawn } from 'node:child_process';
import { UserError } from './errors.js';

export interface RunResult {
  stdout: string;
  stderr: string;
}

/**
 * Run a program to completion and collect its output. A non-zero exit becomes
 * a UserError carrying the program's own last stderr line, which is usually
 * the useful part ("No space left on device", "Unable to locate package").
 */
export function run(
  file: string,
  args: readonly string[],
  options: { cwd?: string; input?: Buffer | string; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (code === 0) return resolve({ stdout, stderr });
      const last = stderr.trim().split('\n').pop() ?? '';
      const how = signal ? `killed by ${signal}` : `exit ${code}`;
      reject(new UserError(`${file} ${args.join(' ')} failed (${how})${last ? `: ${last}` : ''}`));
    });
    // A program that exits without reading its stdin is not an error.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

/** What runStatus resolves with: the exit status (null if killed by a signal) and the whole output. */
export interface StatusResult extends RunResult {
  code: number | null;
}

/**
 * Run a program to completion and keep its exit status and output whatever
 * the status: for programs whose status is an answer (e2fsck, tar -t), not
 * just success or failure.
 */
export function runStatus(file: string, args: readonly string[]): Promise<StatusResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
  });
}
