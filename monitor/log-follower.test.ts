import { mkdtempSync, readFileSync, rmSync, truncateSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../protocol/log.ts';
import { monitorConfigSchema } from './config.ts';
import type { TrackedContainer } from './container-metrics.ts';
import { buildMonitorDaemon } from './daemon.ts';
import { ContainerLogFollower, DockerLogParser, type LogSource, type ParsedLogLine } from './log-follower.ts';
import { readLogFrom } from './log-reader.ts';
import { ContainerLogStore, formatNanoTime } from './log-store.ts';

const T0 = 1_795_390_145_000_000_000n;
const at = (ms: number) => T0 + BigInt(ms) * 1_000_000n;

/** One Docker log message as the logs API sends it without a TTY (timestamps on). */
function frame(stream: 'stdout' | 'stderr', atNs: bigint, text: string): Buffer {
  const payload = Buffer.from(`${formatNanoTime(atNs)} ${text}`, 'utf8');
  const header = Buffer.alloc(8);
  header[0] = stream === 'stdout' ? 1 : 2;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

/** Feeds `bytes` to a parser in pieces of `size` bytes. */
function parseInPieces(bytes: Buffer, size: number): ParsedLogLine[] {
  const parser = new DockerLogParser();
  const out: ParsedLogLine[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(...parser.push(bytes.subarray(i, i + size)));
  out.push(...parser.end());
  return out;
}

describe('DockerLogParser', () => {
  const stream = Buffer.concat([
    frame('stdout', at(1), 'hello\n'),
    frame('stderr', at(2), 'oops é\n'),
    // A 16 KiB+ line Docker split into two messages, with stderr in between.
    frame('stdout', at(3), 'first half '),
    frame('stderr', at(4), 'between\n'),
    frame('stdout', at(5), 'second half\n'),
    frame('stdout', at(6), 'no newline at the end'),
  ]);
  const expected: ParsedLogLine[] = [
    { stream: 'stdout', atNs: at(1), text: 'hello' },
    { stream: 'stderr', atNs: at(2), text: 'oops é' },
    { stream: 'stderr', atNs: at(4), text: 'between' },
    { stream: 'stdout', atNs: at(5), text: 'first half second half' },
    { stream: 'stdout', atNs: at(6), text: 'no newline at the end' },
  ];

  it.each([1, 3, 8, 9, 64, 100_000])('demultiplexes frames cut into %i-byte pieces', (size) => {
    expect(parseInPieces(stream, size)).toEqual(expected);
  });

  it('reads a TTY container (raw stream, \\r\\n line ends)', () => {
    const raw = Buffer.from(`${formatNanoTime(at(1))} one\r\n${formatNanoTime(at(2))} two\r\n${formatNanoTime(at(3))} thr`, 'utf8');
    expect(parseInPieces(raw, 5)).toEqual([
      { stream: 'stdout', atNs: at(1), text: 'one' },
      { stream: 'stdout', atNs: at(2), text: 'two' },
      { stream: 'stdout', atNs: at(3), text: 'thr' },
    ]);
  });
});

interface FakeContainer {
  messages: Array<{ stream: 'stdout' | 'stderr'; atNs: bigint; text: string }>;
  running: boolean;
  streams: PassThrough[];
}

/** Docker's logs API in memory: `since` is whole seconds and inclusive, like dockerd's. */
class FakeDocker implements LogSource {
  readonly containers = new Map<string, FakeContainer>();
  opens = 0;
  failNext = 0;
  pieceBytes = 7;

  add(id: string, running = true): FakeContainer {
    const c: FakeContainer = { messages: [], running, streams: [] };
    this.containers.set(id, c);
    return c;
  }

  say(id: string, ms: number, text: string, stream: 'stdout' | 'stderr' = 'stdout'): void {
    const c = this.containers.get(id)!;
    const m = { stream, atNs: at(ms), text: `${text}\n` };
    c.messages.push(m);
    for (const s of c.streams) this.send(s, frame(m.stream, m.atNs, m.text));
  }

  stop(id: string): void {
    const c = this.containers.get(id)!;
    c.running = false;
    for (const s of c.streams) s.end();
    c.streams = [];
  }

  async open(id: string, sinceSeconds: number): Promise<NodeJS.ReadableStream> {
    this.opens++;
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('connect ECONNREFUSED');
    }
    const c = this.containers.get(id);
    if (c === undefined) throw new Error('(HTTP code 404) no such container');
    const s = new PassThrough();
    const since = BigInt(sinceSeconds) * 1_000_000_000n;
    const backlog = Buffer.concat(c.messages.filter((m) => m.atNs >= since).map((m) => frame(m.stream, m.atNs, m.text)));
    queueMicrotask(() => {
      this.send(s, backlog);
      if (c.running) c.streams.push(s);
      else s.end();
    });
    return s;
  }

  private send(s: PassThrough, bytes: Buffer): void {
    for (let i = 0; i < bytes.length; i += this.pieceBytes) s.write(bytes.subarray(i, i + this.pieceBytes));
  }
}

const tracked = (herdId: string, dockerId: string, state = 'running'): TrackedContainer => ({ herdId, name: 'web', dockerId, state });
const settle = () => new Promise((r) => setTimeout(r, 30));
const ID_A = `a${'0'.repeat(63)}`;
const ID_B = `b${'0'.repeat(63)}`;

describe('ContainerLogFollower', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'herd-follow-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const texts = (store: ContainerLogStore, herdId: string) => readLogFrom(store.pathOf(herdId)).records.map((r) => `${r.hostId}:${r.stream}:${r.text}`);

  it('follows a container, and a restarted monitor resumes without duplicates or gaps', async () => {
    const docker = new FakeDocker();
    docker.add(ID_A);
    // Several lines within one second: Docker's whole-second `since` sends them again.
    for (let i = 0; i < 5; i++) docker.say(ID_A, 100 + i * 100, `before ${i}`, i === 2 ? 'stderr' : 'stdout');
    const store = new ContainerLogStore(dir);
    const follower = new ContainerLogFollower(store, docker, { hostId: 'h1', log: silentLogger });
    follower.sync([tracked('web-1', ID_A)]);
    await settle();
    docker.say(ID_A, 700, 'live');
    await settle();
    follower.sync([tracked('web-1', ID_A)]); // already followed: no second stream
    expect(docker.opens).toBe(1);
    await follower.close();
    store.close();

    // Written while the monitor was down, in the same second as the last line it wrote.
    docker.say(ID_A, 800, 'while down');
    docker.say(ID_A, 1500, 'later');
    const store2 = new ContainerLogStore(dir);
    const follower2 = new ContainerLogFollower(store2, docker, { hostId: 'h1', log: silentLogger });
    follower2.sync([tracked('web-1', ID_A)]);
    await settle();
    await follower2.close();
    store2.close();
    expect(texts(store2, 'web-1')).toEqual(['h1:stdout:before 0', 'h1:stdout:before 1', 'h1:stderr:before 2', 'h1:stdout:before 3', 'h1:stdout:before 4', 'h1:stdout:live', 'h1:stdout:while down', 'h1:stdout:later']);
  });

  it('re-fetches a line torn by a crash and writes it whole, once', async () => {
    const docker = new FakeDocker();
    docker.add(ID_A, false);
    for (let i = 0; i < 4; i++) docker.say(ID_A, i * 10, `l${i}`);
    const store = new ContainerLogStore(dir);
    const follower = new ContainerLogFollower(store, docker, { hostId: 'h1', log: silentLogger });
    follower.sync([tracked('web-1', ID_A, 'exited')]);
    await settle();
    await follower.close();
    store.close();
    // The crash: the last line was half written.
    const path = store.pathOf('web-1');
    truncateSync(path, statSync(path).size - 10);
    const store2 = new ContainerLogStore(dir);
    const follower2 = new ContainerLogFollower(store2, docker, { hostId: 'h1', log: silentLogger });
    follower2.sync([tracked('web-1', ID_A, 'exited')]);
    await settle();
    await follower2.close();
    store2.close();
    const read = readLogFrom(path);
    expect(read.records.map((r) => r.text)).toEqual(['l0', 'l1', 'l2', 'l3']);
    expect(read.skippedLines).toBe(1);
  });

  it('keeps one log across a migration: the source drains, the target continues in the same file', async () => {
    const docker = new FakeDocker();
    docker.add(ID_A);
    const store = new ContainerLogStore(dir);
    const onH1 = new ContainerLogFollower(store, docker, { hostId: 'h1', log: silentLogger });
    const onH2 = new ContainerLogFollower(store, docker, { hostId: 'h2', log: silentLogger });
    onH1.sync([tracked('web-1', ID_A)]);
    await settle();
    docker.say(ID_A, 10, 'on h1');
    docker.say(ID_A, 20, 'last words on h1');
    docker.stop(ID_A); // checkpointed
    docker.add(ID_B, false); // the prepared target on h2
    onH2.sync([tracked('web-1', ID_B, 'created')]);
    await settle();
    onH1.sync([tracked('web-1', ID_A, 'exited')]); // read once more in its new state
    docker.containers.get(ID_B)!.running = true;
    docker.say(ID_B, 30, 'on h2');
    onH2.sync([tracked('web-1', ID_B)]);
    await settle();
    docker.say(ID_B, 40, 'still on h2');
    await settle();
    onH1.sync([tracked('web-1', ID_A, 'exited')]); // drained: not read again
    onH1.sync([]); // removed
    const opens = docker.opens;
    await onH1.close();
    await onH2.close();
    store.close();
    expect(texts(store, 'web-1')).toEqual(['h1:stdout:on h1', 'h1:stdout:last words on h1', 'h2:stdout:on h2', 'h2:stdout:still on h2']);
    expect(opens).toBe(4); // h1 running, h2 created, h1 exited, h2 running
    expect(readFileSync(join(dir, 'web-1.name'), 'utf8')).toBe('web\n');
  });

  it('retries a failing stream with backoff and never throws', async () => {
    const docker = new FakeDocker();
    docker.add(ID_A);
    docker.say(ID_A, 1, 'hello');
    docker.failNext = 2;
    const store = new ContainerLogStore(dir);
    const follower = new ContainerLogFollower(store, docker, { hostId: 'h1', log: silentLogger, retryIntervalMs: 40 });
    follower.sync([tracked('web-1', ID_A)]);
    await settle();
    follower.sync([tracked('web-1', ID_A)]); // within the backoff: not retried yet
    expect(docker.opens).toBe(1);
    for (let i = 0; i < 10 && follower.stats().linesWritten === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      follower.sync([tracked('web-1', ID_A)]);
    }
    expect(follower.stats()).toMatchObject({ failures: 2, linesWritten: 1 });
    follower.sync([tracked('gone', `c${'0'.repeat(63)}`)]); // 404: logged, retried later
    await settle();
    await follower.close();
    store.close();
    expect(texts(store, 'web-1')).toEqual(['h1:stdout:hello']);
  });
});

describe('the monitor daemon keeps container logs', () => {
  it('follows every listed container into <datasetDir>/logs even while pmproxy and the broker are down', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'herd-daemon-logs-'));
    try {
      const docker = new FakeDocker();
      docker.add(ID_A);
      docker.say(ID_A, 1, 'from the daemon test');
      const config = monitorConfigSchema.parse({
        broker: { url: 'mqtt://127.0.0.1:9' },
        metrics: { enabled: false },
        datasetDir: dir,
        containerIntervalSeconds: 0.1,
        hosts: [{ id: 'h1', pmproxyUrl: 'http://127.0.0.1:9' }],
      });
      const daemon = buildMonitorDaemon(config, {
        log: silentLogger,
        listerFor: () => ({ list: async () => [tracked('web-1', ID_A)] }),
        logSourceFor: () => docker,
      });
      await daemon.start();
      for (let i = 0; i < 50 && (daemon.status().hosts[0]?.logs?.linesWritten ?? 0) === 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(daemon.status().hosts[0]?.logs).toMatchObject({ following: 1, linesWritten: 1 });
      await daemon.close();
      expect(readLogFrom(join(dir, 'logs', 'web-1.log')).records.map((r) => r.text)).toEqual(['from the daemon test']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
