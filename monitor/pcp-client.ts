/**
 * A client of pmproxy's REST API (PCP). It keeps one context per pmproxy alive: the
 * context is created with `polltimeout` above the poll interval (an idle context expires
 * after polltimeout seconds) and reused by every fetch; when pmproxy no longer knows it
 * (expired, pmproxy restarted) it is re-created once and the request retried.
 *
 * Failures are HerdErrors: PCP_UNAVAILABLE for no answer in time, a refused connection or
 * an HTTP error; BAD_MESSAGE for an answer that is not PCP's JSON (naming what was wrong).
 */
import { z } from 'zod';
import { describeIssues } from '../protocol/codec.ts';
import { HerdError } from '../protocol/errors.ts';

const contextSchema = z.object({ context: z.number().int() });

/**
 * A /pmapi/fetch answer: `{ timestamp, values: [{ name, instances: [{ instance, value }] }] }`
 * checked while its values are collected (string values, e.g. of discrete text metrics,
 * are left out). Written out rather than a zod schema: at 1000 containers an answer has
 * thousands of instances every round, and checking them with zod cost more than the rest
 * of reading it. Returns the first problem as "path: what is wrong" instead of throwing.
 */
export function parseFetchAnswer(body: unknown): PcpFetch | string {
  if (typeof body !== 'object' || body === null) return 'expected an object';
  const { timestamp, values } = body as { timestamp?: unknown; values?: unknown };
  if (typeof timestamp !== 'number' || !Number.isFinite(timestamp)) return 'timestamp: expected a number';
  if (!Array.isArray(values)) return 'values: expected an array';
  const metrics = new Map<string, InstanceValues>();
  for (let m = 0; m < values.length; m++) {
    const v = values[m] as { name?: unknown; instances?: unknown } | null;
    if (typeof v !== 'object' || v === null) return `values.${m}: expected an object`;
    if (typeof v.name !== 'string') return `values.${m}.name: expected a string`;
    const instances = v.instances;
    if (!Array.isArray(instances)) return `values.${m}.instances: expected an array`;
    if (instances.length === 0) continue;
    const out: InstanceValues = new Map();
    for (let i = 0; i < instances.length; i++) {
      const inst = instances[i] as { instance?: unknown; value?: unknown } | null;
      if (typeof inst !== 'object' || inst === null) return `values.${m}.instances.${i}: expected an object`;
      const id = inst.instance;
      if (id !== null && !Number.isInteger(id)) return `values.${m}.instances.${i}.instance: expected an integer or null`;
      const value = inst.value;
      if (typeof value === 'number') out.set(id as number | null, value);
      else if (typeof value !== 'string') return `values.${m}.instances.${i}.value: expected a number or a string`;
    }
    metrics.set(v.name, out);
  }
  return { atSeconds: timestamp, metrics };
}

const indomSchema = z.object({
  instances: z.array(z.object({ instance: z.number().int(), name: z.string() })),
});

const errorSchema = z.object({ message: z.string(), success: z.literal(false) });

/** Instance id → value; the key is null for metrics without instances. */
export type InstanceValues = Map<number | null, number>;

export interface PcpFetch {
  /** pmproxy's timestamp of the values, in seconds. */
  atSeconds: number;
  /** Metric name → values. A metric absent here has no value on that host. */
  metrics: Map<string, InstanceValues>;
}

export interface PcpClientOptions {
  /** e.g. http://127.0.0.1:44322 */
  url: string;
  /** How often the caller fetches; the context's polltimeout is set above it. */
  pollIntervalSeconds: number;
  /** Per-request timeout. */
  timeoutMs?: number;
  /** For tests. */
  fetchImpl?: typeof fetch;
}

export class PcpClient {
  private context: number | undefined;
  private readonly indoms = new Map<string, Map<number, string>>();
  private readonly timeoutMs: number;
  private readonly fetchImpl: typeof fetch;
  readonly url: string;
  readonly pollTimeoutSeconds: number;

  constructor(options: PcpClientOptions) {
    this.url = options.url.replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 3000;
    this.fetchImpl = options.fetchImpl ?? fetch;
    // Longer than the poll interval plus a slow answer, so a context never expires between polls.
    this.pollTimeoutSeconds = Math.ceil(options.pollIntervalSeconds * 3 + this.timeoutMs / 1000 + 5);
  }

  /** The context number in use (undefined before the first request or after it was dropped). */
  get contextId(): number | undefined {
    return this.context;
  }

  /** Fetches current values of `names`. Metrics without values are left out. */
  async fetch(names: readonly string[]): Promise<PcpFetch> {
    const body = await this.withContext((ctx) => `/pmapi/fetch?context=${ctx}&names=${names.map(encodeURIComponent).join(',')}`, 'fetch');
    const parsed = parseFetchAnswer(body);
    if (typeof parsed === 'string') throw new HerdError('BAD_MESSAGE', `pmproxy ${this.url} fetch answer has an unexpected shape: ${parsed}`);
    return parsed;
  }

  /**
   * Instance names of a metric's instance domain (e.g. 0 → "cpu0", 3 → "/docker/<id>"),
   * cached; pass the ids just fetched so that new instances refresh the cache.
   */
  async instanceNames(metric: string, ids: Iterable<number | null> = []): Promise<Map<number, string>> {
    const cached = this.indoms.get(metric);
    if (cached !== undefined && knowsAll(cached, ids)) return cached;
    const body = await this.withContext((ctx) => `/pmapi/indom?context=${ctx}&name=${encodeURIComponent(metric)}`, 'indom');
    const data = this.check(indomSchema, body, `indom of ${metric}`);
    const names = new Map(data.instances.map((i) => [i.instance, i.name] as const));
    this.indoms.set(metric, names);
    return names;
  }

  /** Forgets the context (e.g. after an outage) so the next request creates a new one. */
  reset(): void {
    this.context = undefined;
  }

  private async withContext(path: (ctx: number) => string, what: string): Promise<unknown> {
    const fresh = this.context === undefined;
    const ctx = this.context ?? (await this.createContext());
    const first = await this.request(path(ctx), what);
    if (first.ok) return first.body;
    if (!fresh && first.unknownContext) {
      this.context = await this.createContext();
      const second = await this.request(path(this.context), what);
      if (second.ok) return second.body;
      throw this.httpError(second, what);
    }
    if (first.unknownContext) this.context = undefined;
    throw this.httpError(first, what);
  }

  private async createContext(): Promise<number> {
    const res = await this.request(`/pmapi/context?polltimeout=${this.pollTimeoutSeconds}`, 'context');
    if (!res.ok) throw this.httpError(res, 'context');
    this.context = this.check(contextSchema, res.body, 'context').context;
    this.indoms.clear();
    return this.context;
  }

  private httpError(res: { status: number; message: string }, what: string): HerdError {
    return new HerdError('PCP_UNAVAILABLE', `pmproxy ${this.url} ${what}: HTTP ${res.status}${res.message === '' ? '' : `: ${res.message}`}`);
  }

  private check<S extends z.ZodType>(schema: S, body: unknown, what: string): z.infer<S> {
    const result = schema.safeParse(body);
    if (!result.success) throw new HerdError('BAD_MESSAGE', `pmproxy ${this.url} ${what} answer has an unexpected shape: ${describeIssues(result.error.issues)}`);
    return result.data;
  }

  private async request(path: string, what: string): Promise<{ ok: true; body: unknown } | { ok: false; status: number; message: string; unknownContext: boolean }> {
    let res: Response;
    let text: string;
    try {
      res = await this.fetchImpl(`${this.url}${path}`, { signal: AbortSignal.timeout(this.timeoutMs) });
      text = await res.text();
    } catch (err) {
      const e = err as Error;
      const reason = e.name === 'TimeoutError' || e.name === 'AbortError' ? `no answer within ${this.timeoutMs} ms` : networkReason(e);
      throw new HerdError('PCP_UNAVAILABLE', `pmproxy ${this.url} ${what}: ${reason}`, { cause: err });
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      if (!res.ok) return { ok: false, status: res.status, message: text.slice(0, 120), unknownContext: false };
      const snippet = text.length > 80 ? `${text.slice(0, 80)}…` : text;
      throw new HerdError('BAD_MESSAGE', `pmproxy ${this.url} ${what} answer is not JSON: ${JSON.stringify(snippet)}`);
    }
    const error = errorSchema.safeParse(body);
    if (!res.ok || error.success) {
      const message = error.success ? error.data.message : '';
      return { ok: false, status: res.status, message, unknownContext: /unknown context|invalid context|expired context|context.*expired/i.test(message) };
    }
    return { ok: true, body };
  }
}

function knowsAll(names: Map<number, string>, ids: Iterable<number | null>): boolean {
  for (const i of ids) if (i !== null && !names.has(i)) return false;
  return true;
}

/** fetch() says only "fetch failed"; the reason (ECONNREFUSED…) is in its cause, sometimes an AggregateError. */
function networkReason(err: Error): string {
  const cause = err.cause as (Error & { code?: string; errors?: Array<{ code?: string; message?: string }> }) | undefined;
  const code = cause?.code ?? cause?.errors?.find((e) => e.code !== undefined)?.code;
  if (code !== undefined) return `${err.message} (${code})`;
  return cause?.message === undefined ? err.message : `${err.message}: ${cause.message}`;
}
