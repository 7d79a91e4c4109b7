import { get } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { HerdError } from '../../protocol/errors.ts';
import { hashPassword, type UserEntry } from '../../protocol/credentials.ts';
import { silentLogger } from '../../protocol/log.ts';
import { PROTOCOL_VERSION } from '../../protocol/messages.ts';
import { dashboardConfigSchema } from './dashboard-config.ts';
import { buildDashboardApp, serveDashboard, type DashboardDeps, type DashboardServer } from './dashboard-server.ts';
import { LiveState } from './live-state.ts';

const users: UserEntry[] = [
  { username: 'alice', role: 'operator', passwordHash: hashPassword('secret') },
  { username: 'mon', role: 'monitor', passwordHash: hashPassword('m') },
];
const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

function deps(over: Partial<DashboardDeps> = {}): DashboardDeps & { calls: string[] } {
  const calls: string[] = [];
  return {
    nodeId: 'lab',
    live: new LiveState(),
    state: () => ({ hosts: [{ hostId: 'h1' }] }),
    actions: {
      pause: (reason) => calls.push(`pause ${reason ?? ''}`),
      resume: () => calls.push('resume'),
      drain: (host, cancel) => {
        if (host === 'nope') throw new HerdError('UNKNOWN_HOST', 'unknown host "nope"');
        return calls.push(`drain ${host} ${cancel}`);
      },
    },
    users: () => users,
    log: silentLogger,
    calls,
    ...over,
  };
}

describe('dashboard server', () => {
  let server: DashboardServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('serves the page, its script and uPlot from the package, and nothing else of the disk', async () => {
    const app = await buildDashboardApp(dashboardConfigSchema.parse({}), deps());
    const page = await app.inject('/');
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('<script src="/dashboard.js">');
    expect((await app.inject('/dashboard.js')).statusCode).toBe(200);
    const uplot = await app.inject('/vendor/uPlot.iife.min.js');
    expect(uplot.statusCode).toBe(200);
    expect(uplot.body).toContain('uPlot');
    expect((await app.inject('/vendor/uPlot.cjs.js')).statusCode).toBe(404);
    expect((await app.inject('/vendor/../package.json')).statusCode).toBe(404);
    const missing = await app.inject('/api/nothing');
    expect(missing.statusCode).toBe(404);
    expect(missing.json().error.message).toContain('/api/nothing');
    await app.close();
  });

  it('answers the state with the node id and whether actions are on', async () => {
    const app = await buildDashboardApp(dashboardConfigSchema.parse({}), deps());
    const r = await app.inject('/api/state');
    expect(r.json()).toMatchObject({ nodeId: 'lab', actions: false, hosts: [{ hostId: 'h1' }] });
    await app.close();
  });

  it('is read-only unless actions are on', async () => {
    const d = deps();
    const app = await buildDashboardApp(dashboardConfigSchema.parse({}), d);
    const r = await app.inject({ method: 'POST', url: '/api/control/pause', headers: { authorization: basic('alice', 'secret') }, payload: {} });
    expect(r.statusCode).toBe(403);
    expect(r.json().error.message).toContain('read-only');
    expect(d.calls).toEqual([]);
    await app.close();
  });

  it('authorizes actions as the CLI: a known identity, its password, and its role may send the command', async () => {
    const d = deps();
    const app = await buildDashboardApp(dashboardConfigSchema.parse({ actions: true }), d);
    const post = (url: string, authorization?: string, payload: object = {}) => app.inject({ method: 'POST', url, ...(authorization === undefined ? {} : { headers: { authorization } }), payload });
    const none = await post('/api/control/pause');
    expect(none.statusCode).toBe(401);
    expect(none.headers['www-authenticate']).toContain('Basic');
    expect((await post('/api/control/pause', basic('alice', 'wrong'))).statusCode).toBe(401);
    expect((await post('/api/control/pause', basic('bob', 'secret'))).json().error.message).toContain('"bob"');
    const monitor = await post('/api/control/pause', basic('mon', 'm'));
    expect(monitor.statusCode).toBe(403);
    expect(monitor.json().error.message).toMatch(/monitor/);
    expect((await post('/api/control/pause', basic('alice', 'secret'), { reason: 'maintenance' })).statusCode).toBe(200);
    expect((await post('/api/control/resume', basic('alice', 'secret'))).statusCode).toBe(200);
    expect((await post('/api/control/drain', basic('alice', 'secret'), { host: 'h2' })).statusCode).toBe(200);
    const bad = await post('/api/control/drain', basic('alice', 'secret'), { hots: 'h2' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.message).toMatch(/host/);
    const unknown = await post('/api/control/drain', basic('alice', 'secret'), { host: 'nope' });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().error).toMatchObject({ code: 'UNKNOWN_HOST' });
    expect(d.calls).toEqual(['pause maintenance', 'resume', 'drain h2 false']);
    await app.close();
  });

  it('checks credentials before the body: an empty body is {}, malformed JSON a BAD_MESSAGE after the 401, an async action\'s error keeps its status', async () => {
    const d = deps({
      actions: {
        pause: () => ({ paused: true }),
        resume: () => ({ paused: false }),
        drain: async (host) => {
          await new Promise((r) => setTimeout(r, 1));
          if (host === 'nope') throw new HerdError('UNKNOWN_HOST', 'unknown host "nope"');
          return { draining: [host] };
        },
      },
    });
    const app = await buildDashboardApp(dashboardConfigSchema.parse({ actions: true }), d);
    const json = { 'content-type': 'application/json' };
    const post = (url: string, payload: string | undefined, authorization?: string) => app.inject({ method: 'POST', url, headers: { ...json, ...(authorization === undefined ? {} : { authorization }) }, ...(payload === undefined ? {} : { payload }) });
    const alice = basic('alice', 'secret');

    const empty = await post('/api/control/resume', undefined, alice);
    expect(empty.statusCode).toBe(200);
    expect(empty.json()).toEqual({ paused: false });
    expect((await post('/api/control/pause', '', alice)).json()).toEqual({ paused: true });

    // Whatever the body, no credentials is 401.
    for (const payload of ['{host:', '', '{"host":"h1"}']) {
      const anonymous = await post('/api/control/drain', payload);
      expect(anonymous.statusCode, payload).toBe(401);
      expect(anonymous.json().error.code).toBe('NOT_AUTHORIZED');
    }
    const malformed = await post('/api/control/drain', '{host:', alice);
    expect(malformed.statusCode).toBe(400);
    expect(malformed.json()).toEqual({ error: { code: 'BAD_MESSAGE', message: expect.stringContaining('bad request body') } });
    expect((await post('/api/control/resume', '{"x":', alice)).statusCode).toBe(400);
    const poisoned = await post('/api/control/pause', '{"__proto__":{"x":1}}', alice);
    expect(poisoned.statusCode).toBe(400);
    expect(poisoned.json().error.code).toBe('BAD_MESSAGE');

    const unknown = await post('/api/control/drain', '{"host":"nope"}', alice);
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toEqual({ error: { code: 'UNKNOWN_HOST', message: 'unknown host "nope"' } });
    expect((await post('/api/control/drain', '{"host":"h2"}', alice)).json()).toEqual({ draining: ['h2'] });

    const tooLarge = await post('/api/control/pause', JSON.stringify({ reason: 'x'.repeat(2 * 2 ** 20) }), alice);
    expect(tooLarge.statusCode).toBe(413);
    expect(tooLarge.json().error.code).toBe('BAD_MESSAGE');
    const badUrl = await app.inject('/%zz');
    expect(badUrl.statusCode).toBe(400);
    expect(badUrl.json().error.code).toBe('BAD_MESSAGE');
    await app.close();
  });

  it('says when the loop is off', async () => {
    const app = await buildDashboardApp(dashboardConfigSchema.parse({ actions: true }), deps({ actions: undefined }));
    const r = await app.inject({ method: 'POST', url: '/api/control/resume', headers: { authorization: basic('alice', 'secret') }, payload: {} });
    expect(r.statusCode).toBe(409);
    expect(r.json().error.message).toContain('loop is off');
    await app.close();
  });

  it('refuses a cross-site request (CSRF): a body that is not JSON, another site by Sec-Fetch-Site or Origin', async () => {
    const d = deps();
    const app = await buildDashboardApp(dashboardConfigSchema.parse({ actions: true }), d);
    const auth = basic('alice', 'secret');
    const post = (url: string, headers: Record<string, string>, payload = '{}') => app.inject({ method: 'POST', url, headers: { authorization: auth, host: '127.0.0.1:9480', ...headers }, payload });
    // What a form or a "simple" cross-site fetch can send, with the browser's cached basic credentials.
    const plain = await post('/api/control/resume', { 'content-type': 'text/plain' }, 'x');
    expect(plain.statusCode).toBe(415);
    expect(plain.json().error.message).toContain('application/json');
    expect((await post('/api/control/pause', { 'content-type': 'application/x-www-form-urlencoded' }, 'reason=x')).statusCode).toBe(415);
    expect((await post('/api/control/resume', {})).statusCode).toBe(415);
    const json = { 'content-type': 'application/json' };
    for (const headers of [{ 'sec-fetch-site': 'cross-site' }, { 'sec-fetch-site': 'same-site' }, { origin: 'https://evil.example' }, { origin: 'http://127.0.0.1:8080' }, { origin: 'null' }] as Array<Record<string, string>>) {
      const r = await post('/api/control/resume', { ...json, ...headers });
      expect(r.statusCode, JSON.stringify(headers)).toBe(403);
      expect(r.json().error.message).toContain("dashboard's own page");
    }
    expect(d.calls).toEqual([]);
    // The page itself (a same-origin fetch), and a client that is no browser.
    expect((await post('/api/control/resume', { 'content-type': 'application/json; charset=utf-8', 'sec-fetch-site': 'same-origin', origin: 'http://127.0.0.1:9480' })).statusCode).toBe(200);
    expect((await post('/api/control/pause', json, '{"reason":"curl"}')).statusCode).toBe(200);
    expect(d.calls).toEqual(['resume', 'pause curl']);
    expect((await app.inject('/api/state')).statusCode).toBe(200);
    await app.close();
  });

  it('refuses actions on a network address without TLS', () => {
    const r = dashboardConfigSchema.safeParse({ actions: true, host: '10.0.0.1' });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.message).toContain('dashboard.tls');
    expect(dashboardConfigSchema.safeParse({ actions: true, host: '10.0.0.1', tls: { certFile: 'c', keyFile: 'k' } }).success).toBe(true);
  });

  it('streams every live update as a server-sent event', async () => {
    const d = deps();
    server = await serveDashboard(dashboardConfigSchema.parse({ port: 0 }), d);
    const text = await new Promise<string>((resolve, reject) => {
      const req = get(`${server?.url}api/events`, (res) => {
        expect(res.headers['content-type']).toBe('text/event-stream');
        let body = '';
        res.on('data', (chunk: Buffer) => {
          body += chunk.toString();
          if (body.includes('event: update')) d.live.host({ v: PROTOCOL_VERSION, hostId: 'h2', at: new Date().toISOString(), stale: false, cpuUtil: 0.9 });
          if (body.includes('"hostId":"h2"')) {
            req.destroy();
            resolve(body);
          }
        });
      });
      req.on('error', reject);
      // The first update once the stream is open.
      setTimeout(() => d.live.host({ v: PROTOCOL_VERSION, hostId: 'h1', at: new Date().toISOString(), stale: false, cpuUtil: 0.5 }), 200);
    });
    expect(text).toContain('retry: 2000');
    expect(text).toMatch(/event: update\ndata: \{"type":"host-metrics","hostId":"h1"/);
    expect(text).toContain('"cpu":0.9');
  });

  it('names the address it cannot listen on', async () => {
    server = await serveDashboard(dashboardConfigSchema.parse({ port: 0 }), deps());
    const port = Number(new URL(server.url).port);
    await expect(serveDashboard(dashboardConfigSchema.parse({ port }), deps())).rejects.toThrow(new RegExp(`dashboard cannot listen on 127.0.0.1:${port}: EADDRINUSE`));
  });
});
