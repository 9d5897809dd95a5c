import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { requireTool } from '../util/tools.js';
import { runStatus } from '../util/exec.js';

/**
 * What an OCI import is given, looked at before anything is copied: an OCI
 * image layout directory, an OCI archive (that directory as a tar), or a
 * `docker save` archive; which image in it to take; and, once skopeo has
 * copied it into a layout of our own, the image config's Env and WorkingDir.
 */

export type OciFormat = 'oci-layout' | 'oci-archive' | 'docker-archive';

/** The tag OCI layouts put on a manifest (index.json annotations). */
const REF_ANNOTATION = 'org.opencontainers.image.ref.name';
/** Tags and docker references as skopeo takes them after `transport:path:`. */
const REF_RE = /^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,255}$/;

export interface OciSource {
  format: OciFormat;
  /** The tags in it (OCI: ref.name annotations; docker: RepoTags), in file order. */
  tags: string[];
  /** How many images it holds. */
  images: number;
}

/**
 * Find out what `path` is. Throws a UserError, one line, for a missing path,
 * a directory that is not an OCI layout, a file that is not a tar archive,
 * a truncated one, or a tar that is neither an OCI nor a docker archive.
 * `label` names the path in messages.
 */
export async function inspectOciSource(path: string, label = path): Promise<OciSource> {
  if (!existsSync(path)) throw new UserError(`${label}: no such file or directory`);
  if (statSync(path).isDirectory()) {
    if (!existsSync(join(path, 'oci-layout')) || !existsSync(join(path, 'index.json'))) {
      throw new UserError(`${label} is a directory but not an OCI image layout (no oci-layout and index.json in it)`);
    }
    return fromOciIndex('oci-layout', readFileSync(join(path, 'index.json'), 'utf8'), label);
  }
  const tar = requireTool('tar');
  // Reading the whole listing is what finds a truncated archive: the end is missing.
  const list = await runStatus(tar, ['-tf', path]);
  if (list.code !== 0) {
    // tar names itself by the path it was run as: "/usr/bin/tar: ..." reads better as "tar: ...".
    const why = (list.stderr.trim().split('\n').find((l) => l.trim()) ?? `tar exit ${list.code}`).replace(/^\S*\/tar: /, 'tar: ');
    if (/unexpected (EOF|end of file)/i.test(list.stderr)) throw new UserError(`${label} is a truncated tar archive (${why})`);
    throw new UserError(`${label} is not a readable tar archive (${why})`);
  }
  const members = new Map(list.stdout.split('\n').filter(Boolean).map((m) => [m.replace(/^(\.\/)+/, ''), m]));
  const member = async (name: string): Promise<string> => (await runStatus(tar, ['-xOf', path, members.get(name) as string])).stdout;
  if (members.has('oci-layout') && members.has('index.json')) return fromOciIndex('oci-archive', await member('index.json'), label);
  if (members.has('manifest.json')) return fromDockerManifest(await member('manifest.json'), label);
  throw new UserError(`${label} is a tar archive but neither an OCI archive (no oci-layout, index.json) nor a \`docker save\` archive (no manifest.json)`);
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UserError(`${what} is not JSON (${(err as Error).message})`);
  }
}

function fromOciIndex(format: OciFormat, text: string, label: string): OciSource {
  const index = parseJson(text, `${label}'s index.json`) as { manifests?: { annotations?: Record<string, string> }[] } | null;
  const manifests = Array.isArray(index?.manifests) ? index.manifests : [];
  if (!manifests.length) throw new UserError(`${label} holds no image (its index.json lists no manifests)`);
  const tags = manifests.map((m) => m.annotations?.[REF_ANNOTATION]).filter((t): t is string => typeof t === 'string');
  return { format, tags, images: manifests.length };
}

function fromDockerManifest(text: string, label: string): OciSource {
  const entries = parseJson(text, `${label}'s manifest.json`) as { RepoTags?: string[] | null }[] | null;
  if (!Array.isArray(entries) || !entries.length) throw new UserError(`${label} holds no image (its manifest.json lists none)`);
  const tags = entries.flatMap((e) => (Array.isArray(e.RepoTags) ? e.RepoTags : []));
  return { format: 'docker-archive', tags, images: entries.length };
}

/**
 * The skopeo source for `input` (a path with no ':' in it; skopeo splits on
 * the first one) and the tag recorded: `ref` if given (it must be one of the
 * source's tags), else the only image's tag (or ''). Throws a UserError for
 * an unknown tag, or a source of several images and no `ref`.
 */
export function chooseImage(source: OciSource, input: string, label: string, ref?: string): { skopeoRef: string; ref: string } {
  const transport = source.format === 'oci-layout' ? 'oci' : source.format;
  const tagList = source.tags.length ? `tags: ${source.tags.join(', ')}` : 'it has no tags';
  if (ref !== undefined) {
    if (!REF_RE.test(ref)) throw new UserError(`bad --ref ${JSON.stringify(ref)}`);
    const known = source.format === 'docker-archive' ? source.tags.some((t) => sameDockerRef(t, ref)) : source.tags.includes(ref);
    if (!known) throw new UserError(`${label} has no image tagged ${ref} (${tagList})`);
    return { skopeoRef: `${transport}:${input}:${ref}`, ref };
  }
  if (source.images > 1) throw new UserError(`${label} holds ${source.images} images (${tagList}): pick one with --ref`);
  return { skopeoRef: `${transport}:${input}`, ref: source.tags[0] ?? '' };
}

/** `docker save` records docker.io/library/x:1; people write x:1. */
function sameDockerRef(full: string, given: string): boolean {
  const short = (r: string): string => r.replace(/^docker\.io\//, '').replace(/^library\//, '');
  return full === given || short(full) === short(given);
}

/** What the image config says every process starts with. */
export interface OciSessionConfig {
  /** config.Env, exactly as the image has it (KEY=VALUE strings). */
  env: string[];
  /** config.WorkingDir; undefined when the image has none. */
  workingDir?: string;
}

/** Read the config of the one image in the OCI layout `layoutDir` (which skopeo wrote): its Env and WorkingDir. */
export function readOciConfig(layoutDir: string): OciSessionConfig {
  const blob = (digest: unknown): unknown => {
    const m = /^sha256:([0-9a-f]{64})$/.exec(String(digest));
    if (!m) throw new UserError(`the copied image refers to a blob ${String(digest)} that is not sha256`);
    return parseJson(readFileSync(join(layoutDir, 'blobs', 'sha256', m[1] as string), 'utf8'), `blob ${String(digest)}`);
  };
  const index = parseJson(readFileSync(join(layoutDir, 'index.json'), 'utf8'), 'the copied index.json') as { manifests?: { digest?: string }[] };
  const manifest = blob(index.manifests?.[0]?.digest) as { config?: { digest?: string } };
  const config = blob(manifest.config?.digest) as { config?: { Env?: unknown; WorkingDir?: unknown } };
  const env = config.config?.Env;
  const workingDir = config.config?.WorkingDir;
  return {
    env: Array.isArray(env) ? env.filter((e): e is string => typeof e === 'string') : [],
    ...(typeof workingDir === 'string' && workingDir !== '' ? { workingDir } : {}),
  };
}
