/**
 * Keeps protocol/README.md honest: every ```json block marked with
 * `<!-- schema: NAME -->` on the line before it is validated against that schema
 * (commands through decodeCommand, exactly as a daemon would), and the error
 * catalogue table must list every code with its retryable flag and summary.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { decodeCommand, validate } from './codec.ts';
import { ERROR_CATALOGUE, ERROR_CODES } from './errors.ts';
import { COMMAND_TYPES, containerMetricsBatchSchema, containerMetricsSchema, controlEventSchema, controlStatusSchema, hostContainersSchema, hostMetricsSchema, hostStatusSchema, migrationEventSchema, replySchema } from './messages.ts';

const readme = readFileSync(new URL('./README.md', import.meta.url), 'utf8');

const SCHEMAS: Record<string, z.ZodType> = {
  hostStatus: hostStatusSchema,
  hostContainers: hostContainersSchema,
  reply: replySchema,
  migrationEvent: migrationEventSchema,
  hostMetrics: hostMetricsSchema,
  containerMetrics: containerMetricsSchema,
  containerMetricsBatch: containerMetricsBatchSchema,
  controlStatus: controlStatusSchema,
  controlEvent: controlEventSchema,
};
/** `command` is decoded with decodeCommand (envelope + args of its type). */
const KNOWN_MARKERS = [...Object.keys(SCHEMAS), 'command'];

interface Example {
  schema: string | undefined;
  line: number;
  text: string;
}

/** Every ```json block, with the schema named by a `<!-- schema: x -->` marker on the line before it. */
function jsonBlocks(markdown: string): Example[] {
  const lines = markdown.split('\n');
  const blocks: Example[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]?.trim() !== '```json') continue;
    const marker = /^<!--\s*schema:\s*([A-Za-z]+)\s*-->$/.exec(lines[i - 1]?.trim() ?? '');
    const end = lines.findIndex((l, j) => j > i && l.trim() === '```');
    if (end < 0) throw new Error(`README.md line ${i + 1}: unterminated json block`);
    blocks.push({ schema: marker?.[1], line: i + 1, text: lines.slice(i + 1, end).join('\n') });
    i = end;
  }
  return blocks;
}

const examples = jsonBlocks(readme);
const parsed = (schema: string) => examples.filter((e) => e.schema === schema).map((e) => JSON.parse(e.text) as Record<string, unknown>);

describe('protocol/README.md examples', () => {
  it('has examples, and every json block names a known schema', () => {
    expect(examples.length).toBeGreaterThan(10);
    for (const e of examples) {
      expect(e.schema, `README.md line ${e.line}: json block without a <!-- schema: x --> marker`).toBeDefined();
      expect(KNOWN_MARKERS, `README.md line ${e.line}`).toContain(e.schema);
    }
  });

  it.each(examples.map((e) => [`${e.schema} (line ${e.line})`, e] as const))('%s is valid', (_name, e) => {
    // Called directly (not inside expect().not.toThrow()) so a failure shows the whole HerdError message.
    if (e.schema === 'command') {
      expect(decodeCommand(e.text).id).toBe((JSON.parse(e.text) as { id: string }).id);
    } else {
      const schema = SCHEMAS[e.schema ?? ''];
      if (schema === undefined) throw new Error(`unknown schema marker "${e.schema}" at line ${e.line}`);
      expect(validate(schema, JSON.parse(e.text), `README.md example at line ${e.line}`)).toBeDefined();
    }
  });

  it('shows one command of every type', () => {
    const shown = parsed('command').map((c) => c.type);
    for (const type of COMMAND_TYPES) expect(shown, `no example of command "${type}"`).toContain(type);
  });

  it('shows an online status, the offline last will, ok and error replies, and a migration event with timings', () => {
    expect(parsed('hostStatus').map((s) => s.state).sort()).toEqual(['offline', 'online']);
    expect(parsed('hostContainers')).toHaveLength(1);
    expect(new Set(parsed('reply').map((r) => r.ok))).toEqual(new Set([true, false]));
    expect(parsed('migrationEvent').some((m) => m.timings !== undefined)).toBe(true);
  });
});

describe('protocol/README.md error catalogue', () => {
  const rows = new Map(
    readme
      .split('\n')
      .map((l) => /^\|\s*`([A-Z_]+)`\s*\|\s*(yes|no)\s*\|\s*(.*?)\s*\|$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1] as string, { retryable: m[2] === 'yes', summary: m[3] as string }]),
  );

  it.each(ERROR_CODES)('documents %s with its retryable flag and summary', (code) => {
    expect(rows.get(code), `${code} missing from the README catalogue table`).toEqual({ ...ERROR_CATALOGUE[code] });
  });

  it('documents no code that does not exist', () => {
    expect([...rows.keys()].filter((c) => !(ERROR_CODES as string[]).includes(c))).toEqual([]);
  });
});
