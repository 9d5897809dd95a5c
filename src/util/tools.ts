import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { MissingToolError } from './errors.js';

/** Host programs sshvisor runs, and the Debian package that provides each. */
export const TOOL_PACKAGES = {
  'qemu-system-x86_64': 'qemu-system-x86',
  'qemu-img': 'qemu-utils',
  'mkfs.ext4': 'e2fsprogs',
  fallocate: 'util-linux',
  busybox: 'busybox-static',
  go: 'golang-go',
  cpio: 'cpio',
  'apt-get': 'apt',
  'dpkg-deb': 'dpkg',
  modinfo: 'kmod',
  gcc: 'gcc',
  ssh: 'openssh-client',
  'ssh-keygen': 'openssh-client',
  debugfs: 'e2fsprogs',
  e2fsck: 'e2fsprogs',
  cp: 'coreutils',
  tar: 'tar',
  skopeo: 'skopeo',
  umoci: 'umoci',
  mmdebstrap: 'mmdebstrap',
} as const;

export type ToolName = keyof typeof TOOL_PACKAGES;

const EXTRA_DIRS = ['/usr/sbin', '/sbin'];
const found = new Map<string, string>();

/** Absolute path of `tool`, or a MissingToolError naming the package to install. */
export function requireTool(tool: ToolName): string {
  const cached = found.get(tool);
  if (cached) return cached;
  const dirs = [...(process.env.PATH ?? '').split(delimiter), ...EXTRA_DIRS];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, tool);
    try {
      accessSync(candidate, constants.X_OK);
      found.set(tool, candidate);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  throw new MissingToolError(tool, TOOL_PACKAGES[tool]);
}

/** Which files a Debian package installed are needed at a fixed path (not on PATH). */
export function requireFile(path: string, debianPackage: string): string {
  try {
    accessSync(path, constants.R_OK);
    return path;
  } catch {
    throw new MissingToolError(path, debianPackage);
  }
}
