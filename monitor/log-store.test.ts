import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { followLog, readLog, readLogFrom } from './log-reader.ts';
import { thrownHerdError } from '../test/support/thrown.ts';
import { ContainerLogStore, formatNanoTime, herdIdsNamed, logFilesOldestFirst, parseNanoTime, scanLastAt, type LogRecord } from './log-store.ts';

const HERD = 'web-1a2b';
const rec = (i: number, dockerId = 'aaaaaaaaaaaa', hostId = 'h1'): LogRecord => ({
  at: formatNanoTime(1_795_000_000_000_000_000n + BigInt(i) * 1_000_000n),
  hostId,
  dockerId,
  stream: i % 3 === 0 ? 'stderr' : 'stdout',
  text: `line ${i} ${'x'.repeat(i % 50)}`,
});

describe('nanosecond times', () => {
  it.each([
    ['2026-11-22T23:29:05.853123456Z', 1_795_390_145_853_123_456n],
    ['2026-11-22T23:29:05.8531Z', 1_795_390_145_853_100_000n],
    ['2026-11-22T23:29:05Z', 1_795_390_145_000_000_000n],
    ['2026-11-23T00:29:05.000000001+01:00', 1_795_390_145_000_000_001n],
  ])('%s', (text, ns) => {
    expect(parseNanoTime(text)).toBe(ns);
    expect(parseNanoTime(formatNanoTime(ns))).toBe(ns);
  });

  it('formats with 9 fraction digits so texts sort as times', () => {
    expect(formatNanoTime(1_795_390_145_000_000_001n)).toBe('2026-11-22T23:29:05.000000001Z');
  });

  it.each(['', 'yesterday', '2026-11-22 23:29:05Z', '2026-11-22T23:29:05.1234567891Z'])('rejects %j', (text) => {
    expect(parseNanoTime(text)).toBeUndefined();
  });
});

describe('ContainerLogStore', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'herd-logs-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it.each(['../x', 'a/b', '..', '.hidden', ''])('refuses %j, which is no Herd id, as a file name (it would write outside its folder)', (herdId) => {
    const logs = join(dir, 'logs');
    mkdirSync(logs);
    const store = new ContainerLogStore(logs);
    expect(thrownHerdError(() => store.append(herdId, [rec(1)]))).toMatchObject({ code: 'BAD_MESSAGE', message: expect.stringContaining('is not a Herd id') });
    expect(thrownHerdError(() => store.rememberName(herdId, 'web'))).toMatchObject({ code: 'BAD_MESSAGE' });
    expect(thrownHerdError(() => store.lastAt(herdId, 'aaaaaaaaaaaa'))).toMatchObject({ code: 'BAD_MESSAGE' });
    store.close();
    expect(existsSync(join(dir, 'x.log'))).toBe(false);
  });

  it('appends records that read back in order', () => {
    const store = new ContainerLogStore(dir);
    const records = Array.from({ length: 20 }, (_, i) => rec(i));
    store.append(HERD, records.slice(0, 7));
    store.append(HERD, records.slice(7));
    store.close();
    expect(readLogFrom(store.pathOf(HERD)).records).toEqual(records);
    expect(readLogFrom(store.pathOf(HERD), 0, 3).records).toEqual(records.slice(17));
  });

  it('rotates a log at its size limit, keeps the configured number of old files, and reads them all in order', () => {
    const one = Buffer.byteLength(`${JSON.stringify(rec(49))}\n`); // the longest record
    // Room for 10 or more records per file, 2 rotated files: at least 20 records kept, the oldest go.
    const store = new ContainerLogStore(dir, { maxBytes: one * 10 + 40, rotatedFiles: 2 });
    const records = Array.from({ length: 45 }, (_, i) => rec(i, i < 40 ? 'aaaaaaaaaaaa' : 'bbbbbbbbbbbb'));
    for (const r of records) store.append(HERD, [r]);
    store.close();
    const path = store.pathOf(HERD);
    expect(logFilesOldestFirst(path)).toEqual([`${path}.2`, `${path}.1`, path]);
    for (const f of logFilesOldestFirst(path)) expect(readFileSync(f).length).toBeLessThanOrEqual(one * 10 + 40 + 50);
    const all = readLog(path).records;
    expect(all).toEqual(records.slice(records.length - all.length));
    expect(all.length).toBeGreaterThanOrEqual(20);
    expect(all.length).toBeLessThan(45);
    expect(readLog(path, 12).records).toEqual(records.slice(-12));
    // Resuming finds a container's last line in a rotated file too.
    expect(scanLastAt(path, 'aaaaaaaaaaaa')).toBe(parseNanoTime(rec(39).at));
  });

  it('follows a log across a rotation without losing or repeating lines', async () => {
    const one = Buffer.byteLength(`${JSON.stringify(rec(0))}\n`);
    const store = new ContainerLogStore(dir, { maxBytes: one * 5 + 40, rotatedFiles: 3 });
    store.append(HERD, [rec(0), rec(1)]);
    const first = readLog(store.pathOf(HERD));
    const seen: LogRecord[] = [...first.records];
    const controller = new AbortController();
    const following = followLog(store.pathOf(HERD), first.offset, (rs) => seen.push(...rs), { signal: controller.signal, pollMs: 20, ...(first.ino === undefined ? {} : { ino: first.ino }) });
    for (let i = 2; i < 14; i++) {
      store.append(HERD, [rec(i)]);
      // A rotation between two polls: the rest of the old file is read first.
      if (i % 4 === 0) await new Promise((r) => setTimeout(r, 60));
    }
    await new Promise((r) => setTimeout(r, 150));
    controller.abort();
    await following;
    store.close();
    expect(seen.map((r) => r.text)).toEqual(Array.from({ length: 14 }, (_, i) => rec(i).text));
  });

  it('closes a torn tail from a crash before appending, and readers skip it', () => {
    const path = join(dir, `${HERD}.log`);
    writeFileSync(path, `${JSON.stringify(rec(1))}\n${JSON.stringify(rec(2)).slice(0, 30)}`);
    // While torn, a reader takes the complete lines only.
    expect(readLogFrom(path).records).toEqual([rec(1)]);
    const store = new ContainerLogStore(dir);
    store.append(HERD, [rec(3)]);
    store.close();
    const read = readLogFrom(path);
    expect(read.records).toEqual([rec(1), rec(3)]);
    expect(read.skippedLines).toBe(1);
    expect(readFileSync(path, 'utf8').endsWith('\n')).toBe(true);
  });

  it('finds the last time written per Docker container, scanning backwards across chunks', () => {
    const store = new ContainerLogStore(dir);
    // ~120 KiB: the scan crosses its 64 KiB chunks.
    store.append(HERD, Array.from({ length: 1500 }, (_, i) => rec(i, 'aaaaaaaaaaaa')));
    store.append(HERD, Array.from({ length: 300 }, (_, i) => rec(2000 + i, 'bbbbbbbbbbbb', 'h2')));
    store.close();
    const path = store.pathOf(HERD);
    appendFileSync(path, '{"at":"2026-'); // torn tail
    expect(scanLastAt(path, 'aaaaaaaaaaaa')).toBe(parseNanoTime(rec(1499).at));
    expect(scanLastAt(path, 'bbbbbbbbbbbb')).toBe(parseNanoTime(rec(2299).at));
    expect(scanLastAt(path, 'cccccccccccc')).toBeUndefined();
    expect(scanLastAt(join(dir, 'none.log'), 'aaaaaaaaaaaa')).toBeUndefined();
    // A fresh store (a restarted daemon) asks the file; full Docker ids are shortened.
    const again = new ContainerLogStore(dir);
    expect(again.lastAt(HERD, `aaaaaaaaaaaa${'0'.repeat(52)}`)).toBe(parseNanoTime(rec(1499).at));
    again.append(HERD, [rec(5000, 'aaaaaaaaaaaa')]);
    expect(again.lastAt(HERD, 'aaaaaaaaaaaa')).toBe(parseNanoTime(rec(5000).at));
    again.close();
  });

  it('looks back a bounded number of bytes; beyond that the earliest time it read stands for the last line', () => {
    const store = new ContainerLogStore(dir);
    store.append(HERD, Array.from({ length: 100 }, (_, i) => rec(i, 'aaaaaaaaaaaa')));
    store.append(HERD, Array.from({ length: 3000 }, (_, i) => rec(1000 + i, 'bbbbbbbbbbbb', 'h2')));
    store.close();
    const path = store.pathOf(HERD);
    expect(scanLastAt(path, 'aaaaaaaaaaaa')).toBe(parseNanoTime(rec(99).at));
    const bounded = scanLastAt(path, 'aaaaaaaaaaaa', 64 * 1024)!;
    // Later than all of a's lines (none is written again), earlier than the end (b's recent lines count).
    expect(bounded > parseNanoTime(rec(99).at)!).toBe(true);
    expect(bounded < parseNanoTime(rec(3999).at)!).toBe(true);
    expect(scanLastAt(path, 'cccccccccccc', 64 * 1024)).toBe(bounded);
  });

  it('counts an unterminated but complete last record (the next append ends its line)', () => {
    const path = join(dir, `${HERD}.log`);
    writeFileSync(path, `${JSON.stringify(rec(1))}\n${JSON.stringify(rec(2))}`);
    expect(scanLastAt(path, 'aaaaaaaaaaaa')).toBe(parseNanoTime(rec(2).at));
    const store = new ContainerLogStore(dir);
    store.append(HERD, [rec(3)]);
    store.close();
    expect(readLogFrom(path).records).toEqual([rec(1), rec(2), rec(3)]);
  });

  it('keeps at most a bounded number of files open', () => {
    const store = new ContainerLogStore(dir, { maxOpenFiles: 8 });
    for (let i = 0; i < 30; i++) store.append(`c${i}`, [rec(i)]);
    for (let i = 0; i < 30; i++) store.append(`c${i}`, [rec(1000 + i)]);
    store.close();
    for (const i of [0, 15, 29]) expect(readLogFrom(store.pathOf(`c${i}`)).records).toEqual([rec(i), rec(1000 + i)]);
  });

  it('remembers names beside the logs, newest log first for a reused name', () => {
    const store = new ContainerLogStore(dir);
    store.append('old-id', [rec(1)]);
    store.rememberName('old-id', 'web');
    store.append('other', [rec(1)]);
    store.rememberName('other', 'db');
    store.rememberName('no-log', 'web');
    store.append('new-id', [rec(2)]);
    store.rememberName('new-id', 'web');
    store.close();
    utimesSync(join(dir, 'old-id.log'), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    const named = herdIdsNamed(dir, 'web');
    expect(named).toEqual(['new-id', 'old-id']);
    expect(herdIdsNamed(dir, 'db')).toEqual(['other']);
    expect(herdIdsNamed(dir, 'nobody')).toEqual([]);
  });
});
