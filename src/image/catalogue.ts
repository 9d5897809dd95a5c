import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, type Stats } from 'node:fs';
import { join, resolve } from 'node:path';
import { UserError } from '../util/errors.js';
import { fsyncDir } from '../util/atomic-write.js';
import { MANIFEST_FILE, manifestSchema, type ImageManifest } from './manifest.js';
import { ROOTFS_FILE, rootfsManifestSchema, type RootfsManifest } from './rootfs-manifest.js';
import { removeWorkDir, WORK_DIR_PREFIX } from './work-dir.js';
import { isImageNameForm } from './image-name.js';

/**
 * The image catalogue: every image is a directory DATA_DIR/images/NAME with
 * a manifest.json. `default` (kind `sshvisor`) is the kernel + initramfs
 * `sshvisor image build` makes; every other image is a root filesystem
 * (rootfs.ext4, kinds `debian`, `ext4`, `oci`) that boots with default's
 * kernel. Directories being written (a build's `default.building`, an
 * import's `.import-*`) are never images.
 */

export type ImageKind = 'sshvisor' | 'debian' | 'ext4' | 'oci';
export type SshDaemon = 'openssh' | 'dropbear' | 'none';

interface ImageInfoBase {
  name: string;
  /** DATA_DIR/images/NAME. */
  dir: string;
  /** Bytes the image takes on the host's disk: allocated blocks, not lengths (rootfs.ext4 is sparse). */
  sizeBytes: number;
  /** ISO 8601: when it was built or imported. */
  createdAt: string;
  /** The kernel release it boots: its own for `sshvisor`; `default` (that image's kernel) for a root filesystem. */
  kernel: string;
  /** The SSH daemon the image ships (sessions never use it: they go through sshvisor-agent). */
  sshDaemon: SshDaemon;
}

/** One catalogue entry, its manifest typed by its kind. */
export type ImageInfo =
  | (ImageInfoBase & { kind: 'sshvisor'; manifest: ImageManifest })
  | (ImageInfoBase & { kind: 'debian' | 'ext4' | 'oci'; manifest: RootfsManifest });

/** The image every other one takes its kernel and initramfs from. */
export const DEFAULT_IMAGE = 'default';

/** build.ts writes `default.building` and keeps `default.old` beside the image for a moment: never names. */
const RESERVED_SUFFIXES = ['.building', '.old', '.partial'];

/** Throws a UserError unless `name` is an image name: `[a-z0-9][a-z0-9._-]{0,31}`, not ending in a reserved suffix. */
export function assertImageName(name: string): void {
  if (!isImageNameForm(name)) {
    throw new UserError(`bad image name ${JSON.stringify(name)}: use 1-32 of a-z 0-9 . _ - starting with a letter or digit`);
  }
  const suffix = RESERVED_SUFFIXES.find((s) => name.endsWith(s));
  if (suffix) throw new UserError(`bad image name ${JSON.stringify(name)}: names ending in ${suffix} are kept for sshvisor's temporary directories`);
}

/** DATA_DIR/images, absolute. */
export function imagesDir(dataDir: string): string {
  return resolve(dataDir, 'images');
}

/** DATA_DIR/images/NAME; throws a UserError for a bad name (so a name can never reach outside the catalogue). */
export function imagePath(dataDir: string, name: string): string {
  assertImageName(name);
  return join(imagesDir(dataDir), name);
}

/** Names of the directories in the catalogue that could be images (temporary ones left out), sorted. */
export function imageNames(dataDir: string): string[] {
  const dir = imagesDir(dataDir);
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && !e.name.startsWith(WORK_DIR_PREFIX) && isImageName(e.name))
    .map((e) => e.name)
    .sort();
}

function isImageName(name: string): boolean {
  try {
    assertImageName(name);
    return true;
  } catch {
    return false;
  }
}

const namesList = (names: string[]): string =>
  names.length ? `images: ${names.join(', ')}` : 'there are none; build one with `sshvisor image build`';

/** Throws a UserError if the catalogue already has an image (or any directory) called `name`. */
export function assertImageNameFree(dataDir: string, name: string): void {
  // `default` always means the kernel and initramfs image (it may live outside the catalogue: serve --image-dir).
  if (name === DEFAULT_IMAGE) throw new UserError(`image name ${DEFAULT_IMAGE} is kept for the image \`sshvisor image build\` makes; pick another --name`);
  if (existsSync(imagePath(dataDir, name))) {
    throw new UserError(`image name ${name} is taken: pick another --name, or remove it with \`sshvisor image rm ${name}\``);
  }
}

/**
 * Read one image's manifest and measure it. Throws a UserError for an unknown
 * name (naming the images there are), an unreadable manifest, or a root
 * filesystem image whose rootfs.ext4 is gone.
 */
export function readImage(dataDir: string, name: string): ImageInfo {
  const dir = imagePath(dataDir, name);
  const manifestPath = join(dir, MANIFEST_FILE);
  if (!existsSync(dir)) throw new UserError(`no image ${name} (${namesList(imageNames(dataDir))})`);
  if (!existsSync(manifestPath)) throw new UserError(`image ${name} has no ${MANIFEST_FILE} in ${dir}: it is damaged; remove it with \`sshvisor image rm ${name}\``);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(manifestPath, 'utf8'));
  } catch (err) {
    throw new UserError(`image ${name}'s ${manifestPath} is not JSON (${(err as Error).message})`);
  }
  const base = { name, dir, sizeBytes: allocatedBytes(dir) };
  if ((raw as { kind?: unknown } | null)?.kind === 'rootfs') {
    const parsed = rootfsManifestSchema.safeParse(raw);
    if (!parsed.success) throw new UserError(`image ${name}'s ${manifestPath} is not a root filesystem manifest (${firstIssue(parsed.error)})`);
    const manifest = parsed.data;
    if (!existsSync(join(dir, ROOTFS_FILE))) throw new UserError(`image ${name} is damaged: ${join(dir, ROOTFS_FILE)} is missing`);
    return { ...base, kind: manifest.source.type, createdAt: manifest.createdAt, kernel: DEFAULT_IMAGE, sshDaemon: manifest.sshDaemon, manifest };
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) throw new UserError(`image ${name}'s ${manifestPath} is not an image manifest (${firstIssue(parsed.error)})`);
  const manifest = parsed.data;
  // The default image serves sessions only through sshvisor-agent: no SSH daemon in it.
  return { ...base, kind: 'sshvisor', createdAt: manifest.builtAt, kernel: manifest.kernel.release, sshDaemon: 'none', manifest };
}

function firstIssue(err: { issues: { path: PropertyKey[]; message: string }[] }): string {
  const issue = err.issues[0];
  return issue ? `${issue.path.map(String).join('.') || 'manifest'}: ${issue.message}` : 'invalid';
}

/**
 * Every image in the catalogue, sorted by name. An image that cannot be read
 * is left out and reported to `onBroken` (name, the reason) instead of
 * failing the whole listing.
 */
export function listImages(dataDir: string, onBroken?: (name: string, reason: string) => void): ImageInfo[] {
  const out: ImageInfo[] = [];
  for (const name of imageNames(dataDir)) {
    try {
      out.push(readImage(dataDir, name));
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      onBroken?.(name, err.message);
    }
  }
  return out;
}

/**
 * Delete image `name`. `usedBy` are the VMs created with it (Store.vmsUsingImage):
 * any of them refuses the removal with a UserError naming them, as does
 * removing `default` while other images (which boot with its kernel) exist,
 * or an unknown name. The directory is first renamed to a temporary name, so
 * a removal cut short never leaves a half image in the catalogue.
 */
export function removeImage(dataDir: string, name: string, usedBy: readonly string[]): void {
  const dir = imagePath(dataDir, name);
  const names = imageNames(dataDir);
  if (!existsSync(dir)) throw new UserError(`no image ${name} (${namesList(names)})`);
  if (usedBy.length) {
    const vms = usedBy.length === 1 ? `VM ${usedBy[0]}` : `${usedBy.length} VMs (${usedBy.join(', ')})`;
    throw new UserError(`image ${name} is used by ${vms}; it stays`);
  }
  const others = names.filter((n) => n !== name);
  if (name === DEFAULT_IMAGE && others.length) {
    throw new UserError(`image ${DEFAULT_IMAGE} provides the kernel and initramfs the other images boot with (${others.join(', ')}); remove those first`);
  }
  const doomed = mkdtempSync(join(imagesDir(dataDir), `${WORK_DIR_PREFIX}rm-${name}-${process.pid}-`));
  renameSync(dir, join(doomed, name));
  fsyncDir(imagesDir(dataDir));
  removeWorkDir(doomed);
  // Its templates (templates/NAME-KEY, manager/template.ts) would only take room: no VM can start from them any more.
  const templates = join(dataDir, 'templates');
  if (existsSync(templates)) {
    for (const d of readdirSync(templates)) if (isTemplateDirOf(d, name)) rmSync(join(templates, d), { recursive: true, force: true });
  }
}

/**
 * Whether `dir` (a name in DATA_DIR/templates) is a template of image
 * `image`: `IMAGE-KEY`, KEY 16 hex digits (manager/template.ts). Exact, so
 * image `deb` never claims image `deb-x`'s templates.
 */
export function isTemplateDirOf(dir: string, image: string): boolean {
  return dir.length === image.length + 17 && dir.startsWith(`${image}-`) && /^[0-9a-f]{16}$/.test(dir.slice(image.length + 1));
}

/** Allocated bytes of everything under `path` (st_blocks are 512-byte units whatever the block size). */
export function allocatedBytes(path: string): number {
  let total = 0;
  const stack = [path];
  while (stack.length) {
    const p = stack.pop() as string;
    let st: Stats;
    try {
      st = lstatSync(p);
    } catch {
      continue; // removed while we looked
    }
    total += st.blocks * 512;
    if (st.isDirectory()) for (const e of readdirSync(p)) stack.push(join(p, e));
  }
  return total;
}
