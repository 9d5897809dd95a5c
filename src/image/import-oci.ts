import { closeSync, createReadStream, createWriteStream, mkdirSync, openSync, readSync, symlinkSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { join, resolve } from 'node:path';
import { UserError } from '../util/errors.js';
import { isNoSpace } from '../util/atomic-write.js';
import { run } from '../util/exec.js';
import { requireTool } from '../util/tools.js';
import { assertImageNameFree, imagesDir } from './catalogue.js';
import { mkfsFromDir } from './mkfs-from-dir.js';
import { chooseImage, inspectOciSource, readOciConfig } from './oci-source.js';
import { finishRootfsImage, type ImageProgress } from './rootfs-image.js';
import type { RootfsManifest } from './rootfs-manifest.js';
import { removeWorkDir, withImageWorkDir } from './work-dir.js';

export interface OciImportOptions {
  /** Which image of a layout or archive holding several: a tag in it (docker: `repo:tag`). */
  ref?: string;
  progress?: ImageProgress;
}

/** The tag our own temporary layout gives the one image copied into it. */
const WORK_TAG = 'image';

/**
 * Import an OCI image as root filesystem image `name`: `path` is an OCI
 * image layout directory, an OCI archive, or a `docker save` archive.
 * skopeo copies the image into a layout of our own (verifying every blob's
 * digest), `umoci unpack` applies its layers in order (whiteouts honoured),
 * `mkfs.ext4 -d` makes the tree a file system, and the image config's Env
 * and WorkingDir go into the manifest's `session` exactly as they are.
 * Needs root: the tree keeps the image's file owners. Throws a UserError,
 * one line, leaving nothing behind, for a bad or taken name, a path that is
 * no such image, a corrupt or truncated archive, an unknown --ref, an image
 * with no /bin/sh, the disk filling up. Returns the manifest.
 */
export async function importOci(dataDir: string, path: string, name: string, opts: OciImportOptions = {}): Promise<RootfsManifest> {
  const progress = opts.progress ?? (() => {});
  assertImageNameFree(dataDir, name);
  if (process.getuid?.() !== 0) throw new UserError('importing an OCI image needs root (the unpacked files keep the owners the image gives them)');
  const skopeo = requireTool('skopeo');
  const umoci = requireTool('umoci');
  const source = resolve(path);
  progress(`reading ${path}`);
  const found = await inspectOciSource(source, path);

  return withImageWorkDir(imagesDir(dataDir), name, 'import', `import image ${name}`, async (work) => {
    // skopeo splits `transport:path:ref` at the first colon: give it a path with none.
    const input = join(work.dir, 'input');
    if (found.format === 'docker-archive' && isGzip(source)) {
      // skopeo reads `docker save | gzip` only decompressed (an OCI archive it decompresses itself).
      progress(`decompressing ${path}`);
      await pipeline(createReadStream(source), createGunzip(), createWriteStream(input)).catch((err: unknown) => {
        throw isNoSpace(err) ? err : new UserError(`${path} is a corrupt gzip file (${(err as Error).message})`);
      });
    } else {
      symlinkSync(source, input);
    }
    const chosen = chooseImage(found, input, path, opts.ref);
    const layout = join(work.dir, 'layout');
    const tmp = join(work.dir, 'tmp');
    mkdirSync(tmp);
    progress(`copying ${path}${chosen.ref ? ` (${chosen.ref})` : ''} with skopeo`);
    // --insecure-policy: a local file has no signatures to check, and the host's
    // policy.json (made for registries) must not decide an import. --tmpdir keeps an
    // archive's extracted copy in the work dir, not /var/tmp.
    await tool(`${path} is not a readable image`, [input, path], skopeo, ['--insecure-policy', '--tmpdir', tmp, 'copy', '--quiet', chosen.skopeoRef, `oci:${layout}:${WORK_TAG}`]);
    const session = readOciConfig(layout);
    progress('unpacking the layers with umoci');
    const bundle = join(work.dir, 'bundle');
    await tool(`the layers of ${path} could not be unpacked`, [work.dir, '…'], umoci, ['unpack', '--image', `${layout}:${WORK_TAG}`, bundle]);
    removeWorkDir(layout);
    progress('making the ext4 file system (mkfs.ext4 -d)');
    await mkfsFromDir(join(bundle, 'rootfs'), work.rootfs, name);
    removeWorkDir(bundle);
    return finishRootfsImage(work, { type: 'oci', path: source, format: found.format, ref: chosen.ref }, session, `the image in ${path}`, progress);
  });
}

/**
 * Run skopeo or umoci; a failure becomes `what`, then the tool's own message
 * (the `msg="…"` of its fatal log line when it has one), with our temporary
 * path `rename[0]` written as `rename[1]`.
 */
async function tool(what: string, rename: [string, string], file: string, args: string[]): Promise<void> {
  try {
    await run(file, args);
  } catch (err) {
    const text = (err as Error).message;
    const msg = /msg="((?:[^"\\]|\\.)*)"/.exec(text)?.[1]?.replace(/\\"/g, '"') ?? text.replace(/^.*?failed \([^)]*\): /, '');
    throw new UserError(`${what}: ${msg.split(rename[0]).join(rename[1])}`, { cause: err });
  }
}

function isGzip(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const magic = Buffer.alloc(2);
    return readSync(fd, magic, 0, 2, 0) === 2 && magic[0] === 0x1f && magic[1] === 0x8b;
  } finally {
    closeSync(fd);
  }
}
