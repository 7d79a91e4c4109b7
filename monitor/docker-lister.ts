/**
 * A host's Herd-managed containers from Docker, kept current by Docker's events stream
 * instead of listing every container every round: listing 1000 containers is ~1 MB of
 * JSON every 2 s, while a container changes state rarely.
 *
 * - The first round, a round after the events stream was (re)connected, and one round
 *   every `relistSeconds` list everything (a missed event cannot last).
 * - Between them, a container that had an event is listed again by id (one request for all
 *   of them), which also drops a container that was destroyed.
 * - `RestartCount` and the log file are not in Docker's list: a container is inspected when first seen and
 *   after each event about it (start, restart, die…); while the events stream is down, when
 *   its state changed between two lists (a quick restart in between is then missed).
 * - `changedAtMs` tells the sampler when Docker last said something about a container (an
 *   event, e.g. `update` of its limits, or first sight), so it reads limits again only then.
 * - Between changes every round gets the same array of the same objects (nothing is copied).
 */
import Docker from 'dockerode';
import { HerdError } from '../protocol/errors.ts';
import { HERD_ID_LABEL, HERD_MIGRATION_LABEL, type ContainerLister, type ContainerLogFile, type TrackedContainer } from './container-metrics.ts';
import { parseDockerSize } from './json-log-tail.ts';

type Closable = NodeJS.ReadableStream & { destroy?: () => void };

export interface DockerListerOptions {
  timeoutMs?: number;
  /** Full list at least this often even when events flow (default 30). */
  relistSeconds?: number;
}

export function toTracked(row: Docker.ContainerInfo): TrackedContainer {
  const c: TrackedContainer = {
    herdId: row.Labels[HERD_ID_LABEL] ?? '',
    name: (row.Names[0] ?? '').replace(/^\//, ''),
    dockerId: row.Id,
    state: row.State,
  };
  const health = /\((healthy|unhealthy|health: starting)\)/.exec(row.Status)?.[1];
  if (health !== undefined) c.health = health === 'health: starting' ? 'starting' : health;
  const migrationId = row.Labels[HERD_MIGRATION_LABEL];
  if (migrationId !== undefined && migrationId !== '') c.migrationId = migrationId;
  return c;
}

export function dockerContainerLister(socketPath: string, options: DockerListerOptions = {}): ContainerLister {
  const docker = new Docker({ socketPath, timeout: options.timeoutMs ?? 3000 });
  // Events are quiet for long stretches: no request timeout on that connection.
  const streaming = new Docker({ socketPath });
  const relistMs = (options.relistSeconds ?? 30) * 1000;
  const known = new Map<string, TrackedContainer>();
  /** What inspect says of a container (Docker's list has neither its restart count nor its log file). */
  const inspected = new Map<string, { restartCount: number; log: ContainerLogFile }>();
  /** Containers with an event since they were last listed and inspected. */
  const dirty = new Set<string>();
  let events: Closable | undefined;
  /** What list() returns until something changes. */
  let current: TrackedContainer[] | undefined;
  let fullListDue = true;
  let lastFullListMs = 0;
  let closed = false;

  const openEvents = async (): Promise<void> => {
    if (events !== undefined || closed) return;
    let stream: Closable;
    try {
      stream = (await streaming.getEvents({ filters: { type: ['container'], label: [HERD_ID_LABEL] } })) as Closable;
    } catch {
      return; // every round lists everything until the stream is back
    }
    events = stream;
    fullListDue = true; // events before the stream opened were not seen
    let rest = '';
    stream.on('data', (chunk: Buffer | string) => {
      const lines = (rest + chunk.toString()).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        try {
          const id = (JSON.parse(line) as { id?: string }).id;
          if (id !== undefined) dirty.add(id);
        } catch {
          // not an event line
        }
      }
    });
    const lost = () => {
      if (events === stream) events = undefined;
    };
    stream.on('end', lost);
    stream.on('close', lost);
    stream.on('error', lost);
  };

  const list = async (filters: Record<string, string[]>): Promise<Docker.ContainerInfo[]> => {
    try {
      return await docker.listContainers({ all: true, filters: { label: [HERD_ID_LABEL], ...filters } });
    } catch (err) {
      throw new HerdError('DOCKER_FAILED', `Docker at ${socketPath}: ${(err as Error).message}`, { cause: err });
    }
  };

  const inspectRestarts = async (ids: string[]): Promise<void> => {
    const queue = [...ids];
    const worker = async () => {
      for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
        try {
          const info = await docker.getContainer(id).inspect();
          const logConfig = info.HostConfig?.LogConfig;
          const maxBytes = parseDockerSize(logConfig?.Config?.['max-size']);
          inspected.set(id, { restartCount: info.RestartCount, log: { driver: logConfig?.Type ?? '', path: info.LogPath ?? '', ...(maxBytes === undefined ? {} : { maxBytes }) } });
        } catch {
          dirty.add(id); // gone or Docker busy: again next round
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(8, queue.length) }, worker));
  };

  return {
    async list() {
      await openEvents();
      const now = Date.now();
      const changed = [...dirty];
      // Many changes at once (a host restarted): one full list is cheaper than a long id filter.
      const full = fullListDue || events === undefined || now - lastFullListMs >= relistMs || changed.length > 100;
      dirty.clear();
      let moved: Set<string>;
      try {
        moved = await refresh(full, changed, now);
      } catch (err) {
        for (const id of changed) dirty.add(id);
        throw err;
      }
      // Inspected: new containers, those with an event, and (while events are down) those whose state changed.
      for (const id of changed) moved.add(id);
      const inspect: string[] = [];
      for (const id of known.keys()) if (!inspected.has(id) || moved.has(id)) inspect.push(id);
      if (inspect.length > 0) await inspectRestarts(inspect);
      if (current === undefined || full || changed.length > 0 || inspect.length > 0) {
        current = [];
        for (const c of known.values()) {
          const info = inspected.get(c.dockerId);
          if (info !== undefined) {
            c.restartCount = info.restartCount;
            c.log = info.log;
          }
          current.push(c);
        }
      }
      return current;
    },
    close() {
      closed = true;
      const stream = events;
      events = undefined;
      stream?.destroy?.();
    },
  };

  /** Lists everything or the changed containers; returns the ids that are new or changed state. */
  async function refresh(full: boolean, changed: string[], now: number): Promise<Set<string>> {
    const before = new Map<string, TrackedContainer>(known);
    /** A container seen for the first time, or with news: when it last changed. */
    const tracked = (r: Docker.ContainerInfo, news: boolean): TrackedContainer => {
      const c = toTracked(r);
      const old = before.get(r.Id);
      c.changedAtMs = news || old === undefined || old.state !== c.state ? now : old.changedAtMs ?? now;
      return c;
    };
    if (full) {
      const rows = await list({});
      // After the events stream (re)connected, events may have been missed: everything is news.
      // Otherwise the containers with an event are (a periodic or many-changes full list consumes
      // their events too: an `update` of limits would go unseen until LIMITS_REFRESH_SECONDS).
      const withEvent = new Set(changed);
      known.clear();
      for (const r of rows) known.set(r.Id, tracked(r, fullListDue || withEvent.has(r.Id)));
      for (const id of inspected.keys()) if (!known.has(id)) inspected.delete(id);
      fullListDue = false;
      lastFullListMs = now;
    } else if (changed.length > 0) {
      const rows = await list({ id: changed });
      for (const id of changed) known.delete(id);
      for (const r of rows) known.set(r.Id, tracked(r, true));
      for (const id of changed) if (!known.has(id)) inspected.delete(id);
    }
    const moved = new Set<string>();
    for (const [id, c] of known) if (before.get(id)?.state !== c.state) moved.add(id);
    return moved;
  }
}
