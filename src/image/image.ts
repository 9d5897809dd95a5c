import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { MANIFEST_FILE, manifestSchema, type ImageManifest } from './manifest.js';
import { GUEST_CONTRACT_VERSION, ROOTFS_KERNEL_ARG } from './guest-contract.js';
import { ROOTFS_FILE } from './rootfs-manifest.js';
import { imageNames, readImage } from './catalogue.js';
import { isImageNameForm } from './image-name.js';

/** What a VM boots: a kernel, an optional initramfs, and what the guest offers. */
export interface GuestImage {
  name: string;
  kernel: string;
  initrd?: string;
  /** Extra kernel arguments the image needs. */
  append: string[];
  /** The guest runs sshvisor-agent and honours the guest contract (guest-contract.ts); false: console only. */
  agent: boolean;
  /** The manifest of the image the kernel and initramfs come from. */
  manifest?: ImageManifest;
  /**
   * A root filesystem image (rootfs-manifest.ts): each VM's disk is a
   * copy-on-write layer over `path`, booted by the default image's kernel
   * and initramfs (docs/images.md).
   */
  rootfs?: {
    /** rootfs.ext4: raw ext4, never written. */
    path: string;
    /** Its filesystem's size in bytes: a VM's disk is at least this big. */
    fsBytes: number;
    sha256: string;
    /** Every session's environment (KEY=VALUE) and working directory, from an OCI image's config. */
    env: string[];
    workingDir?: string;
  };
}

/**
 * Where VMs get their images from: the catalogue under DATA_DIR/images
 * (catalogue.ts), or one fixed image (a --kernel given on the command line).
 */
export interface ImageSource {
  /** The image a new VM gets unless it asks for another (`serve --image`). */
  readonly defaultName: string;
  /** Throws a UserError naming the images there are when `name` is not one. */
  load(name: string): GuestImage;
  /** Names of the images there are. */
  names(): string[];
}

/** The one image a server started with --kernel boots, under its name. */
export function fixedImageSource(image: GuestImage): ImageSource {
  return {
    defaultName: image.name,
    names: () => [image.name],
    load: (name) => {
      if (name !== image.name) throw new UserError(`no image ${name}: this server boots only ${image.name}`);
      return image;
    },
  };
}

/**
 * The catalogue under DATA_DIR/images (catalogue.ts): `default` is the image
 * `sshvisor image build` makes (at `defaultDir`, --image-dir, when given);
 * any other name is a root filesystem image booted with default's kernel
 * and initramfs. `consoleOnly` serves every image without its agent.
 * Throws a UserError at once when `defaultName` cannot be loaded.
 */
export function catalogueImageSource(dataDir: string, defaultName: string, options: { defaultDir?: string; consoleOnly?: boolean } = {}): ImageSource {
  const kernelDir = options.defaultDir ?? join(dataDir, 'images', 'default');
  // `default` is always there (it may live outside the catalogue: --image-dir); it boots every other image.
  const names = (): string[] => [...new Set(['default', ...imageNames(dataDir)])].sort();
  const load = (name: string): GuestImage => {
    const base = { ...loadImage(kernelDir), ...(options.consoleOnly ? { agent: false } : {}) };
    if (name === 'default') return base;
    if (!isImageNameForm(name)) throw new UserError(`no image ${JSON.stringify(name)}; images: ${names().join(', ')}`);
    if (!existsSync(join(dataDir, 'images', name))) throw new UserError(`no image ${name}; images: ${names().join(', ')}`);
    const info = readImage(dataDir, name);
    if (info.kind === 'sshvisor') throw new UserError(`image ${name} is a kernel and initramfs, not a root filesystem; only default may be one`);
    const m = info.manifest;
    return {
      ...base,
      name,
      append: [...base.append, ROOTFS_KERNEL_ARG],
      rootfs: { path: join(info.dir, ROOTFS_FILE), fsBytes: m.fsBytes, sha256: m.files[ROOTFS_FILE].sha256, env: m.session.env, workingDir: m.session.workingDir },
    };
  };
  // Fail at start, not at the first login, when the default image is missing.
  load(defaultName);
  return { defaultName, load, names };
}

/** Load an image built by `sshvisor image build`, with a clear error if it isn't there. */
export function loadImage(dir: string, name = 'default'): GuestImage {
  const manifestPath = join(dir, MANIFEST_FILE);
  if (!existsSync(manifestPath)) {
    throw new UserError(`no guest image in ${dir}: build one with \`sshvisor image build --out ${dir}\` (or \`npm run setup\`)`);
  }
  let manifest: ImageManifest;
  try {
    manifest = manifestSchema.parse(JSON.parse(readFileSync(manifestPath, 'utf8')));
  } catch (err) {
    throw new UserError(`guest image manifest ${manifestPath} is unreadable (${(err as Error).message.split('\n')[0]}); rebuild with \`sshvisor image build\``);
  }
  if (manifest.contract !== GUEST_CONTRACT_VERSION) {
    throw new UserError(`guest image in ${dir} was built by an older sshvisor (guest contract ${manifest.contract}, now ${GUEST_CONTRACT_VERSION}); rebuild it with \`sshvisor image build --out ${dir}\``);
  }
  const kernel = join(dir, 'vmlinuz');
  const initrd = join(dir, 'initrd.img');
  for (const f of [kernel, initrd]) {
    if (!existsSync(f)) throw new UserError(`guest image file ${f} is missing; rebuild with \`sshvisor image build\``);
  }
  return { name, kernel, initrd, append: [], agent: manifest.guest.agent !== undefined, manifest };
}

/**
 * Whether `dir` holds an image that this sshvisor can boot and that was
 * built from `recipe` (build.ts imageRecipe(): the agent's source, the
 * guest's init, modules and packages), so `image build --if-missing`
 * rebuilds an image whose ingredients changed. `serve` itself only needs
 * the contract (loadImage).
 */
export function isCurrentImage(dir: string, recipe: string): boolean {
  try {
    return loadImage(dir).manifest?.recipe === recipe;
  } catch {
    return false;
  }
}
