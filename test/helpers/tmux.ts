import { spawnSync } from 'node:child_process';

/**
 * A terminal for interactive tests: a detached tmux session on a private
 * socket, driven with send-keys and read with capture-pane.
 */
export class TmuxTerminal {
  private readonly socket = `sshvisor-test-${process.pid}-${Math.random().toString(36).slice(2)}`;

  constructor(command: string, cols = 100, rows = 30) {
    this.tmux('new-session', '-d', '-s', 'main', '-x', String(cols), '-y', String(rows), command);
  }

  private tmux(...args: string[]): string {
    const r = spawnSync('tmux', ['-L', this.socket, ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tmux ${args[0]} failed: ${r.stderr}`);
    return r.stdout;
  }

  type(text: string): void {
    this.tmux('send-keys', '-t', 'main', '-l', text);
    this.tmux('send-keys', '-t', 'main', 'Enter');
  }

  /** Type `text` as is, with no Enter after it. */
  literal(text: string): void {
    this.tmux('send-keys', '-t', 'main', '-l', text);
  }

  /** Press keys by tmux name (`Enter`, `C-c`, ...). */
  keys(...names: string[]): void {
    this.tmux('send-keys', '-t', 'main', ...names);
  }

  resize(cols: number, rows: number): void {
    this.tmux('resize-window', '-t', 'main', '-x', String(cols), '-y', String(rows));
  }

  screen(): string {
    return this.tmux('capture-pane', '-p', '-t', 'main', '-S', '-200');
  }

  async waitFor(pattern: RegExp, timeoutMs = 90_000): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = pattern.exec(this.screen());
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`terminal never showed ${pattern}; screen:\n${this.screen()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  close(): void {
    spawnSync('tmux', ['-L', this.socket, 'kill-server'], { stdio: 'ignore' });
  }
}
