import type { ExitInfo, Vm } from '../vm/driver.js';

/** How long a cut session waits to learn that its VM has exited, and why. */
const EXIT_WAIT_MS = 2000;

/**
 * The one line a user sees when the guest goes away under an open session
 * (sshd would just drop the connection; a hypervisor knows why): the VM was
 * suspended, stopped, powered off, panicked, or its agent stopped answering.
 */
export async function cutNotice(vmName: string, vm: Vm): Promise<string> {
  const exit = await Promise.race([vm.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), EXIT_WAIT_MS).unref())]);
  return exit ? `${vmName}'s VM ${exitPhrase(vmName, exit)}; this session ended with it` : `the connection to ${vmName}'s VM was lost; this session ended`;
}

function exitPhrase(vmName: string, exit: ExitInfo): string {
  switch (exit.reason) {
    case 'suspended':
      return 'was suspended to disk (its processes are hung up when it resumes)';
    case 'stopped':
      return 'was stopped by an operator';
    case 'poweroff':
      return 'powered off';
    case 'reboot':
      return 'rebooted';
    case 'panic':
      return `crashed: the guest kernel panicked (see ssh ${vmName}+logs@host)`;
    case 'killed':
      return 'was killed';
    case 'crashed':
      return `crashed (${exit.detail})`;
  }
}
