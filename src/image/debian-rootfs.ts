import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { runStatus } from '../util/exec.js';
import { requireTool } from '../util/tools.js';
import { debianSourceLines, hostAptSources } from './apt-sources.js';
import { assertImageName, assertImageNameFree, imagesDir } from './catalogue.js';
import { mkfsFromDir } from './mkfs-from-dir.js';
import { finishRootfsImage, type ImageProgress } from './rootfs-image.js';
import type { RootfsManifest } from './rootfs-manifest.js';
import { removeWorkDir, withImageWorkDir } from './work-dir.js';

/**
 * What a person expects on a fresh Linux box, and little more: a package
 * manager, a shell, the usual tools, an editor, TLS roots, curl, git,
 * python3, and OpenSSH's server (present, as on any Debian box; sessions go
 * through sshvisor-agent, not through it). netbase: /etc/services and
 * /etc/protocols, which getservbyname() (Python's socket module, curl) reads.
 * No locales: glibc's built-in C.UTF-8 does UTF-8.
 */
export const DEFAULT_DEBIAN_PACKAGES: readonly string[] = [
  'apt', 'bash', 'coreutils', 'procps', 'iproute2', 'less', 'vim-tiny', 'ca-certificates',
  'curl', 'git', 'python3', 'openssh-server', 'netbase',
];

export interface DebianBuildOptions {
  /** Catalogue name (default `debian`). */
  name?: string;
  /** Debian suite (default `bookworm`). */
  suite?: string;
  /** Packages added to the default set (or, with defaultPackages false, the whole set). */
  packages?: readonly string[];
  /** Include DEFAULT_DEBIAN_PACKAGES (default true). */
  defaultPackages?: boolean;
  /** A Debian mirror URL; default: this host's apt sources for the suite (apt-sources.ts). */
  mirror?: string;
}

/**
 * Run in the finished tree ($1) by mmdebstrap. It copies the build host's
 * /etc/hostname and /etc/resolv.conf in (debootstrap's habit): neither may
 * leak into an image (the guest's init binds its own resolv.conf over the
 * empty file). And openssh-server's postinst made host keys, which every VM
 * of the image would share: gone; `ssh-keygen -A` in a VM makes its own.
 */
const CUSTOMIZE_HOOK = 'echo localhost > "$1/etc/hostname" && : > "$1/etc/resolv.conf" && rm -f "$1"/etc/ssh/ssh_host_*_key "$1"/etc/ssh/ssh_host_*_key.pub';

const SUITE_RE = /^[a-z][a-z0-9.-]{0,31}$/;
/** Debian policy's package names, optionally pinned (`=VERSION`). */
const PACKAGE_RE = /^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$/;
const MIRROR_RE = /^(https?|file):\/\/[^\s]+$/;

/**
 * Build a Debian root filesystem image with mmdebstrap (variant apt, as
 * root, into a temporary tree in DATA_DIR/images), make it ext4 with
 * `mkfs.ext4 -d`, check it, and install it as DATA_DIR/images/NAME. The
 * image's /etc/apt/sources.list names the mirror it was built from; apt's
 * package lists are not kept (run `apt-get update` before installing).
 * Throws a UserError, one line, leaving nothing behind, for a bad or taken
 * name, a bad suite, package or mirror, an apt failure (an unknown package,
 * an unreachable mirror), the disk filling up. Returns the manifest.
 */
export async function buildDebianImage(dataDir: string, opts: DebianBuildOptions = {}, progress: ImageProgress = () => {}): Promise<RootfsManifest> {
  const name = opts.name ?? 'debian';
  const suite = opts.suite ?? 'bookworm';
  assertImageName(name);
  assertImageNameFree(dataDir, name);
  if (!SUITE_RE.test(suite)) throw new UserError(`bad Debian suite ${JSON.stringify(suite)}`);
  const packages = [...new Set([...(opts.defaultPackages === false ? [] : DEFAULT_DEBIAN_PACKAGES), ...(opts.packages ?? [])])];
  const bad = packages.find((p) => !PACKAGE_RE.test(p));
  if (bad !== undefined) throw new UserError(`bad Debian package name ${JSON.stringify(bad)}`);
  if (opts.mirror !== undefined && !MIRROR_RE.test(opts.mirror)) throw new UserError(`bad mirror ${JSON.stringify(opts.mirror)}: give an http://, https:// or file:// URL`);
  if (process.getuid?.() !== 0) throw new UserError('building a Debian image needs root (mmdebstrap installs packages as root into the tree)');
  const mmdebstrap = requireTool('mmdebstrap');
  const sources = debianSourceLines(suite, hostAptSources(), opts.mirror);

  return withImageWorkDir(imagesDir(dataDir), name, 'build', `build image ${name}`, async (work) => {
    const tree = join(work.dir, 'tree');
    progress(`mmdebstrap ${suite} from ${sources.mirror}: ${packages.length ? packages.join(' ') : 'the apt variant alone'}`);
    const started = Date.now();
    const include = packages.length ? [`--include=${packages.join(',')}`] : [];
    const args = ['--mode=root', '--variant=apt', '--format=directory', ...include, `--customize-hook=${CUSTOMIZE_HOOK}`, suite, tree, ...sources.lines];
    const r = await runStatus(mmdebstrap, args);
    if (r.code !== 0) {
      // apt's first error says what went wrong ("Unable to locate package x"); mmdebstrap's last line only that apt failed.
      const lines = r.stderr.split('\n').map((l) => l.trim());
      const why = lines.find((l) => /^E: /.test(l) && !/^E: (apt-get|mmdebstrap|run_)/.test(l)) ?? lines.filter(Boolean).pop() ?? `exit ${r.code}`;
      throw new UserError(`mmdebstrap could not build ${suite}: ${why.replace(/^E: /, '')}`);
    }
    progress(`tree made in ${((Date.now() - started) / 1000).toFixed(1)}s; making the ext4 file system (mkfs.ext4 -d)`);
    await mkfsFromDir(tree, work.rootfs, name);
    removeWorkDir(tree);
    const source = { type: 'debian' as const, suite, mirror: sources.mirror, packages };
    return finishRootfsImage(work, source, { env: [] }, `the Debian ${suite} image`, progress);
  });
}
