/** dockerContainerLister against a small Docker API on a unix socket: events instead of listing every round. */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dockerContainerLister } from './docker-lister.ts';

interface Fake {
  rows: Map<string, { state: string; status: string; restarts: number; herdId: string }>;
  requests: string[];
  events: ServerResponse[];
  emit(id: string, action: string): void;
  server: Server;
}

function fakeDocker(socket: string): Promise<Fake> {
  const fake: Fake = {
    rows: new Map(),
    requests: [],
    events: [],
    emit(id, action) {
      for (const e of this.events) e.write(`${JSON.stringify({ status: action, id, Type: 'container', Action: action })}\n`);
    },
    server: createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const path = url.pathname.replace(/^\/v[\d.]+/, '');
      const filters = JSON.parse(url.searchParams.get('filters') ?? '{}') as { id?: string[] };
      fake.requests.push(`${path}${filters.id === undefined ? '' : ` id=${filters.id.map((i) => i.slice(0, 1)).join(',')}`}`);
      if (path === '/events') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.flushHeaders();
        fake.events.push(res);
        return;
      }
      if (path === '/containers/json') {
        const rows = [...fake.rows]
          .filter(([id]) => filters.id === undefined || filters.id.includes(id))
          .map(([id, r]) => ({ Id: id, Names: [`/n-${id.slice(0, 1)}`], Labels: { 'io.herd.id': r.herdId }, State: r.state, Status: r.status }));
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(JSON.stringify(rows));
      }
      const m = /^\/containers\/(\w+)\/json$/.exec(path);
      const row = m === null ? undefined : fake.rows.get(m[1]!);
      if (row === undefined) {
        res.writeHead(404, { 'content-type': 'application/json' });
        return res.end('{"message":"No such container"}');
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ Id: m![1], RestartCount: row.restarts, LogPath: `/var/lib/docker/containers/${m![1]}/${m![1]}-json.log`, HostConfig: { LogConfig: { Type: 'json-file', Config: { 'max-size': '10m' } } } }));
    }),
  };
  return new Promise((resolve) => fake.server.listen(socket, () => resolve(fake)));
}

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const settle = () => new Promise((r) => setTimeout(r, 50));

describe('dockerContainerLister', () => {
  let dir: string;
  let fake: Fake;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'herd-lister-'));
    fake = await fakeDocker(join(dir, 'docker.sock'));
    fake.rows.set(A, { state: 'running', status: 'Up 2 minutes (healthy)', restarts: 0, herdId: 'web-1' });
  });
  afterEach(async () => {
    for (const e of fake.events) e.destroy();
    fake.server.closeAllConnections();
    await new Promise((r) => fake.server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists once, then only what Docker reports as changed; restart count and log file from inspect', async () => {
    const lister = dockerContainerLister(join(dir, 'docker.sock'), { relistSeconds: 3600 });
    const first = await lister.list();
    expect(first).toEqual([{ herdId: 'web-1', name: 'n-a', dockerId: A, state: 'running', health: 'healthy', restartCount: 0, changedAtMs: expect.any(Number), log: { driver: 'json-file', path: `/var/lib/docker/containers/${A}/${A}-json.log`, maxBytes: 10 * 2 ** 20 } }]);
    expect(fake.requests).toEqual(['/events', '/containers/json', `/containers/${A}/json`]);
    const seenAt = first[0]!.changedAtMs!;

    fake.requests.length = 0;
    await new Promise((r) => setTimeout(r, 5));
    expect(await lister.list()).toBe(first); // nothing happened: the same list, no Docker request at all
    expect(fake.requests).toEqual([]);

    // `docker update` (new limits): the container is listed again and reported as changed.
    fake.emit(A, 'update');
    await settle();
    const updated = await lister.list();
    expect(updated[0]!.changedAtMs).toBeGreaterThan(seenAt);
    fake.requests.length = 0;

    // A restart by the restart policy, and a new container.
    fake.rows.get(A)!.restarts = 1;
    fake.emit(A, 'die');
    fake.emit(A, 'start');
    fake.rows.set(B, { state: 'created', status: 'Created', restarts: 0, herdId: 'web-2' });
    fake.emit(B, 'create');
    await settle();
    const listed = await lister.list();
    expect(fake.requests[0]).toBe('/containers/json id=a,b');
    expect(fake.requests.slice(1).sort()).toEqual([`/containers/${A}/json`, `/containers/${B}/json`]);
    expect(listed.map((c) => [c.herdId, c.state, c.restartCount])).toEqual([['web-1', 'running', 1], ['web-2', 'created', 0]]);

    // Destroyed: gone from the list.
    fake.rows.delete(B);
    fake.emit(B, 'destroy');
    await settle();
    fake.requests.length = 0;
    expect((await lister.list()).map((c) => c.herdId)).toEqual(['web-1']);
    expect(fake.requests).toEqual(['/containers/json id=b']);
    lister.close?.();
  });

  it('lists everything again when the events stream was lost, and every relistSeconds', async () => {
    const lister = dockerContainerLister(join(dir, 'docker.sock'), { relistSeconds: 0.2 });
    await lister.list();
    for (const e of fake.events) e.destroy();
    fake.events.length = 0;
    await settle();
    fake.requests.length = 0;
    await lister.list();
    expect(fake.requests.slice(0, 2)).toEqual(['/events', '/containers/json']);
    fake.requests.length = 0;
    await new Promise((r) => setTimeout(r, 250));
    await lister.list();
    expect(fake.requests).toEqual(['/containers/json']);
    lister.close?.();
  });

  it('reports a container with an event as changed when its round is a full list (periodic, or many changes)', async () => {
    const lister = dockerContainerLister(join(dir, 'docker.sock'), { relistSeconds: 0.2 });
    const seenAt = (await lister.list())[0]!.changedAtMs!;
    await new Promise((r) => setTimeout(r, 250)); // the next round is the periodic full list
    fake.emit(A, 'update');
    await settle();
    fake.requests.length = 0;
    const updated = await lister.list();
    expect(fake.requests[0]).toBe('/containers/json'); // a full list, not by id
    expect(updated[0]!.changedAtMs).toBeGreaterThan(seenAt);

    // More than 100 containers with events: one full list; only those with an event are news.
    const ids = Array.from({ length: 101 }, (_, i) => `c${String(i).padStart(63, '0')}`);
    for (const id of ids) fake.rows.set(id, { state: 'running', status: 'Up 1 second', restarts: 0, herdId: id.slice(0, 8) });
    const quiet = 'd'.repeat(64);
    fake.rows.set(quiet, { state: 'running', status: 'Up 1 second', restarts: 0, herdId: 'quiet' });
    await new Promise((r) => setTimeout(r, 250));
    const before = new Map((await lister.list()).map((c) => [c.dockerId, c.changedAtMs]));
    await new Promise((r) => setTimeout(r, 5));
    for (const id of ids) fake.emit(id, 'update');
    await settle();
    fake.requests.length = 0;
    const after = new Map((await lister.list()).map((c) => [c.dockerId, c.changedAtMs]));
    expect(fake.requests[0]).toBe('/containers/json');
    for (const id of ids) expect(after.get(id)).toBeGreaterThan(before.get(id)!);
    expect(after.get(quiet)).toBe(before.get(quiet));
    lister.close?.();
  });

  it('reports Docker being unreachable as DOCKER_FAILED', async () => {
    const lister = dockerContainerLister(join(dir, 'nothing-here.sock'));
    await expect(lister.list()).rejects.toMatchObject({ code: 'DOCKER_FAILED' });
  });
});
