import { isCurrentImage, loadImage, type GuestImage } from '../../src/image/image.js';
import { buildDefaultImage, imageRecipe } from '../../src/image/build.js';
import { defaultDataDir, defaultImageDir } from '../../src/util/paths.js';

let cached: Promise<GuestImage> | undefined;

/**
 * The default guest image that `npm run setup` built (or SSHVISOR_IMAGE_DIR).
 * If there is none (or it is out of date), build it there once, as setup would.
 */
export function testImage(): Promise<GuestImage> {
  cached ??= (async () => {
    const dir = process.env.SSHVISOR_IMAGE_DIR ?? defaultImageDir(defaultDataDir());
    if (!isCurrentImage(dir, imageRecipe())) await buildDefaultImage(dir);
    return loadImage(dir);
  })();
  return cached;
}
