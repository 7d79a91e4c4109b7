import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { buildTable, buildTableFromDir, labelLeaks } from './build.ts';
import { parseCsvTable, splitCsvLine, tableToCsv, toMatrix } from './csv.ts';
import { resampleJoinDanfo } from './danfo.ts';
import { FEATURES } from './features.ts';
import { opsReports, parseSysbenchLine } from './sysbench.ts';
import { thrownHerdError } from '../../test/support/thrown.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/lab', import.meta.url));
const iso = (ms: number) => new Date(ms).toISOString();
const T0 = Date.parse('2026-11-26T10:00:00.000Z');


describe('sysbench report lines', () => {
  it.each([
    ['[ 10s ] thds: 4 tps: 123.45 qps: 2469.00 (r/w/o: 1728.30/493.80/246.90) lat (ms,95%): 44.17 err/s: 0.00 reconn/s: 0.00', 123.45],
    ['[ 1s ] thds: 1 eps: 1234.00 lat (ms,95%): 0.82', 1234],
    ['  [ 2.5s ] thds: 2 eps: 7 lat (ms,95%): 0.82', 7],
    ['[ 1s ] 3300.46 MiB/sec', 3300.46],
    ['    events/s (eps):                      612.50', undefined],
    ['    3773.20 MiB transferred (3772.41 MiB/sec)', undefined],
    ['SQL statistics:', undefined],
    ['[ 10s ] reads: 10.00 MiB/s writes: 3.00 MiB/s fsyncs/s: 1.00', undefined],
  ])('%s → %s', (line, ops) => expect(parseSysbenchLine(line)).toBe(ops));

  it('orders the reports by time', () => {
    const r = opsReports([
      { at: iso(T0 + 10_000), text: '[ 10s ] thds: 1 eps: 2.00 lat (ms,95%): 1' },
      { at: iso(T0 + 5_000), text: '[ 5s ] thds: 1 eps: 1.00 lat (ms,95%): 1' },
      { at: 'bad', text: '[ 5s ] thds: 1 eps: 9.00 lat (ms,95%): 1' },
    ]);
    expect(r).toEqual([{ atMs: T0 + 5_000, opsPerSec: 1 }, { atMs: T0 + 10_000, opsPerSec: 2 }]);
  });
});

describe('buildTable: grid, join, label', () => {
  const host = (id: string, ms: number, cpuUtil: number) => ({ v: 1, hostId: id, at: iso(ms), stale: false, cpus: [0, 1], cpuUtil, pressure: { cpuSomeAvg10sPct: 5, memorySomeAvg10sPct: 0, ioSomeAvg10sPct: 1 } });
  const ctr = (ms: number, hostId: string, cpuCores: number, state = 'running') => ({ v: 1, herdId: 'c1', hostId, name: 'db', dockerId: 'd', at: iso(ms), state, cpuCores, cpuLimitCores: 2, diskReadOpsPerSec: 1, diskWriteOpsPerSec: 2 });

  it('takes each series\' last sample in (t − tolerance, t], joins the host the container was on, labels with the next report', () => {
    const hosts = [host('h1', T0 + 1_000, 0.1), host('h1', T0 + 4_000, 0.4), host('h2', T0 + 9_000, 0.9), host('h1', T0 + 9_500, 0.95)];
    const containers = [ctr(T0 + 2_000, 'h1', 0.2), ctr(T0 + 4_900, 'h1', 0.5), ctr(T0 + 8_000, 'h2', 0.8), ctr(T0 + 12_000, 'h2', 1.2, 'exited'), ctr(T0 + 21_000, 'h2', 2.1)];
    const reports = new Map([['c1', [{ atMs: T0 + 5_000, opsPerSec: 50 }, { atMs: T0 + 14_000, opsPerSec: 140 }, { atMs: T0 + 40_000, opsPerSec: 400 }]]]);
    const t = buildTable(hosts, containers, { reports });
    // Grid 10:00:05, :10, (:15 no running sample within 5 s), :20 none, :25 → sample at :21 but no report within 10 s.
    expect(Array.from(t.atMs)).toEqual([T0 + 5_000, T0 + 10_000]);
    expect(Array.from(t.label)).toEqual([50, 140]);
    expect(t.hostIds).toEqual(['h1', 'h2']);
    const col = (n: string) => Array.from(t.columns[t.names.indexOf(n)] as Float64Array);
    expect(col('ctr_cpu_cores')).toEqual([0.5, 0.8]);
    expect(col('ctr_cpu_util')).toEqual([0.25, 0.4]);
    expect(col('ctr_disk_ops')).toEqual([3, 3]);
    expect(col('host_cpu_util')).toEqual([0.4, 0.9]); // h2's sample, not h1's later one
    expect(col('host_cores')).toEqual([2, 2]);
    expect(col('host_io_pressure')).toEqual([1, 1]);
    expect(t.dropped.noLabel).toBe(1);
    expect(t.names).toEqual(FEATURES);
  });

  it('keeps a row without a host sample, host columns NaN', () => {
    const t = buildTable([], [ctr(T0 + 2_000, 'h1', 0.2)], { labelMetric: 'ctr_cpu_cores' });
    expect(t.rows).toBe(1);
    expect(t.names).not.toContain('ctr_cpu_cores');
    expect(Array.from(t.label)).toEqual([0.2]);
    expect(Number.isNaN(t.columns[t.names.indexOf('host_cpu_util')]?.[0])).toBe(true);
  });

  it('puts the rows in time order across containers (training holds out the last rows)', () => {
    const other = (ms: number, cpuCores: number) => ({ ...ctr(ms, 'h2', cpuCores), herdId: 'c0' });
    const t = buildTable([], [ctr(T0 + 2_000, 'h1', 0.2), ctr(T0 + 7_000, 'h1', 0.7), other(T0 + 1_000, 0.1), other(T0 + 6_000, 0.6), other(T0 + 11_000, 1.1)], { labelMetric: 'ctr_cpu_cores' });
    expect(Array.from(t.atMs)).toEqual([T0 + 5_000, T0 + 5_000, T0 + 10_000, T0 + 10_000, T0 + 15_000]);
    expect(t.herdIds).toEqual(['c0', 'c1', 'c0', 'c1', 'c0']);
    expect(Array.from(t.label)).toEqual([0.1, 0.2, 0.6, 0.7, 1.1]);
  });

  it('labels with any numeric field of the container sample, leaving out the features computed from it', () => {
    const t = buildTable([], [ctr(T0 + 2_000, 'h1', 0.2)], { labelMetric: 'diskWriteOpsPerSec' });
    expect(Array.from(t.label)).toEqual([2]);
    // ctr_disk_ops = reads + writes: it would hand the label to the trees.
    expect(t.names).toEqual(FEATURES.filter((f) => f !== 'ctr_disk_ops'));
    const memory = buildTable([], [{ ...ctr(T0 + 2_000, 'h1', 0.2), memoryBytes: 5 }], { labelMetric: 'memoryBytes' });
    expect(memory.names).toEqual(FEATURES.filter((f) => f !== 'ctr_memory_bytes'));
    // A field that feeds no feature leaves them all.
    expect(buildTable([], [{ ...ctr(T0 + 2_000, 'h1', 0.2), netInBytesPerSec: 7 }], { labelMetric: 'netInBytesPerSec' }).names).toEqual(FEATURES);
  });

  it.each([
    ['cpuCores', ['ctr_cpu_cores', 'ctr_cpu_util']], // util × limit = cores
    ['ctr_cpu_cores', ['ctr_cpu_cores', 'ctr_cpu_util']],
    ['cpuLimitCores', ['ctr_cpu_limit_cores', 'ctr_cpu_util']],
    ['cpuUtil', ['ctr_cpu_cores', 'ctr_cpu_util']], // cores / limit = util
    ['ctr_cpu_util', ['ctr_cpu_cores', 'ctr_cpu_util']],
    ['diskReadOpsPerSec', ['ctr_disk_ops']],
    ['ctr_disk_ops', ['ctr_disk_ops']],
    ['threadCount', ['ctr_threads']],
    ['host_cpu_util', ['host_cpu_util']],
  ])('label %s: no feature that gives it back (%j left out)', (labelMetric, gone) => {
    expect(labelLeaks(labelMetric)).toEqual(gone);
    const t = buildTable([host('h1', T0 + 1_000, 0.3)], [{ ...ctr(T0 + 2_000, 'h1', 0.2), cpuUtil: 0.1, threadCount: 3 }], { labelMetric });
    expect(t.rows).toBe(1);
    expect(t.names).toEqual(FEATURES.filter((f) => !gone.includes(f)));
  });

  it('on a real lab slice, --label cpuCores leaves no column equal to the label', async () => {
    const t = await buildTableFromDir(FIXTURE, { since: new Date('2026-11-26T00:00:00Z'), to: new Date('2026-11-27T00:00:00Z') }, { stepMs: 1000, labelMetric: 'cpuCores' });
    expect(t.rows).toBeGreaterThan(5);
    expect(t.names).not.toContain('ctr_cpu_cores');
    expect(t.names).not.toContain('ctr_cpu_util');
    for (const c of t.columns) expect(Array.from(c).every((v, r) => v === t.label[r])).toBe(false);
  });

  it('builds from a recorded dataset directory (a real lab slice, a migration h1 → h2 in it)', async () => {
    const t = await buildTableFromDir(FIXTURE, { since: new Date('2026-11-26T16:30:00Z'), to: new Date('2026-11-26T16:31:00Z') });
    expect(t.rows).toBeGreaterThan(3);
    expect(new Set(t.hostIds)).toEqual(new Set(['h1', 'h2']));
    for (let r = 0; r < t.rows; r++) expect(t.label[r]).toBeGreaterThanOrEqual(450);
    expect(t.skippedLines).toBe(0);
    const csv = tableToCsv(t);
    const back = parseCsvTable(csv, { requireLabel: true });
    expect(back.names).toEqual(t.names);
    expect(Array.from(back.label as Float64Array)).toEqual(Array.from(t.label));
  });

  it('says why there is no row', async () => {
    await expect(buildTableFromDir(FIXTURE, { since: new Date('2026-11-26T16:30:00Z'), to: new Date('2026-11-26T16:31:00Z') }, { labelMetric: 'nothing' })).rejects.toThrow(/no training rows .*\(no nothing value\)/);
    await expect(buildTableFromDir(`${FIXTURE}/absent`, { since: new Date(0), to: new Date() })).rejects.toThrow(/does not exist/);
  });
});

describe('danfo variant', () => {
  it('gives the same feature rows as the typed-array builder', () => {
    const hosts: Record<string, unknown>[] = [];
    const containers: Record<string, unknown>[] = [];
    for (let k = 0; k < 60; k++) {
      for (const h of ['h1', 'h2']) hosts.push({ v: 1, hostId: h, at: iso(T0 + k * 2000 + (h === 'h1' ? 13 : 900)), stale: false, cpus: [0], cpuUtil: (k % 10) / 10, diskOpsPerSec: k });
      for (const c of ['a', 'b']) containers.push({ v: 1, herdId: c, hostId: k < 30 || c === 'a' ? 'h1' : 'h2', name: c, dockerId: c, at: iso(T0 + k * 2000 + (c === 'a' ? 500 : 1500)), state: 'running', cpuCores: k / 100, memoryBytes: k * 1000 });
    }
    const typed = buildTable(hosts as never, containers as never, { labelMetric: 'ctr_memory_bytes' });
    const danfo = resampleJoinDanfo(hosts as never, containers as never);
    const key = (h: string, t: number) => `${h}@${t}`;
    const fromDanfo = new Map(danfo.herdIds.map((h, i) => [key(h, danfo.atMs[i] as number), danfo.rows[i] as number[]]));
    expect(danfo.herdIds.length).toBe(typed.rows);
    for (let r = 0; r < typed.rows; r++) {
      const d = fromDanfo.get(key(typed.herdIds[r] as string, typed.atMs[r] as number)) as number[];
      expect(d).toBeDefined();
      const expected = FEATURES.filter((n) => n !== 'ctr_memory_bytes').map((n) => typed.columns[typed.names.indexOf(n)]?.[r]);
      expect(FEATURES.map((n, i) => [n, d[i]]).filter(([n]) => n !== 'ctr_memory_bytes').map(([, x]) => x)).toEqual(expected);
    }
  });
});

describe('CSV table', () => {
  it('reads features, label, missing cells; ignores key columns; quoted cells', () => {
    const t = parseCsvTable('at,herdId,hostId,ctr_cpu_cores,host_cpu_util,label\n2026-01-01T00:00:00Z,"a,b",h1,0.5,,100\n2026-01-01T00:00:05Z,c,h2,NaN,0.25,200\n', { requireLabel: true });
    expect(t.names).toEqual(['ctr_cpu_cores', 'host_cpu_util']);
    expect(t.rows).toBe(2);
    expect(Array.from(t.label as Float64Array)).toEqual([100, 200]);
    expect(Number.isNaN(t.columns[1]?.[0])).toBe(true);
    const m = toMatrix(t);
    expect(m.cols).toBe(2);
    expect(m.data[1 * 2 + 1]).toBe(0.25);
    expect(splitCsvLine('"x ""y""",1')).toEqual(['x "y"', '1']);
  });

  it.each([
    ['x,y\n1,2\n', /t\.csv: no "label" column \(header: x, y\)/],
    ['x,label\n1,2\n3,oops\n', /t\.csv: row 2 \(line 3\) column "label": "oops" is not a number/],
    ['x,label\nabc,2\n', /row 1 \(line 2\) column "x": "abc" is not a number/],
    ['x,label\n1\n', /row 1 \(line 2\) has 1 cells, the header 2/],
    ['x,label\n1,\n', /row 1 \(line 2\) column "label" is empty/],
    ['', /empty, expected a CSV header/],
    ['x,x,label\n', /column "x" appears twice/],
    ['label\n1\n', /no feature column/],
  ])('%j → error', (text, message) => {
    const e = thrownHerdError(() => parseCsvTable(text, { file: 't.csv', requireLabel: true }));
    expect(e.code).toBe('BAD_CONFIG');
    expect(e.message).toMatch(message);
  });

  it('reads a table without a label when none is required (prediction)', () => {
    expect(parseCsvTable('x\n1\n').label).toBeUndefined();
  });
});
