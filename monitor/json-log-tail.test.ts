import { appendFileSync, mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { waitFor } from '../control/lab/shell.ts';
import { silentLogger } from '../protocol/log.ts';
import type { TrackedContainer } from './container-metrics.ts';
import { JsonFileLogTail, parseDockerSize } from './json-log-tail.ts';
import { ContainerLogFollower, type FileFollowings, type LogSource } from './log-follower.ts';
import { readLogFrom } from './log-reader.ts';
import { ContainerLogStore, MAX_LINE_BYTES } from './log-store.ts';

/** A json-file entry as dockerd writes it (time in RFC 3339 with trailing zeros trimmed). */
const entry = (second: number, log: string, stream: 'stdout' | 'stderr' = 'stdout') =>
  `${JSON.stringify({ log, stream, time: `2026-11-23T05:00:${String(second).padStart(2, '0')}.5Z` })}\n`;
const lines = (tail: JsonFileLogTail, left = Number.POSITIVE_INFINITY) => tail.poll({ left }).map((l) => `${l.stream}:${l.text}`);

describe('parseDockerSize', () => {
  it.each([
    ['10m', 10 * 2 ** 20],
    ['500k', 500 * 1024],
    ['1g', 2 ** 30],
    ['2048', 2048],
    ['1.5m', 1.5 * 2 ** 20],
    ['10MB', 10 * 2 ** 20],
    ['', undefined],
    ['ten', undefined],
    [undefined, undefined],
  ])('%s', (text, bytes) => expect(parseDockerSize(text)).toBe(bytes));
});

describe('JsonFileLogTail', () => {
  let dir: string;
  let path: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'herd-jsonlog-'));
    path = join(dir, 'c-json.log');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads what is new at each poll, whole lines only, and nothing when nothing was written', () => {
    const tail = new JsonFileLogTail(path);
    expect(lines(tail)).toEqual([]); // no file yet
    writeFileSync(path, entry(1, 'one\n') + entry(2, 'oops é\n', 'stderr'));
    expect(lines(tail)).toEqual(['stdout:one', 'stderr:oops é']);
    expect(lines(tail)).toEqual([]);
    const third = entry(3, 'three\n');
    appendFileSync(path, third.slice(0, 20)); // dockerd in the middle of a write
    expect(lines(tail)).toEqual([]);
    appendFileSync(path, `${third.slice(20)}not json\n${entry(4, 'tty\r\n')}`);
    expect(lines(tail)).toEqual(['stdout:three', 'stdout:tty']);
    tail.close();
  });

  it("puts a line Docker split into 16 KiB entries together again, with its last part's time", () => {
    writeFileSync(path, entry(1, 'first half ') + entry(2, 'between\n', 'stderr') + entry(3, 'second half\n'));
    const tail = new JsonFileLogTail(path);
    const got = tail.poll({ left: Number.POSITIVE_INFINITY });
    expect(got.map((l) => l.text)).toEqual(['between', 'first half second half']);
    expect(got[1]!.atNs).toBeGreaterThan(got[0]!.atNs);
    appendFileSync(path, entry(4, 'x'.repeat(MAX_LINE_BYTES + 1)) + entry(5, 'tail'));
    expect(tail.poll({ left: Number.POSITIVE_INFINITY }).map((l) => l.text.length)).toEqual([MAX_LINE_BYTES + 1]); // cut once over the limit
    expect(tail.end().map((l) => l.text)).toEqual(['tail']); // the unterminated rest, once the container is gone
    tail.close();
  });

  it('reads at most its budget per poll and goes on from there', () => {
    writeFileSync(path, [1, 2, 3, 4].map((s) => entry(s, `line ${s}\n`)).join(''));
    const tail = new JsonFileLogTail(path);
    const budget = { left: entry(1, 'line 1\n').length + 5 };
    expect(tail.poll(budget).map((l) => l.text)).toEqual(['line 1']);
    expect(budget.left).toBe(0);
    expect(lines(tail)).toEqual(['stdout:line 2', 'stdout:line 3', 'stdout:line 4']);
    tail.close();
  });

  it("follows Docker's rotation (max-size): the old file to its end, then the new one", () => {
    writeFileSync(path, entry(1, 'a\n'));
    const tail = new JsonFileLogTail(path, 100);
    expect(lines(tail)).toEqual(['stdout:a']);
    appendFileSync(path, entry(2, 'b\n'));
    renameSync(path, `${path}.1`);
    writeFileSync(path, entry(3, 'c\n'));
    expect(lines(tail)).toEqual(['stdout:b', 'stdout:c']);
    expect(lines(tail)).toEqual([]);
    tail.close();
  });

  it('reads a removed file to its end through the open descriptor', () => {
    writeFileSync(path, entry(1, 'a\n'));
    const tail = new JsonFileLogTail(path);
    expect(lines(tail)).toEqual(['stdout:a']);
    appendFileSync(path, entry(2, 'last words\n'));
    unlinkSync(path);
    expect(lines(tail)).toEqual(['stdout:last words']);
    tail.close();
  });
});

describe('ContainerLogFollower with json-file logs', () => {
  let dir: string;
  let store: ContainerLogStore;
  const noApi: LogSource = {
    async open() {
      throw new Error('the logs API must not be used for json-file containers');
    },
  };
  const container = (herdId: string, dockerId: string, path: string): TrackedContainer => ({ herdId, name: herdId, dockerId, state: 'running', log: { driver: 'json-file', path } });
  const logOf = (herdId: string) => readLogFrom(store.pathOf(herdId)).records.map((r) => `${r.hostId} ${r.text}`);
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'herd-jsonfollow-'));
    store = new ContainerLogStore(join(dir, 'logs'));
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("follows a running container through the logs API when its json-file log cannot be opened", async () => {
    const opened: string[] = [];
    const api: LogSource = {
      async open(dockerId) {
        opened.push(dockerId);
        const header = Buffer.alloc(8);
        const payload = Buffer.from('2026-11-23T05:00:07.000000000Z from the api\n');
        header[0] = 1;
        header.writeUInt32BE(payload.length, 4);
        return Readable.from([Buffer.concat([header, payload])]);
      },
    };
    const follower = new ContainerLogFollower(store, api, { hostId: 'h1', log: silentLogger });
    const c = container('w', 'c'.repeat(64), join(dir, 'not-visible-from-here-json.log'));
    follower.sync([c]); // tries the file
    expect(opened).toEqual([]);
    follower.sync([c]); // still no file while running: the API
    await waitFor('the line from the logs API', 2000, () => logOf('w').length > 0, 10);
    expect(opened).toEqual(['c'.repeat(64)]);
    expect(logOf('w')).toEqual(['h1 from the api']);
    await follower.close();
  });

  it("holds a newer copy's lines while the older copy still writes (Docker may flush a stopped source's last lines late)", async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(1_000_000);
      const shared: FileFollowings = new Map();
      const h1 = new ContainerLogFollower(store, noApi, { hostId: 'h1', log: silentLogger, fileFollowings: shared });
      const h2 = new ContainerLogFollower(store, noApi, { hostId: 'h2', log: silentLogger, fileFollowings: shared });
      const src = join(dir, 'late-src-json.log');
      const dst = join(dir, 'late-dst-json.log');
      writeFileSync(src, entry(1, 'tick 1\n'));
      h1.sync([container('late', 'c'.repeat(64), src)]);
      writeFileSync(dst, entry(3, 'tick 3\n'));
      h2.sync([container('late', 'd'.repeat(64), dst)]); // the source read a line just now: wait
      expect(logOf('late')).toEqual(['h1 tick 1']);
      appendFileSync(src, entry(2, 'tick 2\n')); // flushed by Docker after the target started
      h1.sync([container('late', 'c'.repeat(64), src)]);
      vi.setSystemTime(1_003_000); // the source has been quiet for 3 s
      h2.sync([container('late', 'd'.repeat(64), dst)]);
      expect(logOf('late')).toEqual(['h1 tick 1', 'h1 tick 2', 'h2 tick 3']);
      await Promise.all([h1.close(), h2.close()]);
    } finally {
      vi.useRealTimers();
    }
  });

  it("writes a migration source's last lines before the target's first, across hosts, each line once", async () => {
    const shared: FileFollowings = new Map();
    const h1 = new ContainerLogFollower(store, noApi, { hostId: 'h1', log: silentLogger, fileFollowings: shared });
    const h2 = new ContainerLogFollower(store, noApi, { hostId: 'h2', log: silentLogger, fileFollowings: shared });
    const src = join(dir, 'src-json.log');
    const dst = join(dir, 'dst-json.log');
    writeFileSync(src, entry(1, 'tick 1\n'));
    h1.sync([container('w', 'a'.repeat(64), src)]);
    appendFileSync(src, entry(2, 'tick 2\n')); // written just before the checkpoint, not read yet
    writeFileSync(dst, entry(3, 'tick 3\n'));
    h2.sync([container('w', 'b'.repeat(64), dst)]); // the target's round comes first
    h1.sync([]); // the source was removed
    expect(logOf('w')).toEqual(['h1 tick 1', 'h1 tick 2', 'h2 tick 3']);

    // After a restart of the monitor: the files are read again from the start, nothing twice.
    await Promise.all([h1.close(), h2.close()]);
    appendFileSync(dst, entry(4, 'tick 4\n'));
    const again = new ContainerLogFollower(new ContainerLogStore(join(dir, 'logs')), noApi, { hostId: 'h2', log: silentLogger });
    again.sync([container('w', 'b'.repeat(64), dst)]);
    await again.close();
    expect(logOf('w')).toEqual(['h1 tick 1', 'h1 tick 2', 'h2 tick 3', 'h2 tick 4']);
    expect(again.stats().linesWritten).toBe(1);
  });
});
