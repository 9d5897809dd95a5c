import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { UserError, errorMessage } from '../util/errors.js';
import { defaultDataDir, defaultImageDir } from '../util/paths.js';
import {
  SERVE_FIELDS,
  STATIC_DEFAULTS,
  serveConfigSchema,
  type ServeConfig,
  type ServeConfigKey,
} from './config-schema.js';

export type { ServeConfig } from './config-schema.js';

const KEYS = Object.keys(SERVE_FIELDS) as ServeConfigKey[];

const flagName = (key: string): string => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
const envName = (key: string): string => `SSHVISOR_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;

/** Values are echoed back in errors; keep a pasted blob from flooding the terminal. */
function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

type Partial = { [K in ServeConfigKey]?: ServeConfig[K] };

/**
 * Check one value against its field's schema. `describe` names the field the
 * way the user wrote it (--max-vms, SSHVISOR_MAX_VMS, "maxVms"), so the error
 * points at the right place; `as` is the value as the user typed it.
 */
function checkField<K extends ServeConfigKey>(
  key: K,
  value: unknown,
  describe: string,
  { as = value, where = '' }: { as?: unknown; where?: string } = {},
): ServeConfig[K] {
  const result = serveConfigSchema.shape[key].safeParse(value);
  if (!result.success) {
    const why = result.error.issues[0]?.message ?? 'invalid value';
    throw new UserError(`${where}invalid ${describe} ${show(as)}: ${why}`);
  }
  return result.data as ServeConfig[K];
}

/**
 * Flags and env vars are text. Turn what is clearly a number or a boolean
 * into one and leave anything else as-is, so the schema rejects it with the
 * field's own message ("must be an integer from 1 to 65535").
 */
function fromText(key: ServeConfigKey, text: string, cwd: string): unknown {
  switch (SERVE_FIELDS[key].kind) {
    case 'int':
      return /^[+-]?\d+$/.test(text.trim()) ? Number(text.trim()) : text;
    case 'bool': {
      const t = text.trim().toLowerCase();
      if (t === '1' || t === 'true') return true;
      if (t === '0' || t === 'false') return false;
      return text;
    }
    case 'path':
      return text === '' ? text : resolve(cwd, text);
    case 'string':
      return text;
    case 'list':
      return text.trim() === '' ? [] : text.split(',').map((t) => t.trim());
  }
}

function fromFlags(flags: Readonly<Record<string, unknown>>, cwd: string): Partial {
  const out: Record<string, unknown> = {};
  for (const key of KEYS) {
    const raw = flags[key];
    if (raw === undefined) continue;
    const value = typeof raw === 'string' ? fromText(key, raw, cwd) : raw;
    out[key] = checkField(key, value, flagName(key), { as: raw });
  }
  return out as Partial;
}

function fromEnv(env: Readonly<Record<string, string | undefined>>, cwd: string): Partial {
  const out: Record<string, unknown> = {};
  for (const key of KEYS) {
    const raw = env[envName(key)];
    // An empty variable is how shells spell "unset" (FOO= cmd).
    if (raw === undefined || raw === '') continue;
    out[key] = checkField(key, fromText(key, raw, cwd), envName(key), { as: raw });
  }
  return out as Partial;
}

/** A JSON object with the same camelCase keys; relative paths are relative to the file. */
function fromFile(file: string): Partial {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : errorMessage(err);
    throw new UserError(`config file ${file}: cannot read it: ${why}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new UserError(`config file ${file}: not valid JSON: ${errorMessage(err)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new UserError(`config file ${file}: must be a JSON object, e.g. {"port": 2222}`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, raw] of Object.entries(parsed)) {
    if (!Object.hasOwn(SERVE_FIELDS, key)) {
      throw new UserError(`config file ${file}: unknown key ${show(key)} (known keys: ${KEYS.join(', ')})`);
    }
    const k = key as ServeConfigKey;
    const value = SERVE_FIELDS[k].kind === 'path' && typeof raw === 'string' && raw !== '' ? resolve(dirname(file), raw) : raw;
    out[k] = checkField(k, value, show(key), { as: raw, where: `config file ${file}: ` });
  }
  return out as Partial;
}

export interface LoadConfigInput {
  /** Commander's opts() for `serve`: strings (or booleans) by camelCase field name, plus `config`. */
  flags: Readonly<Record<string, unknown>>;
  env: Readonly<Record<string, string | undefined>>;
  /** Relative paths in flags and env resolve against this (default process.cwd()). */
  cwd?: string;
}

/**
 * The serve configuration: flags > SSHVISOR_* env > JSON file (--config or
 * SSHVISOR_CONFIG) > defaults. Every value given is validated, even one a
 * higher-precedence source overrides, so a typo never lies dormant.
 */
export function loadConfig({ flags, env, cwd = process.cwd() }: LoadConfigInput): ServeConfig {
  const configFlag = flags.config;
  if (configFlag !== undefined && (typeof configFlag !== 'string' || configFlag === '')) {
    throw new UserError(`invalid --config ${show(configFlag)}: must be a file path`);
  }
  const configFile = configFlag ?? (env.SSHVISOR_CONFIG || undefined);
  const file = configFile === undefined ? {} : fromFile(resolve(cwd, configFile));
  const merged: Partial = { ...file, ...fromEnv(env, cwd), ...fromFlags(flags, cwd) };

  const dataDir = merged.dataDir ?? resolve(cwd, defaultDataDir());
  const full = {
    ...STATIC_DEFAULTS,
    dataDir,
    keysDir: join(dataDir, 'keys'),
    imageDir: defaultImageDir(dataDir),
    ...merged,
  };
  // Each field was checked on its own; this only guards against a default going stale.
  const result = serveConfigSchema.safeParse(full);
  if (!result.success) throw new Error(`sshvisor bug: default config invalid: ${result.error.message}`);
  return Object.freeze(result.data);
}

/**
 * Add every serve flag to `cmd`. Commander applies no defaults here: an
 * option left out must stay undefined so env and the config file can fill it.
 */
export function registerServeOptions(cmd: Command): Command {
  cmd.option('--config <file>', 'JSON config file with the same settings in camelCase (or SSHVISOR_CONFIG)');
  for (const key of KEYS) {
    const { arg, help } = SERVE_FIELDS[key];
    const env = envName(key);
    if (arg === undefined) {
      cmd.option(flagName(key), `${help} [${env}]`);
      cmd.option(`--no-${flagName(key).slice(2)}`, `turn ${flagName(key)} off`);
    } else {
      cmd.option(`${flagName(key)} <${arg}>`, `${help} [${env}]`);
    }
  }
  return cmd;
}
