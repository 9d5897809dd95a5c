/**
 * Seeded generators of hostile SSH inputs for test/e2e/fuzz.test.ts. A seed
 * reproduces a run exactly (FUZZ_SEED=N).
 */

/** mulberry32: small, fast, good enough to spread cases. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Gen {
  constructor(readonly r: () => number) {}

  int(min: number, max: number): number {
    return min + Math.floor(this.r() * (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.r() * items.length)]!;
  }
  chance(p: number): boolean {
    return this.r() < p;
  }

  /** Any code point, controls, bidi overrides, lone surrogates and NUL included. */
  codePoint(): string {
    switch (this.int(0, 5)) {
      case 0:
        return String.fromCharCode(this.int(0, 31));
      case 1:
        return String.fromCharCode(this.int(0xd800, 0xdfff)); // lone surrogate: sent as U+FFFD
      case 2:
        return this.pick(['\u202e', '\u200b', '\ufeff', '\u0430', '\uff41', '\u0131', '\u212a', '\u00e9', '\u{1f600}']);
      case 3:
        return String.fromCodePoint(this.pick([this.int(0xa0, 0xd7ff), this.int(0xe000, 0xfffd), this.int(0x10000, 0x10ffff)]));
      default:
        return String.fromCharCode(this.int(32, 126));
    }
  }

  text(maxLen: number, alphabet?: string): string {
    const n = this.int(0, maxLen);
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet ? alphabet[this.int(0, alphabet.length - 1)] : this.codePoint();
    return s;
  }

  validName(): string {
    return `f${this.text(this.int(0, 12), 'abcdefghijklmnopqrstuvwxyz0123456789-')}`.slice(0, 32);
  }

  /** A username: mostly invalid, some valid names with suffixes; the caller drops any that would boot a VM. */
  username(): string {
    const name = this.validName();
    switch (this.int(0, 9)) {
      case 0:
        return this.text(24);
      case 1:
        return this.text(40, 'abcAZ09-_.+/\\@:;$`\'" \0\n\t%~*?[]{}|&<>()!#=,');
      case 2:
        return this.pick(['a', 'x', name]).repeat(this.int(17, 3000)).slice(0, this.int(33, 6000));
      case 3:
        return `${name}+${this.suffix()}`;
      case 4:
        return `${name}+${this.pick(['watch', 'logs', 'status', 'token'])}`;
      case 5:
        return this.pick(['..', '.', '../etc', 'a/../../b', '/etc/passwd', 'a/b', '-a', '-rf', 'a\0b', '.hidden', 'a.b', '~root', '$(id)', '`id`', 'a;id', 'con', 'nul',
          'ADMIN', 'admin', 'admin+console', 'admin+', 'Alice', 'ALICE', '\u0430lice', 'al\u0131ce', '\uff41lice', 'alice\u202e', ' alice', 'alice ', 'a\nb', '+console', '+', '++', 'a++console', 'a+console+watch']);
      case 6:
        return `${name}${this.text(4)}`;
      case 7:
        return `${this.text(3)}${name}`;
      case 8:
        return name.toUpperCase();
      default:
        return `${name}+${this.text(12, 'consolewatchlogstatusken+-_ \0CONSOLE')}`;
    }
  }

  suffix(): string {
    return this.pick([
      () => '',
      () => this.text(16),
      () => this.pick(['Console', 'CONSOLE', 'console ', ' console', 'console\0', 'consol', 'consoles', 'watch+logs', '+console', 'shell', 'exec', '..', '/', 'status/../x']),
      () => this.text(2000, 'abc+'),
    ])();
  }

  subsystem(): string {
    const s = this.pick([
      () => this.text(30),
      () => this.pick(['SFTP', 'sftp ', ' sftp', 'sftp\0', 'sftp\n', 'sftp-server', '/usr/lib/openssh/sftp-server', '../sftp', 'netconf', 'x11', 'shell', '']),
      () => this.text(5000, 'sftp/.-'),
      () => `sftp${this.text(3)}`,
    ])();
    return s === 'sftp' ? 'sftp2' : s;
  }

  /** Exec strings: garbage, shell syntax, exits and signals; nothing that runs for long. */
  exec(): string {
    return this.pick([
      () => this.text(60),
      () => this.text(200, 'abc $`\'"\\;|&()<>{}[]*?~!#=%^\n\t-_./0123456789'),
      () => `exit ${this.int(0, 255)}`,
      () => this.pick(['', ' ', ';', '&&', '|', '(', ')', '"', "'", '\\', '$(', '`', 'kill -9 $$', 'kill -TERM $$', 'echo $((1/0))', 'printf "\\0\\1\\2"', 'cat', 'head -c 100000 /dev/zero', 'true', 'false', ':']),
      () => `:${' x'.repeat(this.int(100, 15000))}`,
      () => `echo ${this.text(20)}\0${this.text(20)}`,
    ])();
  }

  /** A pty request: odd terms, every mode with odd values, sizes from 0 to 2^32-1. */
  pty(): { term: string; rows: number; cols: number; width: number; height: number; modes: Record<string, number> } {
    const dim = (): number => this.pick([0, 1, 24, 80, 65535, 65536, 2 ** 31, 2 ** 32 - 1, this.int(0, 100000)]);
    const modes: Record<string, number> = {};
    // ssh2's server parser calls a mode value >= 2^24 malformed and ends the connection with a protocol error
    // (fuzz.test.ts checks that separately); here they stay below so the shared connection lives.
    for (let i = this.int(0, 8); i > 0; i--) modes[this.pick(MODES)] = this.pick([0, 1, 255, 38400, 2 ** 24 - 1, this.int(0, 2 ** 24 - 1)]);
    return {
      term: this.pick([() => this.text(20), () => 'xterm-256color', () => this.text(2000, 'xterm-/.'), () => '../../../../etc/passwd', () => ''])(),
      rows: dim(),
      cols: dim(),
      width: dim(),
      height: dim(),
      modes,
    };
  }

  window(): [number, number, number, number] {
    const dim = (): number => this.pick([0, 1, 65535, 2 ** 32 - 1, this.int(0, 5000)]);
    return [dim(), dim(), dim(), dim()];
  }

  /** Env requests: valid names, invalid ones, values with NUL, and sets past the count and size bounds. */
  env(): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    const n = this.pick([0, 1, 3, 8, 20, 70]);
    for (let i = 0; i < n; i++) {
      const key = this.pick([
        () => `F${this.text(10, 'ABCxyz0123456789_')}`,
        () => `_F${this.int(0, 99)}`,
        () => this.text(8),
        () => this.pick(['', '1X', 'A-B', 'A B', 'A=B', 'A\0B', '\u0430', 'F.X', '$F', 'F;id']),
      ])();
      const value = this.pick([
        () => this.text(20),
        () => this.text(40, "a'\"$`\\;|&() \n*?"),
        () => `x\0y`,
        () => 'v'.repeat(this.int(1000, 20000)),
        () => '',
      ])();
      out.push([key, value]);
    }
    return out;
  }
}

const MODES = ['VINTR', 'VQUIT', 'VERASE', 'VKILL', 'VEOF', 'VEOL', 'VSTART', 'VSTOP', 'VSUSP', 'IGNPAR', 'ISTRIP', 'ICRNL', 'IXON', 'ISIG', 'ICANON', 'ECHO', 'ECHOE', 'OPOST', 'ONLCR', 'CS7', 'CS8', 'PARENB', 'TTY_OP_ISPEED', 'TTY_OP_OSPEED'];
