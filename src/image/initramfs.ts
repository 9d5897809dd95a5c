import { spawn } from 'node:child_process';
import { copyFileSync, createWriteStream, lstatSync, mkdirSync, readdirSync, symlinkSync, writeFileSync, chmodSync, existsSync, realpathSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { run } from '../util/exec.js';
import { requireTool } from '../util/tools.js';
import { UserError } from '../util/errors.js';
import type { GuestFile } from './guest-files.js';

/** A root filesystem being assembled in a host directory. */
export class RootfsStaging {
  constructor(readonly root: string) {
    for (const d of ['bin', 'sbin', 'etc', 'proc', 'sys', 'dev', 'root', 'tmp', 'run', 'persist', 'var/log', 'lib/modules', 'usr/bin', 'usr/sbin', 'usr/lib']) {
      mkdirSync(join(root, d), { recursive: true });
    }
    chmodSync(join(root, 'tmp'), 0o1777);
  }

  private at(path: string): string {
    return join(this.root, path);
  }

  /** Copy a host file to the same path in the guest (following symlinks). */
  copyFile(hostPath: string, guestPath = hostPath, mode?: number): void {
    const dest = this.at(guestPath);
    mkdirSync(dirname(dest), { recursive: true });
    copyFileSync(realpathSync(hostPath), dest);
    if (mode !== undefined) chmodSync(dest, mode);
  }

  /**
   * Copy a dynamically linked host program together with the shared
   * libraries it loads; returns the libraries' paths (the dynamic loader among them).
   */
  async copyProgram(hostPath: string, guestPath = hostPath): Promise<string[]> {
    this.copyFile(hostPath, guestPath, 0o755);
    const { stdout } = await run('ldd', [hostPath]).catch(() => ({ stdout: '' }));
    const libs: string[] = [];
    for (const m of stdout.matchAll(/(\/\S+\.so[^\s]*)/g)) {
      const lib = m[1]!;
      libs.push(lib);
      if (!existsSync(this.at(lib))) this.copyFile(lib, lib, 0o755);
    }
    return libs;
  }

  symlink(target: string, guestPath: string): void {
    const dest = this.at(guestPath);
    mkdirSync(dirname(dest), { recursive: true });
    if (!existsSync(dest)) symlinkSync(target, dest);
  }

  writeFile(guestPath: string, file: GuestFile): void {
    const dest = this.at(guestPath);
    mkdirSync(dirname(dest), { recursive: true });
    writeFileSync(dest, file.content, { mode: file.mode });
    chmodSync(dest, file.mode);
  }

  /** Install busybox and a symlink for each of its applets. */
  async installBusybox(hostBusybox: string): Promise<void> {
    this.copyFile(hostBusybox, '/bin/busybox', 0o755);
    const { stdout } = await run(hostBusybox, ['--list-full']);
    for (const applet of stdout.split('\n').map((s) => s.trim()).filter(Boolean)) {
      if (applet.endsWith('/busybox')) continue;
      this.symlink('/bin/busybox', '/' + applet);
    }
  }

  private listEntries(): string[] {
    const out: string[] = [];
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir).sort()) {
        const path = join(dir, entry);
        out.push(relative(this.root, path));
        if (lstatSync(path).isDirectory()) walk(path);
      }
    };
    walk(this.root);
    return out;
  }

  /** Write the tree as a gzip'd newc cpio archive, every file owned by root. */
  async writeCpioGz(outFile: string): Promise<void> {
    const cpio = spawn(requireTool('cpio'), ['-o', '-H', 'newc', '--quiet', '-R', '0:0'], {
      cwd: this.root,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    cpio.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<void>((resolve, reject) => {
      cpio.on('error', reject);
      cpio.on('close', (code) => (code === 0 ? resolve() : reject(new UserError(`cpio failed: ${stderr.trim()}`))));
    });
    cpio.stdin.end(this.listEntries().join('\n') + '\n');
    await Promise.all([pipeline(cpio.stdout, createGzip({ level: 6 }), createWriteStream(outFile)), exited]);
  }
}
