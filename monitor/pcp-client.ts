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

const fetchSchema = z.object({
  context: z.number().int().optional(),
  /** Seconds since the epoch, with nanoseconds. */
  timestamp: z.number(),
  values: z.array(
    z.object({
      name: z.string(),
      instances: z.array(z.object({ instance: z.number().int().nullable(), value: z.union([z.number(), z.string()]) })),
    }),
  ),
});

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
    const data = this.check(fetchSchema, body, 'fetch');
    const metrics = new Map<string, InstanceValues>();
    for (const v of data.values) {
      if (v.instances.length === 0) continue;
      const values: InstanceValues = new Map();
      for (const i of v.instances) if (typeof i.value === 'number') values.set(i.instance, i.value);
      metrics.set(v.name, values);
    }
    return { atSeconds: data.timestamp, metrics };
  }

  /**
   * Instance names of a metric's instance domain (e.g. 0 → "cpu0", 3 → "/docker/<id>"),
   * cached; pass the ids just fetched so that new instances refresh the cache.
   */
  async instanceNames(metric: string, ids: Iterable<number | null> = []): Promise<Map<number, string>> {
    const cached = this.indoms.get(metric);
    if (cached !== undefined && [...ids].every((i) => i === null || cached.has(i))) return cached;
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
      return { ok: false, status: res.status, message, unknownContext: /unknown context|invalid context|context.*expired/i.test(message) };
    }
    return { ok: true, body };
  }
}

/** fetch() says only "fetch failed"; the reason (ECONNREFUSED…) is in its cause, sometimes an AggregateError. */
function networkReason(err: Error): string {
  const cause = err.cause as (Error & { code?: string; errors?: Array<{ code?: string; message?: string }> }) | undefined;
  const code = cause?.code ?? cause?.errors?.find((e) => e.code !== undefined)?.code;
  if (code !== undefined) return `${err.message} (${code})`;
  return cause?.message === undefined ? err.message : `${err.message}: ${cause.message}`;
}
