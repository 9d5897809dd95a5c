/**
 * The command-line pieces every bench shares: integer options, --accel,
 * --image-dir (and the guest image it names).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { AccelMode } from '../../src/vm/driver.js';
import { loadImage, type GuestImage } from '../../src/image/image.js';
import { MANIFEST_FILE } from '../../src/image/manifest.js';
import { defaultDataDir, defaultImageDir } from '../../src/util/paths.js';
import { UserError } from '../../src/util/errors.js';

/** `--name`'s value as an integer of at least `min`. */
export function intOption(name: string, text: string, min = 1): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new UserError(`--${name} must be an integer >= ${min}, not ${text}`);
  return n;
}

/** --accel as given (undefined when not given: the server or driver then picks). */
export function accelOption(text: string | undefined): AccelMode | undefined {
  if (text !== undefined && !['auto', 'kvm', 'tcg'].includes(text)) throw new UserError(`--accel must be auto, kvm or tcg, not ${text}`);
  return text as AccelMode | undefined;
}

/** --image-dir, else $SSHVISOR_IMAGE_DIR, else the default data dir's image. */
export function imageDirOption(text: string | undefined): string {
  return text ?? process.env.SSHVISOR_IMAGE_DIR ?? defaultImageDir(defaultDataDir());
}

export function loadBenchImage(dir: string): GuestImage {
  if (!existsSync(join(dir, MANIFEST_FILE))) {
    throw new UserError(`no guest image in ${dir}: run \`npm run setup\` (or pass --image-dir / set SSHVISOR_IMAGE_DIR)`);
  }
  return loadImage(dir);
}
