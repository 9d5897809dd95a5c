import { resolve } from 'node:path';
import type { Command } from 'commander';
import { sendControlCommand } from '../ops/control-socket.js';
import { defaultDataDir } from '../util/paths.js';

/**
 * `sshvisor ls|status|stop|suspend|resume|rm|logs`: the operator's commands
 * from the host's shell, run by the server that owns the data dir through
 * its control socket (DATA_DIR/control.sock). The server parses and checks
 * them, exactly as for `ssh admin@host CMD`.
 */
export function registerOpsCommands(program: Command): void {
  const add = (name: string, description: string, args: string[], extra?: (cmd: Command) => void): void => {
    const cmd = program.command(name).description(description);
    for (const a of args) cmd.argument(a);
    cmd.option('--data-dir <dir>', 'the data directory of the running server (default: as for serve) [SSHVISOR_DATA_DIR]');
    extra?.(cmd);
    cmd.action(async (...params: unknown[]) => {
      const opts = params[args.length] as { dataDir?: string; json?: boolean; yes?: boolean; image?: string; memory?: string; cpus?: string; diskSize?: string };
      const positional = params.slice(0, args.length) as string[];
      const shape = (['image', 'memory', 'cpus', 'diskSize'] as const).flatMap((k) =>
        opts[k] === undefined ? [] : [`--${k === 'diskSize' ? 'disk-size' : k}`, opts[k]!],
      );
      const argv = [name, ...positional, ...(opts.json ? ['--json'] : []), ...(opts.yes ? ['--yes'] : []), ...shape];
      // `sshvisor logs alice | head`: a reader that stops early is not an error.
      process.stdout.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
        throw err;
      });
      const tty = process.stdout.isTTY === true;
      const code = await sendControlCommand(
        resolve(opts.dataDir ?? defaultDataDir()),
        { argv, color: tty && !process.env.NO_COLOR, columns: tty ? process.stdout.columns : undefined },
        {
          stdout: (data) => process.stdout.write(data),
          stderr: (line) => process.stderr.write(`sshvisor: ${line}\n`),
        },
      );
      process.exitCode = code;
    });
  };
  const json = (cmd: Command): void => void cmd.option('--json', 'print JSON');
  add('ls', 'list every VM: name, owner, state, uptime, memory, sessions, last console line', [], json);
  add('status', "one VM's status report", ['<name>'], json);
  add('stop', 'power a VM off (a suspended one: delete its saved state)', ['<name>']);
  add('suspend', 'suspend a VM to disk now', ['<name>']);
  add('resume', 'resume (or boot) a VM without a session; the idle timeout then applies', ['<name>']);
  add('rm', 'stop a VM and delete it: disk, snapshot, console log, owners and grants', ['<name>'], (cmd) =>
    void cmd.option('--yes', 'really delete it'),
  );
  add('logs', "print a VM's console history", ['<name>']);
  add('create', 'create a VM with its own image and shape (the server\'s maximums apply); its first login boots it', ['<name>'], (cmd) =>
    void cmd
      .option('--image <name>', 'image from `sshvisor image ls` (default: the server\'s --image)')
      .option('--memory <mib>', 'memory in MiB (default: the server\'s --memory)')
      .option('--cpus <n>', 'vCPUs (default: the server\'s --cpus)')
      .option('--disk-size <mib>', 'disk in MiB (default: the server\'s --disk-size)'),
  );
}
