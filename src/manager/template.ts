import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { writeFileAtomic } from '../util/atomic-write.js';
import { basename, join } from 'node:path';
import { ensureOverlay } from '../vm/disk.js';
import { overlayBytes } from './vm-shape.js';
import { isTemplateDirOf } from '../image/catalogue.js';
import { z } from 'zod';
import type { Logger } from '../util/log.js';
import { errorMessage } from '../util/errors.js';
import type { GuestImage } from '../image/image.js';
import { GUEST_TEMPLATE_MARKER, TEMPLATE_KERNEL_ARG, guestKernelArgs } from '../image/guest-contract.js';
import type { Accel, VmDriver, VmSpec } from '../vm/driver.js';
import { imageFingerprint, snapshotPaths, writeSnapshotMeta } from './snapshot-files.js';

/**
 * A template is one guest of the image booted up to the point where it
 * waits for its identity, then suspended. New VMs start as copy-on-write
 * clones of its RAM (a private mapping of the template's file) and restore
 * its device state: tens of milliseconds instead of a boot. Each clone is
 * then sent its identity through its guest agent (guest-files.ts, template
 * mode; docs/guest-protocol.md, `identity`).
 */

export interface TemplateOptions {
  dataDir: string;
  driver: VmDriver;
  image: GuestImage;
  accel: Accel;
  memoryMiB: number;
  cpus: number;
  /** The template's placeholder disk has this size; a clone's disk must match, or it cold-boots. */
  diskSizeMiB: number;
  allowInternet: boolean;
  logger: Logger;
  bootTimeoutSec: number;
}

export interface Template {
  dir: string;
  ram: string;
  state: string;
  diskBytes: number;
}

const READY_FILE = 'template.json';
const readySchema = z.object({ key: z.string(), builtAt: z.number(), diskBytes: z.number() });

export class TemplateStore {
  private building?: Promise<Template | undefined>;
  private readonly key: string;
  readonly dir: string;

  constructor(private readonly opts: TemplateOptions) {
    // Everything a clone's restore depends on: another value means another template.
    this.key = createHash('sha256')
      .update(JSON.stringify([imageFingerprint(opts.image), opts.driver.version, opts.accel, opts.memoryMiB, opts.cpus, opts.diskSizeMiB, opts.allowInternet]))
      .digest('hex')
      .slice(0, 16);
    // Per image: building one image's template leaves the others' alone.
    this.dir = join(opts.dataDir, 'templates', `${opts.image.name}-${this.key}`);
  }

  /** The template, if it has been built. */
  ready(): Template | undefined {
    try {
      const info = readySchema.parse(JSON.parse(readFileSync(join(this.dir, READY_FILE), 'utf8')));
      const p = snapshotPaths(this.dir);
      if (info.key !== this.key || !existsSync(p.ram) || !existsSync(p.state)) return undefined;
      return { dir: this.dir, ram: p.ram, state: p.state, diskBytes: info.diskBytes };
    } catch {
      return undefined;
    }
  }

  /** Build the template unless it exists; never throws (cold boot remains). */
  ensure(): Promise<Template | undefined> {
    const t = this.ready();
    if (t) return Promise.resolve(t);
    this.building ??= this.build()
      .catch((err) => {
        this.opts.logger.warn({ event: 'template-failed', err: errorMessage(err) }, 'could not build a template; new VMs cold-boot');
        // Half a template (a full disk, a failed boot) is only space taken: template.json was never written.
        rmSync(this.dir, { recursive: true, force: true });
        return undefined;
      })
      .finally(() => (this.building = undefined));
    return this.building;
  }

  /** The VM spec of a clone: the template's RAM mapped privately, its state restored. */
  cloneSpec(t: Template, base: Omit<VmSpec, 'memoryFile' | 'memoryPrivate' | 'restoreFrom' | 'kernelArgs'>): VmSpec {
    return { ...base, kernelArgs: this.kernelArgs(), memoryFile: t.ram, memoryPrivate: true, restoreFrom: { stateFile: t.state } };
  }

  /**
   * What a freshly started clone is told through its agent: its name, the
   * time, and 64 fresh random bytes for its RNG (it starts with the template's
   * RNG state, so without them every clone would draw the same numbers).
   */
  identity(hostname: string): { hostname: string; unixMs: number; seed: Buffer } {
    return { hostname, unixMs: Date.now(), seed: randomBytes(64) };
  }

  private kernelArgs(): string[] {
    return [...guestKernelArgs({ hostname: 'template' }), TEMPLATE_KERNEL_ARG];
  }

  private async build(): Promise<Template> {
    const { opts } = this;
    const started = Date.now();
    // This image's older templates (another build of it, size or QEMU) are of no further use; so are unnamed ones from before.
    const parent = join(opts.dataDir, 'templates');
    const mine = (d: string): boolean => isTemplateDirOf(d, opts.image.name) || /^[0-9a-f]{16}$/.test(d);
    if (existsSync(parent)) for (const d of readdirSync(parent)) if (d !== basename(this.dir) && mine(d)) rmSync(join(parent, d), { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    // A placeholder of the clones' disk size that the template never reads: the guest waits before mounting.
    const rootfs = opts.image.rootfs;
    const placeholder = join(this.dir, rootfs ? 'placeholder.qcow2' : 'placeholder.img');
    if (rootfs) {
      await ensureOverlay(placeholder, rootfs.path, overlayBytes(rootfs.fsBytes, opts.diskSizeMiB));
    } else {
      const fd = openSync(placeholder, 'w', 0o600);
      ftruncateSync(fd, opts.diskSizeMiB * 1024 * 1024);
      closeSync(fd);
    }

    const vm = opts.driver.create({
      name: 'template',
      dir: this.dir,
      image: opts.image,
      memoryMiB: opts.memoryMiB,
      cpus: opts.cpus,
      accel: opts.accel,
      disk: placeholder,
      diskBacking: rootfs?.path,
      network: { allowInternet: opts.allowInternet },
      agent: true,
      kernelArgs: this.kernelArgs(),
      memoryFile: snapshotPaths(this.dir).ram,
      // A build this server does not finish is of no use to the next one.
      ephemeral: true,
    });
    let text = '';
    const waiting = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the template did not reach "${GUEST_TEMPLATE_MARKER}" in time`)), opts.bootTimeoutSec * 1000);
      vm.on('console', (b) => {
        text = (text + b.toString('latin1')).slice(-4096);
        if (text.includes(GUEST_TEMPLATE_MARKER)) {
          clearTimeout(timer);
          resolve();
        }
      });
      void vm.exited.then((e) => reject(new Error(`the template VM exited: ${e.detail}`)));
    });
    try {
      await vm.start();
      await waiting;
      // Let the shell reach its wait loop before freezing it there.
      await new Promise((r) => setTimeout(r, 300));
      await vm.suspend(snapshotPaths(this.dir).state, {
        beforeQuit: () =>
          writeSnapshotMeta(this.dir, {
            takenAt: Date.now(),
            hypervisor: vm.hypervisorVersion ?? opts.driver.version,
            image: imageFingerprint(opts.image),
            memoryMiB: opts.memoryMiB,
            cpus: opts.cpus,
            ramInState: false,
          }),
      });
    } catch (err) {
      await vm.kill();
      throw err;
    }
    // Clones map it privately (share=off) and so never write it; a shared writer would corrupt every clone.
    // It stays 0600, not 0400: QEMU opens a memory-backend-file read-write even for a private mapping.
    chmodSync(snapshotPaths(this.dir).ram, 0o600);
    const diskBytes = statSync(placeholder).size;
    writeFileAtomic(join(this.dir, READY_FILE), JSON.stringify({ key: this.key, builtAt: Date.now(), diskBytes }) + '\n');
    opts.logger.info({ event: 'template-ready', ms: Date.now() - started, dir: this.dir }, 'template ready: new VMs start as clones');
    return this.ready()!;
  }
}
