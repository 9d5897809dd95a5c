import { isValidVmName } from '../vm/vm-name.js';

/**
 * The SSH username is the whole user interface: `alice` is alice's shell,
 * `alice+console` her serial console, and so on. This is the only place that
 * reads it. The input is whatever bytes a client sent, so nothing here may
 * throw and every reason must be safe to print on a terminal.
 */

export const ROUTE_SUFFIXES = ['console', 'watch', 'logs', 'status', 'token'] as const;
export type RouteSuffix = (typeof ROUTE_SUFFIXES)[number];
export type RouteMode = 'shell' | RouteSuffix;

/** A name no VM can have: it logs in to the management interface instead. */
export const ADMIN_NAME = 'admin';

export type Route = { kind: 'vm'; vm: string; mode: RouteMode } | { kind: 'admin' };
export type RouteResult = { ok: true; route: Route } | { ok: false; reason: string };

const MAX_NAME = 32;
/** Of the username shown back in a reason; keeps reasons bounded whatever was sent. */
const MAX_SHOWN = 40;

/**
 * Quote user input for a one-line message: control, format (bidi overrides)
 * and unpaired surrogate characters become \u escapes so they cannot move the
 * cursor or reorder the line, and long input is cut short.
 */
export function quoteForDisplay(text: string, max = MAX_SHOWN): string {
  const chars = Array.from(text);
  const cut = chars.length > max;
  const body = chars
    .slice(0, max)
    .map((c) => {
      if (c === '"' || c === '\\') return `\\${c}`;
      if (!/[\p{C}\p{Zl}\p{Zp}]/u.test(c)) return c;
      return Array.from({ length: c.length }, (_, i) => `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`).join('');
    })
    .join('');
  return `"${body}${cut ? '...' : ''}"`;
}

const isSuffix = (s: string): s is RouteSuffix => (ROUTE_SUFFIXES as readonly string[]).includes(s);

/** Why `name` is not a valid VM name, or undefined if it is. */
function nameProblem(name: string): string | undefined {
  if (isValidVmName(name)) return undefined;
  if (name === '') return 'empty VM name before "+"';
  const shown = quoteForDisplay(name);
  const length = Array.from(name).length;
  if (length > MAX_NAME) return `name ${shown} is too long (${length} characters, at most ${MAX_NAME})`;
  // Only blame case when it is the whole problem; otherwise the first bad character says more.
  if (isValidVmName(name.toLowerCase())) {
    return `name ${shown} has uppercase letters; names are lowercase: try ${quoteForDisplay(name.toLowerCase())}`;
  }
  const first = Array.from(name)[0] ?? '';
  if (!/^[a-z]$/.test(first)) return `name ${shown} must start with a lowercase letter, not ${quoteForDisplay(first)}`;
  const bad = Array.from(name).find((c) => !/^[a-z0-9-]$/.test(c)) ?? '';
  return `name ${shown} contains ${quoteForDisplay(bad)}; use only lowercase letters, digits and "-"`;
}

/** Parse `NAME` or `NAME+SUFFIX`. Never throws. */
export function parseUsername(username: string): RouteResult {
  if (typeof username !== 'string' || username === '') {
    return { ok: false, reason: 'empty username: connect as NAME@host, e.g. ssh alice@host' };
  }
  const plus = username.indexOf('+');
  const name = plus === -1 ? username : username.slice(0, plus);
  const suffix = plus === -1 ? undefined : username.slice(plus + 1);

  const problem = nameProblem(name);
  if (problem) return { ok: false, reason: problem };

  if (name === ADMIN_NAME) {
    if (suffix !== undefined) return { ok: false, reason: `"${ADMIN_NAME}" is reserved and takes no "+" suffix` };
    return { ok: true, route: { kind: 'admin' } };
  }
  if (suffix === undefined) return { ok: true, route: { kind: 'vm', vm: name, mode: 'shell' } };
  if (!isSuffix(suffix)) {
    const known = ROUTE_SUFFIXES.map((s) => `+${s}`).join(', ');
    const what = suffix === '' ? 'empty suffix after "+"' : `unknown suffix ${quoteForDisplay(`+${suffix}`)}`;
    return { ok: false, reason: `${what}: use ${name} alone or with one of ${known}` };
  }
  return { ok: true, route: { kind: 'vm', vm: name, mode: suffix } };
}
