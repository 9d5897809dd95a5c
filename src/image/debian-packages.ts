import { mkdtempSync, readdirSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../util/exec.js';
import { requireTool } from '../util/tools.js';
import { UserError } from '../util/errors.js';

/**
 * Fetch a Debian package file with `apt-get download` (no install, works
 * without root) into a fresh temp dir and return the .deb's path.
 */
export async function downloadDeb(pkg: string, workDir: string): Promise<string> {
  const aptGet = requireTool('apt-get');
  const dir = mkdtempSync(join(workDir, 'deb-'));
  // apt's sandbox user must be able to write here, or apt warns on every run.
  chmodSync(dir, 0o777);
  try {
    await run(aptGet, ['download', '-q', pkg], { cwd: dir });
  } catch (err) {
    throw new UserError(
      `could not download Debian package ${pkg} (${(err as Error).message}); is \`apt-get update\` done and the Debian mirror reachable?`,
    );
  }
  const deb = readdirSync(dir).find((f) => f.endsWith('.deb'));
  if (!deb) throw new UserError(`apt-get download ${pkg} produced no .deb file`);
  return join(dir, deb);
}

export async function debField(debFile: string, field: string): Promise<string> {
  const { stdout } = await run(requireTool('dpkg-deb'), ['-f', debFile, field]);
  return stdout.trim();
}

export async function extractDeb(debFile: string, destDir: string): Promise<void> {
  await run(requireTool('dpkg-deb'), ['-x', debFile, destDir]);
}

/**
 * The kernel image package behind Debian's `linux-image-cloud-amd64`
 * metapackage: download the metapackage, read its dependency, fetch that.
 */
export async function downloadCloudKernel(workDir: string): Promise<{ deb: string; pkg: string; version: string }> {
  const meta = await downloadDeb('linux-image-cloud-amd64', workDir);
  const depends = await debField(meta, 'Depends');
  const match = /(linux-image-[0-9][^\s,(]*-cloud-amd64)/.exec(depends);
  if (!match?.[1]) throw new UserError(`linux-image-cloud-amd64 depends on no kernel image package (Depends: ${depends})`);
  const pkg = match[1];
  const deb = await downloadDeb(pkg, workDir);
  return { deb, pkg, version: await debField(deb, 'Version') };
}

/** Versions of installed host packages, for the image manifest. */
export async function installedVersions(pkgs: readonly string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const pkg of pkgs) {
    try {
      const { stdout } = await run('dpkg-query', ['-W', '-f', '${Version}', pkg]);
      out[pkg] = stdout.trim();
    } catch {
      out[pkg] = 'not installed';
    }
  }
  return out;
}

export function makeWorkDir(): { dir: string; dispose(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'sshvisor-image-'));
  return { dir, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

