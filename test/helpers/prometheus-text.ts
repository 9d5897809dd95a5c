/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4),
 * for tests: every line must be blank, a # HELP or # TYPE comment, or a
 * sample; anything else throws, naming the line.
 */

export interface Exposition {
  /** `name{a="x",b="y"}` (labels as written) → value. */
  samples: Map<string, number>;
  types: Map<string, string>;
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = `[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"`;
const SAMPLE = new RegExp(`^(${NAME})(\\{(?:${LABEL}(?:,${LABEL})*,?)?\\})? (\\S+)(?: (-?\\d+))?$`);
const HELP = new RegExp(`^# HELP (${NAME}) .*$`);
const TYPE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const NUMBER = /^(?:[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|[+-]?Inf|NaN)$/;

export function parsePrometheusText(text: string): Exposition {
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  text.split('\n').forEach((line, i) => {
    if (line === '') return;
    const where = `line ${i + 1} ${JSON.stringify(line.slice(0, 120))}`;
    if (line.startsWith('#')) {
      const type = TYPE.exec(line);
      if (type) return void types.set(type[1]!, type[2]!);
      if (HELP.test(line)) return;
      throw new Error(`not a HELP or TYPE comment: ${where}`);
    }
    const m = SAMPLE.exec(line);
    if (!m || !NUMBER.test(m[3]!)) throw new Error(`not a sample: ${where}`);
    const value = m[3]!.endsWith('Inf') ? (m[3]!.startsWith('-') ? -Infinity : Infinity) : Number(m[3]);
    samples.set(`${m[1]}${m[2] ?? ''}`, value);
  });
  return { samples, types };
}

/** The value of one sample; throws if it is absent. */
export function sample(e: Exposition, key: string): number {
  const v = e.samples.get(key);
  if (v === undefined) throw new Error(`no sample ${key} (have: ${[...e.samples.keys()].filter((k) => k.startsWith(key.split('{')[0]!)).join(', ')})`);
  return v;
}
