/**
 * The web dashboard of the control daemon (Fastify): the page and its script from
 * ./public, uPlot from its npm package (nothing is fetched from the network at run time),
 * and a small JSON API:
 *
 * | route                      | what                                                        |
 * |----------------------------|-------------------------------------------------------------|
 * | GET  /api/state            | everything the page shows, at once (first load, reconnects) |
 * | GET  /api/events           | server-sent events: one `update` per change (live-state.ts) |
 * | POST /api/control/pause    | {reason?}: pause the loop (only with `dashboard.actions`)  |
 * | POST /api/control/resume   | resume it                                                   |
 * | POST /api/control/drain    | {host, cancel?}: drain a host, or cancel the drain          |
 *
 * Read-only by default. With `dashboard.actions: true` the actions need HTTP basic auth of
 * an identity in the broker's users file, and are allowed exactly when that identity may
 * send the same control command over the broker (protocol/access.ts): the CLI's rules.
 *
 * A browser sends cached basic credentials with any request to this origin, even one another
 * site's page makes (CSRF). So every request other than GET/HEAD/OPTIONS must carry
 * `content-type: application/json`, which a cross-site page can send only after a CORS
 * preflight that this server never grants (a form or a text/plain fetch cannot), and is
 * refused when the browser says it comes from elsewhere: `Sec-Fetch-Site` other than
 * same-origin (or none), or an `Origin` other than this server's (crossSiteProblem).
 *
 * An action's checks, in this order: the request's form (415 not JSON, 403 cross-site), who
 * sends it (401 no or wrong credentials, 403 not allowed), then its body (400: an empty body
 * is `{}`, malformed JSON or a wrong field is BAD_MESSAGE), then the action (its error's
 * status). Every error, Fastify's own included, answers `{error: {code, message}}`.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { z } from 'zod';
import { mayCommand, mayPublish, operatorClientId } from '../../protocol/access.ts';
import { verifyPassword, type UserEntry } from '../../protocol/credentials.ts';
import { HerdError, toHerdError, type ErrorCode } from '../../protocol/errors.ts';
import { listenOn } from '../../protocol/listen.ts';
import type { CommandType } from '../../protocol/messages.ts';
import { topics } from '../../protocol/topics.ts';
import type { DashboardUpdate, LiveState } from './live-state.ts';
import type { DashboardConfig } from './dashboard-config.ts';

/** What the page shows besides the live state: built by the daemon on every GET /api/state. */
export type StateBuilder = () => Record<string, unknown>;

/** The control loop's actions, when it runs. */
export interface DashboardActions {
  pause(reason: string | undefined): unknown;
  resume(): unknown;
  drain(host: string, cancel: boolean): unknown;
}

export interface DashboardDeps {
  nodeId: string;
  live: LiveState;
  state: StateBuilder;
  actions?: DashboardActions;
  /** The broker's identities as they are now (for actions; the users file is reloaded on SIGHUP). */
  users?: () => readonly UserEntry[];
  tls?: { cert: Buffer; key: Buffer };
  log: Logger;
}

export interface DashboardServer {
  readonly url: string;
  close(): Promise<void>;
}

const PUBLIC_DIR = join(dirname(fileURLToPath(import.meta.url)), 'public');
const UPLOT_DIR = dirname(createRequire(import.meta.url).resolve('uplot/dist/uPlot.iife.min.js'));
const HEARTBEAT_MS = 15_000;
/** Updates buffered for one event-stream client before it is dropped. */
const MAX_BUFFERED_BYTES = 8 * 2 ** 20;

const STATUS_OF: Partial<Record<ErrorCode, number>> = { BAD_USAGE: 400, BAD_MESSAGE: 400, NOT_AUTHORIZED: 403, UNKNOWN_HOST: 404, CONFLICT: 409, HOST_OFFLINE: 409 };

function sendError(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.code(status).send({ error: { code, message } });
}

/**
 * A JSON body that could not be parsed, kept as the body instead of failing the request at
 * parse time: parsing comes before the route's handler, and a request without credentials
 * must get its 401 (not a 400 that tells an anonymous client what the action would accept).
 */
class MalformedBody {
  constructor(readonly message: string) {}
}

/**
 * Why a state-changing request may not come from the dashboard's own page (CSRF), with its
 * HTTP status; undefined when it may. A request without Origin and Sec-Fetch-Site (curl, the
 * CLI's tests) passes on its content type alone.
 */
function crossSiteProblem(request: Pick<FastifyRequest, 'headers' | 'protocol'>): { status: number; code: string; message: string } | undefined {
  const type = (request.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (type !== 'application/json') return { status: 415, code: 'BAD_MESSAGE', message: `actions take a JSON body (content-type: application/json), not ${type === '' ? 'none' : type}` };
  const site = request.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return { status: 403, code: 'NOT_AUTHORIZED', message: `refused a ${String(site)} request (Sec-Fetch-Site): actions come from the dashboard's own page` };
  const origin = request.headers.origin;
  if (origin !== undefined && origin !== originOf(`${request.protocol}://${request.headers.host ?? ''}`)) return { status: 403, code: 'NOT_AUTHORIZED', message: `refused a request from ${origin} (Origin): actions come from the dashboard's own page` };
  return undefined;
}

const originOf = (url: string): string | undefined => {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
};

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

const pauseBody = z.strictObject({ reason: z.string().max(500).optional() }).prefault({});
const drainBody = z.strictObject({ host: z.string().min(1), cancel: z.boolean().optional() });

/** Builds the app without listening (tests use inject). */
export async function buildDashboardApp(config: DashboardConfig, deps: DashboardDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    // A request the router refuses before any route (a URL that does not decode): the API's shape too.
    frameworkErrors: (error, _request, reply) => sendError(reply, 400, 'BAD_MESSAGE', error.message),
    ...(deps.tls === undefined ? {} : { https: { cert: deps.tls.cert, key: deps.tls.key } }),
  }) as unknown as FastifyInstance;
  // Before any route: a route keeps the error handler in place when it is declared.
  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    if (error instanceof HerdError) return sendError(reply, STATUS_OF[error.code] ?? 500, error.code, error.message);
    // Fastify's own refusals (a body over the limit, a bad URL) keep their status, in the API's shape.
    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500) return sendError(reply, status, 'BAD_MESSAGE', error.message);
    deps.log.error({ method: request.method, url: request.url, err: error.message }, 'dashboard request failed');
    return sendError(reply, 500, 'INTERNAL', error.message);
  });
  // The actions' JSON: an empty body is {} (resume has nothing to say; the page may send
  // nothing); a malformed one is kept as such for the handler to refuse after the credentials.
  const defaultJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if ((body as string).trim() === '') return done(null, {});
    defaultJson(request, body as string, (err: Error | null, parsed?: unknown) => done(null, err === null ? parsed : new MalformedBody(err.message)));
  });
  // Before the body is parsed and before any route: see crossSiteProblem.
  app.addHook('onRequest', async (request, reply) => {
    if (SAFE_METHODS.has(request.method)) return;
    const problem = crossSiteProblem(request);
    if (problem === undefined) return;
    deps.log.warn({ method: request.method, url: request.url, origin: request.headers.origin, site: request.headers['sec-fetch-site'], contentType: request.headers['content-type'] }, `dashboard request refused: ${problem.message}`);
    return sendError(reply, problem.status, problem.code, problem.message);
  });
  await app.register(fastifyStatic, { root: PUBLIC_DIR, prefix: '/', index: 'index.html' });
  await app.register(fastifyStatic, { root: UPLOT_DIR, prefix: '/vendor/', decorateReply: false, allowedPath: (p) => p === '/uPlot.iife.min.js' || p === '/uPlot.min.css' });

  app.get('/api/state', async () => ({ nodeId: deps.nodeId, generatedAt: new Date().toISOString(), actions: config.actions && deps.actions !== undefined, ...deps.state() }));

  app.get('/api/events', (request, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write('retry: 2000\n\n');
    const send = (u: DashboardUpdate) => {
      // A client that stopped reading is dropped rather than buffered without end; the page reconnects and reloads the state.
      if (res.writableLength > MAX_BUFFERED_BYTES) {
        res.destroy();
        return;
      }
      res.write(`event: update\ndata: ${JSON.stringify(u)}\n\n`);
    };
    const unsubscribe = deps.live.subscribe(send);
    const heartbeat = setInterval(() => res.write(': heartbeat\n\n'), HEARTBEAT_MS);
    request.raw.on('close', () => {
      clearInterval(heartbeat);
      unsubscribe();
    });
  });

  const action = (command: CommandType, run: (request: FastifyRequest) => unknown) => async (request: FastifyRequest, reply: FastifyReply) => {
    if (!config.actions) return sendError(reply, 403, 'NOT_AUTHORIZED', 'the dashboard is read-only (dashboard.actions: false in the control config)');
    if (deps.actions === undefined) return sendError(reply, 409, 'CONFLICT', 'the control loop is off (loop.enabled: false): nothing to pause or drain');
    const who = await authenticate(request, deps.users?.() ?? []);
    if (typeof who === 'string') {
      reply.header('www-authenticate', 'Basic realm="herd", charset="UTF-8"');
      return sendError(reply, 401, 'NOT_AUTHORIZED', who);
    }
    const clientId = operatorClientId(who.username, 'herd-dashboard', deps.nodeId);
    const decision = [mayPublish(who, clientId, topics.controlCommands(deps.nodeId)), mayCommand(clientId, command)].find((d) => !d.allowed);
    if (decision !== undefined) return sendError(reply, 403, 'NOT_AUTHORIZED', decision.reason ?? `${who.username} may not send ${command}`);
    if (request.body instanceof MalformedBody) return sendError(reply, 400, 'BAD_MESSAGE', `bad request body: ${request.body.message}`);
    try {
      // Awaited here: an action that rejects answers with its error's status, not a bare 500.
      const result = await run(request);
      deps.log.info({ user: who.username, command }, 'dashboard action');
      return result;
    } catch (err) {
      const e = toHerdError(err);
      return sendError(reply, STATUS_OF[e.code] ?? 500, e.code, e.message);
    }
  };
  const parse = <T>(schema: z.ZodType<T>, body: unknown): T => {
    const r = schema.safeParse(body ?? {});
    if (!r.success) throw new HerdError('BAD_MESSAGE', `bad request body: ${r.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')}`);
    return r.data;
  };
  app.post('/api/control/pause', action('control.pause', (r) => deps.actions?.pause(parse(pauseBody, r.body).reason)));
  app.post('/api/control/resume', action('control.resume', () => deps.actions?.resume()));
  app.post('/api/control/drain', action('control.drain', (r) => {
    const b = parse(drainBody, r.body);
    return deps.actions?.drain(b.host, b.cancel === true);
  }));
  app.setNotFoundHandler((request, reply) => sendError(reply, 404, 'NOT_FOUND', `no ${request.method} ${request.url} here (the page is at /, its API under /api/)`));
  await app.ready();
  return app;
}

/** The identity of a basic-auth header, or why there is none. */
async function authenticate(request: FastifyRequest, users: readonly UserEntry[]): Promise<UserEntry | string> {
  const header = request.headers.authorization;
  if (header === undefined || !header.startsWith('Basic ')) return 'actions need the user name and password of an operator identity (HTTP basic auth; herd auth init writes them)';
  const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const username = colon < 0 ? decoded : decoded.slice(0, colon);
  const user = users.find((u) => u.username === username);
  if (user === undefined || colon < 0 || !(await verifyPassword(decoded.slice(colon + 1), user.passwordHash))) return `unknown user or wrong password for "${username}"`;
  return user;
}

export async function serveDashboard(config: DashboardConfig, deps: DashboardDeps): Promise<DashboardServer> {
  const app = await buildDashboardApp(config, deps);
  const port = await listenOn(app.server, config.host, config.port, 'the dashboard', 'dashboard.host, dashboard.port, or dashboard.enabled: false');
  const shown = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `${deps.tls === undefined ? 'http' : 'https'}://${shown}:${port}/`;
  deps.log.info({ url, actions: config.actions }, 'dashboard served');
  return {
    url,
    close: async () => {
      app.server.closeAllConnections?.();
      await app.close();
    },
  };
}
