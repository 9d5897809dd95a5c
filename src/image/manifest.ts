import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { z } from 'zod';

export const MANIFEST_FILE = 'manifest.json';

const fileEntry = z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/), size: z.number().int().nonnegative() });

export const manifestSchema = z.object({
  format: z.literal(1),
  /** GUEST_CONTRACT_VERSION the image was built for (absent: 1). */
  contract: z.number().int().default(1),
  /** imageRecipe() of the sshvisor that built it: another recipe is rebuilt by `image build --if-missing`. */
  recipe: z.string().optional(),
  builtAt: z.string(),
  kernel: z.object({ package: z.string(), version: z.string(), release: z.string() }),
  packages: z.record(z.string(), z.string()),
  modules: z.array(z.string()),
  /**
   * What the image offers: sshvisor-agent speaking these protocol versions
   * (docs/guest-protocol.md), or only a console (`agent` absent).
   */
  guest: z.object({ agent: z.object({ minVersion: z.number().int(), maxVersion: z.number().int() }).optional() }),
  files: z.record(z.string(), fileEntry),
});

export type ImageManifest = z.infer<typeof manifestSchema>;

export async function sha256File(path: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  // 4 MiB reads: a root filesystem image is gigabytes (mostly holes), and 64 KiB reads cost a third more.
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) hash.update(chunk as Buffer);
  return { sha256: hash.digest('hex'), size: statSync(path).size };
}
