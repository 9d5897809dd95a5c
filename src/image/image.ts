import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { MANIFEST_FILE, manifestSchema, type ImageManifest } from './manifest.js';
import { GUEST_CONTRACT_VERSION } from './guest-contract.js';

/** What a VM boots: a kernel, an optional initramfs, and what the guest offers. */
export interface GuestImage {
  name: string;
  kernel: string;
  initrd?: string;
  /** Extra kernel arguments the image needs. */
  append: string[];
  /** The guest runs sshvisor-agent and honours the guest contract (guest-contract.ts); false: console only. */
  agent: boolean;
  manifest?: ImageManifest;
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
