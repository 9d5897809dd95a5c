import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * This host's apt sources (sources.list one-line entries and deb822
 * `.sources` files), so a Debian image is built from the mirror the host
 * already uses (and the only one a locked-down host can reach).
 */

/** One `deb` source: a URI, its suites, its components. */
export interface AptSource {
  uri: string;
  suites: string[];
  components: string[];
}

export const FALLBACK_MIRROR = 'http://deb.debian.org/debian';

/** Parse one-line `deb [opts] URI SUITE COMPONENT...` entries (deb-src and comments skipped). */
export function parseOneLineSources(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').replace(/\[[^\]]*\]/, ' ').trim();
    const [type, uri, suite, ...components] = line.split(/\s+/);
    if (type === 'deb' && uri && suite) out.push({ uri, suites: [suite], components });
  }
  return out;
}

/** Parse deb822 stanzas (Types/URIs/Suites/Components; `Enabled: no` skipped). */
export function parseDeb822Sources(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let key = '';
    for (const line of stanza.split('\n')) {
      if (/^\s*#/.test(line)) continue;
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
      if (m) {
        key = (m[1] as string).toLowerCase();
        fields.set(key, m[2] as string);
      } else if (key && /^\s/.test(line)) {
        fields.set(key, `${fields.get(key) ?? ''} ${line.trim()}`);
      }
    }
    const words = (k: string): string[] => (fields.get(k) ?? '').split(/\s+/).filter(Boolean);
    if (!words('types').includes('deb') || fields.get('enabled')?.trim() === 'no') continue;
    for (const uri of words('uris')) out.push({ uri, suites: words('suites'), components: words('components') });
  }
  return out;
}

/** Every `deb` source configured on this host, in apt's order. */
export function hostAptSources(root = '/etc/apt'): AptSource[] {
  const out: AptSource[] = [];
  const list = join(root, 'sources.list');
  if (existsSync(list)) out.push(...parseOneLineSources(readFileSync(list, 'utf8')));
  const dir = join(root, 'sources.list.d');
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).sort()) {
      const text = readFileSync(join(dir, f), 'utf8');
      if (f.endsWith('.list')) out.push(...parseOneLineSources(text));
      else if (f.endsWith('.sources')) out.push(...parseDeb822Sources(text));
    }
  }
  return out;
}

/**
 * The sources.list lines mmdebstrap gets for `suite`: with `mirror` given,
 * that mirror's `suite main` alone; otherwise the host's entries for the
 * suite, its -updates and its -security (so the image gets the security
 * fixes the host gets), and if the host has none for the suite itself, its
 * Debian mirror (or deb.debian.org) for it. `mirror` in the result is the
 * URI the suite itself comes from, for the manifest.
 */
export function debianSourceLines(suite: string, sources: readonly AptSource[], mirror?: string): { lines: string[]; mirror: string } {
  if (mirror) return { lines: [`deb ${mirror} ${suite} main`], mirror };
  const wanted = [suite, `${suite}-updates`, `${suite}-security`];
  const lines: string[] = [];
  let main: string | undefined;
  for (const s of sources) {
    for (const x of s.suites.filter((x) => wanted.includes(x))) {
      lines.push(`deb ${s.uri} ${x} ${s.components.length ? s.components.join(' ') : 'main'}`);
      if (x === suite) main ??= s.uri;
    }
  }
  if (main === undefined) {
    // The host tracks another suite: take its Debian mirror (not its -security one) for this one.
    main = sources.find((s) => /\/debian\/?$/.test(s.uri) && s.suites.some((x) => !/-security$/.test(x)))?.uri ?? FALLBACK_MIRROR;
    lines.unshift(`deb ${main} ${suite} main`);
  }
  return { lines, mirror: main };
}
