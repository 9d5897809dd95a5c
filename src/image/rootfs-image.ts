import { sha256File } from './manifest.js';
import { ROOTFS_FILE, rootfsManifestSchema, type RootfsManifest, type RootfsSource } from './rootfs-manifest.js';
import { checkRootfs } from './rootfs-checks.js';
import type { ImageWorkDir } from './work-dir.js';

/** Steps of a long job, for the person waiting ("copying x", "checking x"). */
export type ImageProgress = (step: string) => void;

/**
 * The last steps every root filesystem image goes through, whatever made
 * its rootfs.ext4 (a copy, mkfs from an OCI or Debian tree): check the file
 * as it will be booted (ext4, e2fsck clean, /bin/sh), hash it, write the
 * manifest, rename the image into place. `label` names the input in a
 * check's UserError. Returns the manifest written.
 */
export async function finishRootfsImage(
  work: ImageWorkDir,
  source: RootfsSource,
  session: RootfsManifest['session'],
  label: string,
  progress: ImageProgress,
): Promise<RootfsManifest> {
  progress('checking the file system (e2fsck -fn, /bin/sh, SSH daemon)');
  const { sshDaemon } = await checkRootfs(work.rootfs, label);
  progress('hashing rootfs.ext4');
  const file = await sha256File(work.rootfs);
  const manifest = rootfsManifestSchema.parse({
    format: 1,
    kind: 'rootfs',
    source,
    createdAt: new Date().toISOString(),
    fsBytes: file.size,
    sshDaemon,
    session,
    files: { [ROOTFS_FILE]: file },
  } satisfies RootfsManifest);
  progress(`installing ${work.target}`);
  work.install(manifest);
  return manifest;
}
