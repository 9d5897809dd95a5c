import type { ServerChannel } from 'ssh2';

/**
 * While a VM boots for an interactive session, one status line that counts
 * up in place; it is erased when the shell appears. Exec sessions get none,
 * so their stdout is exactly the command's.
 */
export class BootProgress {
  private timer?: NodeJS.Timeout;
  private startedAt = 0;

  constructor(
    private readonly stream: ServerChannel,
    private readonly vmName: string,
  ) {}

  start(): void {
    if (this.timer) return;
    this.startedAt = Date.now();
    this.draw();
    this.timer = setInterval(() => this.draw(), 250);
  }

  stop(ok: boolean): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.stream.destroyed) return;
    const secs = ((Date.now() - this.startedAt) / 1000).toFixed(1);
    this.stream.write(ok ? `\r\x1b[Ksshvisor: ${this.vmName} is up (${secs}s)\r\n` : '\r\x1b[K');
  }

  private draw(): void {
    if (this.stream.destroyed) return;
    const secs = ((Date.now() - this.startedAt) / 1000).toFixed(1);
    this.stream.write(`\r\x1b[Ksshvisor: starting VM ${this.vmName}... ${secs}s`);
  }
}
