import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DatasetWriter, parseDatasetText, readDataset, requireDatasetDir, streamDataset, type DatasetRecord } from './dataset.ts';
import { HerdError } from '../protocol/errors.ts';
import { thrown, thrownHerdError } from '../test/support/thrown.ts';
import { CSV_COLUMNS, exportCsv, parseTime } from './export.ts';

// A day file past V8's longest string (~512 MiB: a few dozen containers' day at 2 s) cannot be
// read as one string; readFile(…, 'utf8') then fails like this. Too big to write in a unit test,
// so every whole-file read fails so here: the dataset must be read in lines.
vi.mock('node:fs/promises', async (importOriginal) => ({
  ...(await importOriginal<typeof import('node:fs/promises')>()),
  readFile: async () => {
    throw Object.assign(new Error('Cannot create a string longer than 0x1fffffe8 characters'), { code: 'ERR_STRING_TOO_LONG' });
  },
}));

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'herd-dataset-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const host = (at: string, cpuUtil = 0.5) => ({ v: 1, hostId: 'h1', at, stale: false, cpuUtil });

describe('requireDatasetDir', () => {
  it('returns a directory that exists; names one that does not, or is a file, and where it came from', () => {
    expect(requireDatasetDir(dir, '--dir')).toBe(dir);
    expect(thrownHerdError(() => requireDatasetDir(join(dir, 'absent'), '--dir'))).toMatchObject({ code: 'BAD_USAGE', message: `dataset directory ${join(dir, 'absent')} (--dir) does not exist` });
    writeFileSync(join(dir, 'file'), '');
    expect(thrownHerdError(() => requireDatasetDir(join(dir, 'file')))).toMatchObject({ code: 'BAD_USAGE', message: `dataset directory ${join(dir, 'file')} is not a directory` });
  });
});

describe('parseDatasetText', () => {
  it.each([
    ['complete lines', '{"at":"a"}\n{"at":"b"}\n', 2, 0],
    ['torn last line', '{"at":"a"}\n{"at":"b', 1, 1],
    ['torn line in the middle, ended by the writer', '{"at":"a"}\n{"at":"b\n{"at":"c"}\n', 2, 1],
    ['empty file', '', 0, 0],
    ['JSON that is not a record', '[1,2]\n{"at":"a"}\n', 1, 1],
  ] as const)('%s', (_name, text, records, skipped) => {
    const r = parseDatasetText(text);
    expect(r.records).toHaveLength(records);
    expect(r.skippedLines).toBe(skipped);
  });
});

describe('DatasetWriter + readDataset', () => {
  it('partitions by UTC day and reads a range back', async () => {
    const w = new DatasetWriter(dir);
    w.append('hosts', host('2026-11-21T23:59:59Z'));
    w.append('hosts', host('2026-11-22T00:00:01Z'));
    w.append('containers', { v: 1, herdId: 'c1', hostId: 'h1', name: 'c', dockerId: 'd', at: '2026-11-22T00:00:02Z', state: 'running' });
    w.close();
    expect(readFileSync(join(dir, 'hosts', '2026-11-21.jsonl'), 'utf8').trim().split('\n')).toHaveLength(1);
    const r = await readDataset(dir, 'hosts', { since: new Date('2026-11-21T00:00:00Z'), to: new Date('2026-11-23T00:00:00Z') });
    expect(r.records.map((x) => x.at)).toEqual(['2026-11-21T23:59:59Z', '2026-11-22T00:00:01Z']);
    const narrow = await readDataset(dir, 'hosts', { since: new Date('2026-11-22T00:00:00Z'), to: new Date('2026-11-22T00:00:01Z') });
    expect(narrow.records).toEqual([]);
  });

  it('after a crash tore the last line, keeps the torn bytes on their own line and goes on', async () => {
    const w1 = new DatasetWriter(dir);
    w1.append('hosts', host('2026-11-22T10:00:00Z'));
    w1.close();
    appendFileSync(join(dir, 'hosts', '2026-11-22.jsonl'), '{"v":1,"hostId":"h1","at":"2026-11-22T10:00:05Z","cpu'); // crash mid-write
    const w2 = new DatasetWriter(dir);
    w2.append('hosts', host('2026-11-22T10:00:10Z', 0.7));
    w2.close();
    const r = await readDataset(dir, 'hosts', { since: new Date('2026-11-22T00:00:00Z'), to: new Date('2026-11-23T00:00:00Z') });
    expect(r.records.map((x) => x.cpuUtil)).toEqual([0.5, 0.7]);
    expect(r.skippedLines).toBe(1);
  });
});

describe('DatasetWriter after a failed write', () => {
  it('closes the file, so the next append ends the torn line first instead of gluing to it', async () => {
    const w = new DatasetWriter(dir);
    w.append('hosts', host('2026-11-28T00:00:01Z', 0.1));
    w.close();
    // The day file now sits on a full disk: the append fails (ENOSPC).
    const file = join(dir, 'hosts', '2026-11-28.jsonl');
    const kept = readFileSync(file, 'utf8');
    unlinkSync(file);
    symlinkSync('/dev/full', file);
    expect(() => w.append('hosts', host('2026-11-28T00:00:02Z', 0.2))).toThrow(/ENOSPC/);
    // Space is back, with the part of the line that made it before the error.
    unlinkSync(file);
    writeFileSync(file, `${kept}{"v":1,"hostId":"h1","at":"2026-11-28T00:00:02Z","cpu`);
    w.append('hosts', host('2026-11-28T00:00:03Z', 0.3));
    w.append('hosts', host('2026-11-28T00:00:04Z', 0.4));
    w.close();
    const r = await readDataset(dir, 'hosts', { since: new Date('2026-11-28T00:00:00Z'), to: new Date('2026-11-29T00:00:00Z') });
    expect(r.records.map((x) => x.cpuUtil)).toEqual([0.1, 0.3, 0.4]);
    expect(r.skippedLines).toBe(1);
  });
});

describe('streamDataset', () => {
  const range = { since: new Date('2026-11-21T00:00:00Z'), to: new Date('2026-11-24T00:00:00Z') };
  const iso = (ms: number) => new Date(ms).toISOString();
  const day = Date.parse('2026-11-22T00:00:00Z');

  it('reads day files line by line, never as one string, in day order', async () => {
    const w = new DatasetWriter(dir);
    w.append('hosts', host('2026-11-23T00:00:01.000Z', 0.3));
    w.append('hosts', host('2026-11-21T23:59:59.000Z', 0.1));
    w.append('hosts', host('2026-11-22T12:00:00.000Z', 0.2));
    w.close();
    const r = await readDataset(dir, 'hosts', range);
    expect(r.records.map((x) => x.cpuUtil)).toEqual([0.1, 0.2, 0.3]);
  });

  it('puts interleaved hosts in time order, holding back only the records of the lateness seen', async () => {
    // Two hosts' rounds, 2 s apart; h2's pmproxy answers 5 s late, so its lines land after newer h1 lines.
    const w = new DatasetWriter(dir);
    for (let i = 0; i < 2000; i++) {
      w.append('hosts', { ...host(iso(day + i * 2000)), hostId: 'h1' });
      if (i >= 3) w.append('hosts', { ...host(iso(day + (i - 3) * 2000 + 1000)), hostId: 'h2' });
    }
    w.close();
    const seen: DatasetRecord[] = [];
    const result = await streamDataset(dir, 'hosts', range, (r) => seen.push(r));
    const times = seen.map((r) => Date.parse(r.at));
    expect(seen).toHaveLength(2000 + 1997);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    // About 5 s of records (h1 every 2 s, h2 every 2 s), not the day's 4000.
    expect(result.maxBuffered).toBeLessThanOrEqual(8);
  });

  it('still orders a file whose clock stepped back, and keeps equal times in file order', async () => {
    const w = new DatasetWriter(dir);
    w.append('hosts', { ...host('2026-11-22T10:00:00.000Z'), n: 1 });
    w.append('hosts', { ...host('2026-11-22T11:00:00.000Z'), n: 2 });
    w.append('hosts', { ...host('2026-11-22T09:00:00.000Z'), n: 3 });
    w.append('hosts', { ...host('2026-11-22T10:00:00.000Z'), n: 4 });
    w.close();
    const r = await readDataset(dir, 'hosts', range);
    expect(r.records.map((x) => x.n)).toEqual([3, 1, 4, 2]);
  });

  it('counts torn lines, including an unended last one, and reads only what the file held when it began', async () => {
    mkdirSync(join(dir, 'hosts'));
    const file = join(dir, 'hosts', '2026-11-22.jsonl');
    writeFileSync(file, `${JSON.stringify(host('2026-11-22T10:00:00Z', 0.1))}\n{"at":"2026-11-22T10:00:0\n${JSON.stringify(host('2026-11-22T10:00:02Z', 0.2))}\n[1]\n{"at":"2026-11-22T10:00:03Z","cpuUtil":0.3}`);
    const r = await readDataset(dir, 'hosts', range);
    expect(r.records.map((x) => x.cpuUtil)).toEqual([0.1, 0.2]);
    expect(r.skippedLines).toBe(3);
  });

  it('names a day file it cannot read', async () => {
    mkdirSync(join(dir, 'hosts', '2026-11-22.jsonl'), { recursive: true }); // a directory: read fails with EISDIR
    const err = await thrown(readDataset(dir, 'hosts', range));
    expect(err).toBeInstanceOf(HerdError);
    expect(err).toMatchObject({ code: 'BAD_USAGE', message: expect.stringContaining(`cannot read the dataset file ${join(dir, 'hosts', '2026-11-22.jsonl')}: EISDIR`) });
  });

  it('does not blame the dataset for an error of the caller (its output)', async () => {
    new DatasetWriter(dir).append('hosts', host('2026-11-22T10:00:00Z'));
    const err = await thrown(exportCsv({ dir, since: range.since, to: range.to, write: () => { throw new Error('EPIPE'); } }));
    expect(err).not.toBeInstanceOf(HerdError);
  });
});

describe('exportCsv', () => {
  it('writes a header and one row per sample, nested fields flattened', async () => {
    const w = new DatasetWriter(dir);
    w.append('hosts', { ...host('2026-11-22T10:00:00Z'), pressure: { cpuSomeAvg10sPct: 1.5 } });
    w.append('containers', { v: 1, herdId: 'c1', hostId: 'h2', name: 'web, 1', dockerId: 'd', at: '2026-11-22T10:00:01Z', state: 'running', cpuCores: 0.98, migration: { fromHost: 'h1', toHost: 'h2' } });
    w.close();
    let out = '';
    const result = await exportCsv({ dir, since: new Date('2026-11-22T00:00:00Z'), to: new Date('2026-11-23T00:00:00Z'), write: (s) => (out += s) });
    expect(result).toEqual({ rows: 2, skippedLines: 0 });
    const [header, hostRow, containerRow] = out.trim().split('\n');
    expect(header?.split(',')).toEqual(CSV_COLUMNS);
    const col = (row: string | undefined, name: string) => row?.split(',')[CSV_COLUMNS.indexOf(name)];
    expect(col(hostRow, 'kind')).toBe('host');
    expect(col(hostRow, 'pressure.cpuSomeAvg10sPct')).toBe('1.5');
    expect(containerRow).toContain('"web, 1"');
    expect(containerRow).toContain('h1,h2');
  });

  it('rejects a range that ends before it starts', async () => {
    await expect(exportCsv({ dir, since: new Date(2), to: new Date(1), write: () => undefined })).rejects.toThrow(/must be before/);
  });
});

describe('parseTime', () => {
  const now = new Date('2026-11-22T12:00:00Z');
  it.each([
    ['2h', '2026-11-22T10:00:00.000Z'],
    ['90s', '2026-11-22T11:58:30.000Z'],
    ['1d', '2026-11-21T12:00:00.000Z'],
    ['now', '2026-11-22T12:00:00.000Z'],
    ['2026-11-20T01:02:03Z', '2026-11-20T01:02:03.000Z'],
  ])('%s', (text, iso) => expect(parseTime(text, now).toISOString()).toBe(iso));
  it('names a bad time', () => expect(() => parseTime('yesterday-ish', now)).toThrow(/not a time/));

  it.each([
    ['2026-11-22', '2026-11-22T00:00:00.000Z'],
    ['2026-11-22T10:00:00+02:00', '2026-11-22T08:00:00.000Z'],
    ['2026-11-22T10:00:00.123456789Z', '2026-11-22T10:00:00.123Z'],
    ['2024-02-29T00:00Z', '2024-02-29T00:00:00.000Z'],
    [' 15m ', '2026-11-22T11:45:00.000Z'],
  ])('accepts the strict form %s', (text, iso) => expect(parseTime(text, now, '--since').toISOString()).toBe(iso));

  it.each([
    ['1', 'is not a time'], // Date.parse: 2001-01-01
    ['2026', 'is not a time'],
    ['2026-02-30', 'is not a calendar date'], // Date.parse: 2026-03-02
    ['2026-02-29', 'is not a calendar date'],
    ['2026-13-01', 'is not a calendar date'],
    ['2026-11-22T24:00:00Z', 'is not a time of day'],
    ['2026-11-22T10:00:00+25:00', 'has no valid zone offset'],
    ['2026-11-28 10:00', 'is not a time'],
    ['Sat', 'is not a time'],
    ['-1h', 'is not a time'],
    ['1w', 'is not a time'],
  ])('rejects %s, naming the flag, the value and the accepted forms', (text, why) => {
    const err = thrownHerdError(() => parseTime(text, now, '--to'));
    expect(err.code).toBe('BAD_USAGE');
    expect(err.message).toContain(`--to "${text}" ${why}: use a duration ago (90s, 15m, 2h, 7d), "now", an ISO 8601 date`);
  });
});
