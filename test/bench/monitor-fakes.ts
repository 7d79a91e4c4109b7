/**
 * Stand-ins for the monitor benchmark's synthetic rows (more containers than the lab
 * holds): a pmproxy that answers with the recorded PCP responses (test/fixtures/pcp)
 * grown to N cgroup instances, a Docker API on a unix socket listing N containers (with
 * an events stream, and a json-file log per container written like dockerd's default log
 * driver writes it; the logs API answers too, for other drivers), and a cgroup v1
 * + /proc tree in a temp dir. They run in the benchmark's process, so their CPU is not
 * counted as the monitor's.
 */
import { appendFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { formatNanoTime } from '../../monitor/log-store.ts';
import { writeContainerCgroup } from '../support/cgroup-tree.ts';

const FIXTURES = new URL('../fixtures/pcp/', import.meta.url);
const fixture = (name: string): any => JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8'));

export interface SyntheticContainer {
  herdId: string;
  name: string;
  dockerId: string;
  pid: number;
}

export function syntheticContainers(n: number): SyntheticContainer[] {
  return Array.from({ length: n }, (_, i) => ({
    herdId: `bench-s${i}`,
    name: `bench-s${i}`,
    dockerId: `${i.toString(16).padStart(8, '0')}${'5'.repeat(56)}`,
    pid: 100_000 + i,
  }));
}

const CGROUP_METRICS = ['cgroup.cpuacct.stat.user', 'cgroup.cpuacct.stat.system'];
const HOST_COUNTER = /^(kernel\.percpu\.cpu|disk\.all\.(total|read|write|avactive)|network\.interface)/;

/** A pmproxy answering like PCP 6 does, with `containers` as cgroup instances under /<parent>/. */
export function startFakePmproxy(containers: SyntheticContainer[], parent: string): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const started = Date.now();
  let nextContext = 5000;
  const contexts = new Set<number>();
  const indomBase = fixture('indom-cgroup.cpuacct.stat.user.json');
  const cgroupInstances = [...indomBase.instances, ...containers.map((c, i) => ({ instance: 10_000 + i, name: `/${parent}/${c.dockerId}`, labels: {} }))];
  const hostFetch = fixture('fetch-host.json');
  const cgroupFetch = fixture('fetch-cgroup.json');
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const json = (status: number, body: unknown) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    if (url.pathname === '/pmapi/context') {
      const ctx = nextContext++;
      contexts.add(ctx);
      return json(200, { ...fixture('context.json'), context: ctx });
    }
    const ctx = Number(url.searchParams.get('context'));
    if (!contexts.has(ctx)) return json(400, { context: ctx, message: `unknown context identifier: ${ctx}`, success: false });
    if (url.pathname === '/pmapi/indom') {
      const name = url.searchParams.get('name') ?? '';
      if (name.startsWith('cgroup.')) return json(200, { ...indomBase, instances: cgroupInstances });
      return json(200, fixture(`indom-${name}.json`));
    }
    if (url.pathname === '/pmapi/fetch') {
      const elapsed = (Date.now() - started) / 1000;
      const names = url.searchParams.get('names') ?? '';
      if (names.startsWith('cgroup.')) {
        const values = CGROUP_METRICS.map((name) => {
          const recorded = cgroupFetch.values.find((v: { name: string }) => v.name === name) ?? { pmid: '3.0.0', instances: [] };
          // Like PCP 6.0.3 here: the cpuacct.stat file's ticks passed through (see writeSyntheticCgroups), growing slowly.
          return { pmid: recorded.pmid, name, instances: [...recorded.instances, ...containers.map((_, i) => ({ instance: 10_000 + i, value: 100_000 + Math.round(elapsed * 0.2) + (i % 7) }))] };
        });
        return json(200, { context: ctx, timestamp: Date.now() / 1000, values });
      }
      const values = hostFetch.values.map((v: { name: string; instances: Array<{ instance: number | null; value: number }> }) =>
        HOST_COUNTER.test(v.name) ? { ...v, instances: v.instances.map((i) => ({ ...i, value: i.value + Math.round(elapsed * 50) })) } : v,
      );
      return json(200, { ...hostFetch, context: ctx, timestamp: Date.now() / 1000, values });
    }
    json(404, { message: `no ${url.pathname}`, success: false });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      resolve({ url: `http://127.0.0.1:${port}`, server, close: () => closeServer(server) });
    });
  });
}

/**
 * A Docker API on a unix socket: list, inspect, an events stream, and a followed log
 * stream per container that says "tick" every `tickSeconds` (like the real sleepers).
 */
export function startFakeDocker(socketPath: string, containers: SyntheticContainer[], tickSeconds = 10): Promise<{ close(): Promise<void>; logStreams(): number }> {
  const logStreams = new Set<ServerResponse>();
  // Logs as dockerd's default json-file driver keeps them: one file per container beside the socket.
  const logDir = join(dirname(socketPath), 'containers');
  mkdirSync(logDir, { recursive: true });
  const logPath = (c: SyntheticContainer) => join(logDir, `${c.dockerId}-json.log`);
  for (const c of containers) writeFileSync(logPath(c), '');
  // Rows shaped like dockerd 20.10's (~900 bytes each), so listing costs what it would.
  const rows = containers.map((c) => ({
    Id: c.dockerId,
    Names: [`/${c.name}`],
    Image: 'herd/busybox',
    ImageID: `sha256:${'c3'.repeat(32)}`,
    Command: "sh -c 'while true; do echo tick; sleep 10; done'",
    Created: 1795391063,
    Ports: [],
    Labels: { 'io.herd.id': c.herdId },
    State: 'running',
    Status: 'Up 5 minutes',
    HostConfig: { NetworkMode: 'none' },
    NetworkSettings: { Networks: { none: { IPAMConfig: null, Links: null, Aliases: null, NetworkID: 'a9'.repeat(32), EndpointID: 'e1'.repeat(32), Gateway: '', IPAddress: '', IPPrefixLen: 0, IPv6Gateway: '', GlobalIPv6Address: '', GlobalIPv6PrefixLen: 0, MacAddress: '', DriverOpts: null } } },
    Mounts: [],
  }));
  const byId = new Map(containers.map((c) => [c.dockerId, c]));
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').replace(/^\/v\d+\.\d+/, '').split('?')[0] ?? '/';
    if (path === '/containers/json') {
      const text = JSON.stringify(rows);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      return res.end(text);
    }
    if (path === '/events') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.flushHeaders();
      return;
    }
    const m = /^\/containers\/([0-9a-f]+)\/(json|logs)$/.exec(path);
    const c = m === null ? undefined : byId.get(m[1]!);
    if (m === null || c === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' });
      return res.end('{"message":"No such container"}');
    }
    if (m[2] === 'json') {
      const text = JSON.stringify({ Id: c.dockerId, Name: `/${c.name}`, RestartCount: 0, State: { Status: 'running', Running: true }, LogPath: logPath(c), HostConfig: { LogConfig: { Type: 'json-file', Config: {} } } });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      return res.end(text);
    }
    res.writeHead(200, { 'content-type': 'application/vnd.docker.raw-stream' });
    res.flushHeaders();
    logStreams.add(res);
    req.on('close', () => logStreams.delete(res));
  });
  // Every container writes a line once per tickSeconds, spread over the period (as dockerd's json-file driver writes it).
  let round = 0;
  const perStep = Math.max(1, Math.ceil(containers.length / (tickSeconds * 10)));
  const ticker = setInterval(() => {
    for (let k = 0; k < perStep; k++) {
      const c = containers[(round++) % containers.length]!;
      appendFileSync(logPath(c), `${JSON.stringify({ log: 'tick\n', stream: 'stdout', time: formatNanoTime(BigInt(Date.now()) * 1_000_000n) })}\n`);
    }
  }, 100);
  return new Promise((resolve, reject) => {
    rmSync(socketPath, { force: true });
    server.once('error', reject);
    server.listen(socketPath, () =>
      resolve({
        logStreams: () => logStreams.size,
        close: async () => {
          clearInterval(ticker);
          for (const r of logStreams) r.destroy();
          server.closeAllConnections();
          await closeServer(server);
        },
      }),
    );
  });
}

/** The cgroup v1 files and /proc/<pid>/net/dev the monitor reads, for each container, under `root`. */
export function writeSyntheticCgroups(root: string, parent: string, containers: SyntheticContainer[]): { cgroupRoot: string; procRoot: string } {
  for (const c of containers) {
    writeContainerCgroup(root, parent, c.dockerId, c.pid, {
      'memory/memory.usage_in_bytes': '1048576\n',
      'memory/memory.limit_in_bytes': '9223372036854771712\n',
      'cpu/cpu.cfs_quota_us': '-1\n',
      'cpu/cpu.cfs_period_us': '100000\n',
      'cpuset/cpuset.cpus': '0-1\n',
      'cpuacct/cpuacct.usage': '123456789\n',
      'cpuacct/cpuacct.stat': 'user 100000\nsystem 100000\n',
      'blkio/blkio.throttle.io_serviced': '8:0 Read 0\n8:0 Write 4\n8:0 Sync 4\n8:0 Async 0\n8:0 Total 4\nTotal 4\n',
      'pids/cgroup.procs': `${c.pid}\n`,
      'pids/tasks': `${c.pid}\n`,
      'pids/pids.current': '1\n',
    });
  }
  return { cgroupRoot: join(root, 'cgroup'), procRoot: join(root, 'proc') };
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
