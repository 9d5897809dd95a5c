import { readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { run } from '../util/exec.js';
import { requireTool } from '../util/tools.js';
import { UserError } from '../util/errors.js';

/**
 * Modules the guest loads at boot. Debian's cloud kernel builds virtio as
 * modules, and microvm has only virtio-mmio devices, so without these the
 * guest sees no disk and no network.
 */
export const GUEST_MODULES = [
  'virtio_mmio',
  'virtio_blk',
  'virtio_net',
  'virtio-rng',
  // virtio-serial: the guest agent's channel to the gateway (docs/guest-protocol.md).
  'virtio_console',
  // The ACPI power button, so QMP system_powerdown becomes a clean poweroff.
  'button',
  'evdev',
] as const;

function indexModules(moduleRoot: string): Map<string, string> {
  const index = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) walk(path);
      else if (entry.endsWith('.ko')) index.set(basename(entry, '.ko'), path);
    }
  };
  walk(moduleRoot);
  return index;
}

// Module names use - and _ interchangeably; .ko file names keep the author's choice.
const norm = (name: string): string => name.replace(/-/g, '_');

/**
 * Resolve `wanted` and everything they depend on (read with modinfo, since
 * the .deb ships no modules.dep) into a load order: dependencies first.
 */
export async function resolveModules(
  moduleRoot: string,
  wanted: readonly string[],
): Promise<Array<{ name: string; path: string }>> {
  const modinfo = requireTool('modinfo');
  const byName = new Map<string, string>();
  for (const [name, path] of indexModules(moduleRoot)) byName.set(norm(name), path);
  const order: Array<{ name: string; path: string }> = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const visit = async (name: string): Promise<void> => {
    const key = norm(name);
    if (done.has(key)) return;
    if (visiting.has(key)) throw new UserError(`kernel module dependency cycle at ${name}`);
    const path = byName.get(key);
    if (!path) throw new UserError(`kernel module ${name} is not in ${moduleRoot}`);
    visiting.add(key);
    const { stdout } = await run(modinfo, ['-F', 'depends', path]);
    for (const dep of stdout.trim().split(',').filter(Boolean)) await visit(dep);
    visiting.delete(key);
    done.add(key);
    order.push({ name: basename(path, '.ko'), path });
  };
  for (const name of wanted) await visit(name);
  return order;
}
