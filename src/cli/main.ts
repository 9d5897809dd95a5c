#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { UserError } from '../util/errors.js';
import { registerImageCommands } from './image-command.js';
import { registerServeCommand } from './serve-command.js';
import { registerGrantCommands } from './grant-command.js';
import { registerOpsCommands } from './ops-commands.js';

const program = new Command()
  .name('sshvisor')
  .description('An SSH server that is also a small hypervisor: `ssh alice@host` gets alice her own microVM.')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride();

registerImageCommands(program);
registerServeCommand(program);
registerGrantCommands(program);
registerOpsCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  if (err instanceof UserError) {
    process.stderr.write(`sshvisor: ${err.message}\n`);
    process.exit(1);
  }
  throw err;
}
