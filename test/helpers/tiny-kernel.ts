import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const CFLAGS = ['-m32', '-ffreestanding', '-fno-pic', '-fno-stack-protector', '-nostdlib', '-O2', '-Wall', '-Wextra', '-Werror'];

let cached: string | undefined;

/**
 * The tiny test kernel (test/fixtures/tiny-kernel): a multiboot ELF that
 * stands in for a unikernel booted with QEMU -kernel. Compiled once per
 * process with Debian's gcc and ld into a temp dir (removed at exit);
 * returns the ELF's path.
 */
export function tinyKernel(): string {
  if (cached) return cached;
  const src = fixtureDir();
  const out = mkdtempSync(join(tmpdir(), 'sshvisor-tiny-kernel-'));
  process.once('exit', () => rmSync(out, { recursive: true, force: true }));
  const elf = join(out, 'tiny-kernel.elf');
  run('gcc', [...CFLAGS, '-c', join(src, 'boot.S'), '-o', join(out, 'boot.o')]);
  run('gcc', [...CFLAGS, '-c', join(src, 'kernel.c'), '-o', join(out, 'kernel.o')]);
  run('ld', ['-m', 'elf_i386', '-T', join(src, 'linker.ld'), '-o', elf, join(out, 'boot.o'), join(out, 'kernel.o')]);
  cached = elf;
  return elf;
}

/** The sources, found from here whether this runs compiled (dist/test/helpers) or not (test/helpers). */
function fixtureDir(): string {
  for (let dir = import.meta.dirname; ; dir = dirname(dir)) {
    const candidate = join(dir, 'test', 'fixtures', 'tiny-kernel');
    if (existsSync(join(candidate, 'kernel.c'))) return candidate;
    if (dirname(dir) === dir) throw new Error(`test/fixtures/tiny-kernel not found above ${import.meta.dirname}`);
  }
}

function run(file: string, args: string[]): void {
  const r = spawnSync(file, args, { encoding: 'utf8' });
  if (r.error) {
    const hint = (r.error as NodeJS.ErrnoException).code === 'ENOENT' ? ' (install the Debian packages gcc and binutils: npm run setup)' : '';
    throw new Error(`building the tiny test kernel: cannot run ${file}: ${r.error.message}${hint}`);
  }
  if (r.status !== 0) throw new Error(`building the tiny test kernel: ${file} ${args.join(' ')} failed:\n${r.stderr}${r.stdout}`);
}
