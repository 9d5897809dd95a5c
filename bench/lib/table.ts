/**
 * What every bench prints and saves: a plain-text table on stdout and a JSON
 * file under bench/results/ (git-ignored), plus the summary statistics both use.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
}

/** Median, min and max of the samples (median of an even count: mean of the middle two). */
export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) return { n: 0, median: NaN, min: NaN, max: NaN };
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { n: s.length, median, min: s[0]!, max: s[s.length - 1]! };
}

export type Cell = string | number;

/** Milliseconds as a table cell: whole numbers, or '-' for a missing value. */
export function ms(value: number | undefined): string {
  return value === undefined || Number.isNaN(value) ? '-' : Math.round(value).toString();
}

/** A fixed-width table: numbers (and numeric-looking strings) right-aligned, text left-aligned. */
export function formatTable(headers: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const text = rows.map((r) => headers.map((_, i) => String(r[i] ?? '')));
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number' || /^-?[\d.]+$|^-$/.test(String(r[i] ?? ''))));
  const width = headers.map((h, i) => Math.max(h.length, ...text.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (numeric[i] ? c.padStart(width[i]!) : c.padEnd(width[i]!))).join('  ').trimEnd();
  return [line(headers), line(width.map((w) => '-'.repeat(w))), ...text.map(line)].join('\n');
}

/** The repository root: the nearest directory above this file (src or dist) holding a package.json. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
}

/** Write `data` as pretty JSON to `path`, or to bench/results/<name>.json; returns the path written. */
export function writeResultsJson(name: string, data: unknown, path?: string): string {
  const out = path ? resolve(path) : join(repoRoot(), 'bench', 'results', `${name}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(data, null, 2) + '\n');
  return out;
}

/** The p-th percentile (0-100) by the nearest-rank method: a value that was actually observed. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const s = [...samples].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[Math.min(rank, s.length) - 1]!;
}
