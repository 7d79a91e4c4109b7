import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DatasetWriter, parseDatasetText, readDataset, requireDatasetDir } from './dataset.ts';
import { thrownHerdError } from '../test/support/thrown.ts';
import { CSV_COLUMNS, exportCsv, parseTime } from './export.ts';

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
});
