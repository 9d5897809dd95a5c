import { spawnSync } from 'node:child_process';

/**
 * A real OpenSSH ssh-agent for a test, holding `keys`. OpenSSH's client asks
 * for agent forwarding (ssh -A) only when it can reach an agent. stop()
 * ends it by its pid.
 */
export function startSshAgent(keys: string[]): { sock: string; env: NodeJS.ProcessEnv; stop(): void } {
  const agent = spawnSync('ssh-agent', ['-s'], { encoding: 'utf8' });
  const sock = /SSH_AUTH_SOCK=([^;]+);/.exec(agent.stdout)?.[1];
  const pid = Number(/SSH_AGENT_PID=(\d+);/.exec(agent.stdout)?.[1]);
  if (!sock || !pid) throw new Error(`ssh-agent did not start: ${agent.stdout}${agent.stderr}`);
  const env = { ...process.env, SSH_AUTH_SOCK: sock };
  const stop = (): void => {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone already
    }
  };
  for (const key of keys) {
    const added = spawnSync('ssh-add', [key], { env, encoding: 'utf8' });
    if (added.status !== 0) {
      stop();
      throw new Error(`ssh-add ${key}: ${added.stderr}`);
    }
  }
  return { sock, env, stop };
}
