import { z } from 'zod';

/**
 * The manifest of a root filesystem image (DATA_DIR/images/NAME/manifest.json
 * beside rootfs.ext4): a Debian system built here, an imported ext4 file, or
 * an unpacked OCI image. Such an image has no kernel of its own: it boots
 * with the kernel and initramfs of the `default` image, whose init mounts a
 * copy-on-write layer over rootfs.ext4 and runs sessions in it
 * (docs/images.md).
 */

/** The one file a rootfs image consists of. */
export const ROOTFS_FILE = 'rootfs.ext4';

const fileEntry = z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/), size: z.number().int().nonnegative() });

/** Where the image came from; `type` is the kind `image ls` shows. */
export const rootfsSourceSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('debian'), suite: z.string(), mirror: z.string(), packages: z.array(z.string()) }),
  /** The path the ext4 file was imported from. */
  z.object({ type: z.literal('ext4'), file: z.string() }),
  /** An OCI image layout directory, an OCI archive, or a `docker save` archive; `ref` the tag taken from it. */
  z.object({ type: z.literal('oci'), path: z.string(), format: z.enum(['oci-layout', 'oci-archive', 'docker-archive']), ref: z.string() }),
]);

export const rootfsManifestSchema = z.object({
  format: z.literal(1),
  kind: z.literal('rootfs'),
  source: rootfsSourceSchema,
  /** ISO 8601. */
  createdAt: z.string(),
  /** Size of the ext4 filesystem in bytes (rootfs.ext4's length; sparse on the host). */
  fsBytes: z.number().int().positive(),
  /** The SSH daemon the image itself ships, for information: sessions never go through it. */
  sshDaemon: z.enum(['openssh', 'dropbear', 'none']),
  /**
   * What every session in this image starts with: `env` as KEY=VALUE
   * (an OCI config's Env; PATH among them overrides the default PATH), and
   * the working directory (an OCI config's WorkingDir; absent: HOME).
   */
  session: z.object({ env: z.array(z.string()), workingDir: z.string().optional() }),
  files: z.object({ [ROOTFS_FILE]: fileEntry }),
});

export type RootfsManifest = z.infer<typeof rootfsManifestSchema>;
export type RootfsSource = z.infer<typeof rootfsSourceSchema>;
