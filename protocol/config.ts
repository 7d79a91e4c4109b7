/**
 * Config loading shared by every daemon and `herd config check`: read a YAML (or JSON)
 * file, apply overrides from flags, validate against the daemon's strict schema,
 * report every error at once with its path, and freeze the result.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { describeIssues } from './codec.ts';
import { HerdError } from './errors.ts';
import { loadCredentialsFile } from './credentials.ts';
import type { BrokerEndpoint } from './mqtt.ts';

export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value as Record<string, unknown>)) deepFreeze(child);
  }
  return value;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Node's timers fire at once beyond 2^31 − 1 ms (about 24.8 days): every interval, delay or grace of a config is at most this. */
export const timerSeconds = () => z.number().max(2_147_483, 'at most 2147483 s (Node timers overflow beyond)');

/** A problem found while reading the files a config names (`resolveFiles`): reported with the schema's. */
export interface ConfigIssue {
  path: (string | number)[];
  message: string;
}

/** Merges `over` into `base` (objects recursively; anything else replaced). */
export function mergeConfig(base: unknown, over: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(over)) return over === undefined ? base : over;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) if (v !== undefined) out[k] = mergeConfig(base[k], v);
  return out;
}

export function readConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new HerdError('BAD_CONFIG', `cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  let value: unknown;
  try {
    value = parseYaml(text) ?? {};
  } catch (err) {
    throw new HerdError('BAD_CONFIG', `config file ${path} is not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  // `hostId h1` (a missing colon) is the string "hostId h1": taken as an empty config, it would pass with every default.
  if (!isPlainObject(value)) throw new HerdError('BAD_CONFIG', `${path}: expected a YAML mapping, got ${Array.isArray(value) ? 'a list' : `a ${typeof value}`}`);
  return value;
}

/** A schema issue that only repeats a problem `resolveFiles` reported: at its path or under it, or a parent's check naming its field (a policy's `x.args.model: …`). */
function repeats(issue: z.core.$ZodIssue, reported: ConfigIssue): boolean {
  const at = issue.path.map(String).join('.');
  const where = reported.path.join('.');
  return at === where || at.startsWith(`${where}.`) || (where.startsWith(`${at}.`) && issue.message.includes(`.${String(reported.path.at(-1))}: `));
}

/**
 * Loads a config: file (optional) ← overrides, validated by `schema`.
 * Throws BAD_CONFIG listing every problem as `path: message`.
 */
export function loadConfig<S extends z.ZodType>(
  schema: S,
  options: {
    file?: string;
    overrides?: Record<string, unknown>;
    what: string;
    /**
     * Reads files the config names (relative to the config file's directory) into it before
     * validation; a file it cannot read goes into `issues` (and stays as it was in the config),
     * reported with the schema's errors.
     */
    resolveFiles?: (config: unknown, baseDir: string, issues: ConfigIssue[]) => unknown;
  },
): Readonly<z.infer<S>> {
  const fromFile = options.file === undefined ? {} : readConfigFile(options.file);
  const raw = mergeConfig(fromFile, options.overrides ?? {});
  const fileIssues: ConfigIssue[] = [];
  const merged = options.resolveFiles === undefined ? raw : options.resolveFiles(raw, options.file === undefined ? process.cwd() : dirname(resolvePath(options.file)), fileIssues);
  const result = schema.safeParse(merged);
  if (!result.success || fileIssues.length > 0) {
    const schemaIssues = result.success ? [] : result.error.issues.filter((i) => !fileIssues.some((r) => repeats(i, r)));
    const issues = [...fileIssues.map((i): z.core.$ZodIssue => ({ code: 'custom', input: undefined, ...i })), ...schemaIssues];
    const where = options.file === undefined ? options.what : `${options.what} (${options.file})`;
    const lines = describeIssues(issues).split('; ');
    throw new HerdError('BAD_CONFIG', `${where} has ${lines.length} error(s):\n  - ${lines.join('\n  - ')}`);
  }
  return deepFreeze(result.data);
}

/** How a daemon (or the CLI) authenticates to the broker and checks its certificate. */
export const brokerAuthFields = {
  /** YAML file `{ username, password }`, mode 0600 (`herd auth init` writes one per identity). */
  credentialsFile: z.string().optional(),
  username: z.string().optional(),
  /** Prefer credentialsFile: a password here sits in a config file that is often readable. */
  password: z.string().optional(),
  /** CA certificate (PEM) that signed the broker's certificate, for mqtts:// URLs. */
  caFile: z.string().optional(),
};

/** Why `url` cannot name an MQTT broker, as the end of a sentence; undefined when it can. */
export function brokerUrlProblem(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'is not a URL (expected mqtt://host:port or mqtts://host:port)';
  }
  if (!['mqtt:', 'mqtts:', 'tcp:', 'ws:', 'wss:'].includes(parsed.protocol)) return `has unsupported scheme ${parsed.protocol} (expected mqtt: or mqtts:)`;
  return undefined;
}

/** How a daemon reaches the MQTT broker: the same block in every daemon's config. */
export const brokerClientConfigSchema = z
  .strictObject({
    /** mqtt://host:port (or mqtts://) of the control daemon's embedded broker or an external MQTT 3.1.1 broker. */
    url: z.string().default('mqtt://127.0.0.1:1883'),
    ...brokerAuthFields,
  })
  .prefault({});

export interface BrokerAuth {
  credentialsFile?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  caFile?: string | undefined;
}

/** A file a config names (a certificate), read at start; BAD_CONFIG naming the field when it cannot be. */
export function readConfigBytes(path: string, field: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new HerdError('BAD_CONFIG', `${field}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}

/** The credentials and CA a broker block names, read from their files: spread into connectBroker's options. */
export function brokerCredentials(broker: BrokerAuth): { username?: string; password?: string; credentialsFile?: string; ca?: Buffer } {
  const fromFile = broker.credentialsFile === undefined ? undefined : loadCredentialsFile(broker.credentialsFile);
  const username = fromFile?.username ?? broker.username;
  const password = fromFile?.password ?? broker.password;
  const ca = broker.caFile === undefined ? undefined : readConfigBytes(broker.caFile, 'broker.caFile');
  return {
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password }),
    ...(broker.credentialsFile === undefined ? {} : { credentialsFile: broker.credentialsFile }),
    ...(ca === undefined ? {} : { ca }),
  };
}

/**
 * A client command's broker endpoint: the URL and the credentials and CA files it was given
 * (flags), else $HERD_CREDENTIALS and $HERD_BROKER_CA.
 */
export function cliBrokerEndpoint(options: { url: string; credentialsFile?: string | undefined; caFile?: string | undefined }): BrokerEndpoint {
  return {
    url: options.url,
    ...brokerCredentials({ credentialsFile: options.credentialsFile ?? process.env.HERD_CREDENTIALS, caFile: options.caFile ?? process.env.HERD_BROKER_CA }),
  };
}
