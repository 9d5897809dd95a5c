import { EventEmitter } from 'node:events';
import type { ExitInfo, VmEvents } from '../../src/vm/driver.js';

/** Just enough of a Vm for console unit tests: console/exit events and a console input. */
export class FakeVm extends EventEmitter<VmEvents> {
  typed: string[] = [];
  /** `now` dates exit events that give no time of their own. */
  constructor(
    readonly name: string,
    private readonly now: () => Date = () => new Date(),
  ) {
    super();
  }
  writeConsole(data: Buffer | string): void {
    this.typed.push(data.toString());
  }
  breaks = 0;
  sendBreak(): void {
    this.breaks++;
  }
  out(s: string | Buffer): void {
    this.emit('console', Buffer.isBuffer(s) ? s : Buffer.from(s, 'latin1'));
  }
  exit(detail: string, at = this.now()): void {
    const info: ExitInfo = { reason: 'panic', detail, code: null, signal: null, at };
    this.emit('exit', info);
  }
}
