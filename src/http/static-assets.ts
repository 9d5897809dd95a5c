import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The web page's files, served by sshvisor itself: the page from
 * src/http/web/ and xterm.js from the installed @xterm/xterm package. Nothing
 * is fetched from the network or built at run time. The page lives beside
 * the sources (tsc only compiles TypeScript), so it is looked for next to
 * this module and, when running the compiled dist/, in the source tree.
 */

export interface Asset {
  body: Buffer;
  contentType: string;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

function webDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, 'web'), resolve(here, '..', '..', '..', 'src', 'http', 'web')];
  const found = candidates.find((d) => existsSync(join(d, 'index.html')));
  if (!found) throw new Error(`the web page's files are missing (looked in ${candidates.join(', ')})`);
  return found;
}

/** URL path → file, read once at start (a few hundred KiB in all). */
export function loadAssets(): Map<string, Asset> {
  const dir = webDir();
  const require = createRequire(import.meta.url);
  const files: [string, string][] = [
    ['/', join(dir, 'index.html')],
    ['/app.js', join(dir, 'app.js')],
    ['/app.css', join(dir, 'app.css')],
    ['/vendor/xterm.js', require.resolve('@xterm/xterm/lib/xterm.js')],
    ['/vendor/xterm.css', require.resolve('@xterm/xterm/css/xterm.css')],
  ];
  return new Map(
    files.map(([path, file]) => [path, { body: readFileSync(file), contentType: TYPES[file.slice(file.lastIndexOf('.'))] ?? 'application/octet-stream' }]),
  );
}

/** Scripts and styles from this origin only; the page talks to this origin only. xterm.js adds style elements, hence 'unsafe-inline' for styles. */
export const PAGE_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; font-src 'self' data:; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};
