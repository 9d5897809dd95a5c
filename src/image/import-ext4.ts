import { resolve } from 'node:path';
import { run } from '../util/exec.js';
import { requireTool } from '../util/tools.js';
import { assertImageNameFree, imagesDir } from './catalogue.js';
import { assertExt4Magic } from './rootfs-checks.js';
import { finishRootfsImage, type ImageProgress } from './rootfs-image.js';
import type { RootfsManifest } from './rootfs-manifest.js';
import { withImageWorkDir } from './work-dir.js';

/**
 * Import an ext4 root filesystem image (the seed's `rootfs.ext4`, anything
 * made with `mkfs.ext4 -d`) as image `name`: DATA_DIR/images/NAME/rootfs.ext4
 * and its manifest. The file is copied sparse, and the copy is what is
 * checked (e2fsck -fn, /bin/sh), so what is stored is what passed. Throws a
 * UserError, one line, leaving nothing in the catalogue, for: a bad or taken
 * name, a missing file, a file that is not ext4, a corrupt file system, no
 * /bin/sh, the disk filling up. Returns the manifest.
 */
export async function importExt4(dataDir: string, file: string, name: string, progress: ImageProgress = () => {}): Promise<RootfsManifest> {
  assertImageNameFree(dataDir, name);
  const source = resolve(file);
  // The cheap checks on the original first: a wrong file is refused before anything is copied.
  assertExt4Magic(source, file);
  const cp = requireTool('cp');
  return withImageWorkDir(imagesDir(dataDir), name, 'import', `import image ${name}`, async (work) => {
    progress(`copying ${file}`);
    // --sparse=always: holes stay holes, and runs of zeros in the source become holes.
    await run(cp, ['--sparse=always', '--no-preserve=all', source, work.rootfs]);
    return finishRootfsImage(work, { type: 'ext4', file: source }, { env: [] }, file, progress);
  });
}
