import type { Vm } from '../../src/vm/driver.js';

/** Collects a VM's console output so a test can wait for what the guest prints. */
export class ConsoleReader {
  text = '';
  private waiters: Array<() => void> = [];

  constructor(vm: Vm) {
    vm.on('console', (b) => {
      this.text += b.toString('utf8');
      for (const w of this.waiters.splice(0)) w();
    });
    vm.on('exit', () => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Resolve with the match once the console (from `from` on) matches `pattern`. */
  async waitFor(pattern: string | RegExp, timeoutMs = 60_000, from = 0): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hay = this.text.slice(from);
      const m = typeof pattern === 'string' ? (hay.includes(pattern) ? pattern : null) : pattern.exec(hay)?.[0];
      if (m != null) return m;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`console never showed ${String(pattern)} within ${timeoutMs} ms; last output:\n${this.text.slice(-800)}`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}
