/**
 * Decoding of received payloads: JSON parse, then schema validation. Failures become a
 * HerdError BAD_MESSAGE (or UNKNOWN_COMMAND) whose message names the offending field.
 */
import type { z } from 'zod';
import { HerdError } from './errors.ts';
import { ID_PATTERN } from './topics.ts';
import {
  COMMAND_ARGS,
  COMMAND_TYPES,
  commandEnvelopeSchema,
  PROTOCOL_VERSION,
  type Command,
  type CommandType,
} from './messages.ts';

/** Renders zod issues as "field `a.b`: problem; field `c`: problem". */
export function describeIssues(issues: readonly z.core.$ZodIssue[], prefix = ''): string {
  return issues
    .map((issue) => {
      const path = [prefix, ...issue.path.map(String)].filter((p) => p !== '').join('.');
      let message = issue.message;
      if (issue.code === 'unrecognized_keys') message = `unknown field(s) ${issue.keys.map((k) => `\`${k}\``).join(', ')}`;
      return path === '' ? message : `field \`${path}\`: ${message}`;
    })
    .join('; ');
}

/** The largest message Herd reads (the embedded broker's default packet limit, too): larger ones are refused unread. */
export const MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

export function parseJson(payload: Buffer | string, what: string): unknown {
  if (payload.length > MAX_MESSAGE_BYTES) throw new HerdError('BAD_MESSAGE', `${what} of ${payload.length} bytes is larger than the ${MAX_MESSAGE_BYTES} bytes Herd reads`);
  const text = typeof payload === 'string' ? payload : payload.toString('utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    const snippet = text.length > 80 ? `${text.slice(0, 80)}…` : text;
    throw new HerdError('BAD_MESSAGE', `${what} is not valid JSON (${(err as Error).message}): ${JSON.stringify(snippet)}`);
  }
}

/** Validates a value against a schema; throws BAD_MESSAGE naming every bad field. */
export function validate<S extends z.ZodType>(schema: S, value: unknown, what: string, prefix = ''): z.infer<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw new HerdError('BAD_MESSAGE', `${what} is invalid: ${describeIssues(result.error.issues, prefix)}`);
  return result.data;
}

/** JSON-decodes and validates a payload in one step. */
export function decode<S extends z.ZodType>(schema: S, payload: Buffer | string, what: string): z.infer<S> {
  return validate(schema, parseJson(payload, what), what);
}

export function encode(message: unknown): string {
  return JSON.stringify(message);
}

export function isCommandType(type: string): type is CommandType {
  return Object.hasOwn(COMMAND_ARGS, type);
}

/**
 * Decodes a command: envelope first (so a reply can be addressed even when args are bad),
 * then the args of its type.
 */
export function decodeCommand(payload: Buffer | string): Command {
  const raw = parseJson(payload, 'command');
  const envelope = validate(commandEnvelopeSchema, raw, 'command');
  if (!isCommandType(envelope.type)) {
    throw new HerdError('UNKNOWN_COMMAND', `command type "${envelope.type}" is unknown; known types: ${COMMAND_TYPES.join(', ')}`);
  }
  const args = validate(COMMAND_ARGS[envelope.type], envelope.args, `command "${envelope.type}"`, 'args');
  return { ...envelope, type: envelope.type, args } as Command;
}

/**
 * Best effort: the id and sender of a command that failed validation, so the error can
 * still be replied to. A payload that is not JSON (e.g. truncated) is scanned for its
 * `"id"` and `"from"` strings: a wrong guess only sends a reply nobody waits for.
 */
export function salvageReplyAddress(payload: Buffer | string): { id: string; from: string } | undefined {
  if (payload.length > MAX_MESSAGE_BYTES) return undefined;
  const text = typeof payload === 'string' ? payload : payload.toString('utf8');
  const ok = (s: unknown): s is string => typeof s === 'string' && ID_PATTERN.test(s);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    const id = /"id"\s*:\s*"([^"\\]*)"/.exec(text)?.[1];
    const from = /"from"\s*:\s*"([^"\\]*)"/.exec(text)?.[1];
    return ok(id) && ok(from) ? { id, from } : undefined;
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return undefined;
  const { id, from } = raw as Record<string, unknown>;
  return ok(id) && ok(from) ? { id, from } : undefined;
}

export { PROTOCOL_VERSION };
