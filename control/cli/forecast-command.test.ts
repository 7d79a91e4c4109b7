import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { FEATURES, LABEL_COLUMN } from '../../monitor/dataset/index.ts';
import { OPS_LABEL, SNAPSHOT_FEATURES } from '../../policies/forecast-greedy/features.ts';
import { checkPolicyArgs, runPolicy } from '../../policies/registry.ts';
import { container, host, snapshot } from '../../policies/testing/builders.ts';
import { resolveForecastModels } from '../config.ts';
import type { ConfigIssue } from '../../protocol/config.ts';
import { inTimeOrder, parseTrainOptions, readTable, registerForecastCommand, scores } from './forecast-command.ts';
import { thrownHerdError } from '../../test/support/thrown.ts';

const dir = mkdtempSync(join(tmpdir(), 'herd-forecast-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const FIXTURE = fileURLToPath(new URL('../../monitor/dataset/fixtures/lab', import.meta.url));


/** Runs `herd forecast …`; returns stdout and stderr. */
async function herd(...argv: string[]): Promise<{ out: string; err: string }> {
  const program = new Command('herd').exitOverride();
  registerForecastCommand(program);
  program.commands.forEach(function override(c: Command) {
    c.exitOverride();
    c.commands.forEach(override);
  });
  let out = '';
  let err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
  try {
    await program.parseAsync(['forecast', ...argv], { from: 'user' });
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
  return { out, err };
}

/**
 * A table where ops/s falls with the host's CPU use: 1000 × (1 − util) + 10 × threads.
 * `at`: with keys `at` (row r at T0 + 5 s × ⌊r / 2⌋) and `herdId` (c0/c1), written in time
 * order or shuffled.
 */
function writeTable(name: string, rows: number, o: { drop?: string; bad?: boolean; extra?: string; at?: 'ordered' | 'shuffled' } = {}): string {
  const names = [...SNAPSHOT_FEATURES.filter((n) => n !== o.drop), ...(o.extra === undefined ? [] : [o.extra])];
  const lines = [[...(o.at === undefined ? [] : ['at', 'herdId']), ...names, 'label'].join(',')];
  const T0 = Date.parse('2026-11-26T10:00:00Z');
  for (let r = 0; r < rows; r++) {
    const util = (r * 37) % 100 / 100;
    const threads = (r % 4) + 1;
    const cells = names.map((n) => (n === 'host_cpu_util' ? util : n === 'ctr_threads' ? threads : n === 'host_cores' ? 2 : (r * 13) % 7));
    const keys = o.at === undefined ? [] : [new Date(T0 + 5000 * Math.floor(r / 2)).toISOString(), `c${r % 2}`];
    lines.push([...keys, ...cells, o.bad === true && r === 4 ? 'fast' : 1000 * (1 - util) + 10 * threads].join(','));
  }
  if (o.at === 'shuffled') {
    const body = lines.slice(1).map((line, i) => ({ line, k: (i * 7919) % 101 }));
    body.sort((a, b) => a.k - b.k || a.line.localeCompare(b.line));
    lines.splice(1, body.length, ...body.map((b) => b.line));
  }
  const file = join(dir, name);
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

describe('herd forecast train: options', () => {
  const now = new Date('2026-11-26T17:00:00Z');
  it('parses a table source and the learner parameters', () => {
    expect(parseTrainOptions({ data: 't.csv', model: 'm.json', trees: '50', depth: '4', eta: '0.1', seed: '7', label: 'tps' }, now)).toEqual({
      source: { kind: 'csv', file: 't.csv' },
      model: 'm.json',
      label: 'tps',
      params: { nEstimators: 50, maxDepth: 4, eta: 0.1, seed: 7 },
      validation: 0.2,
    });
  });

  it('parses recorded metrics', () => {
    const o = parseTrainOptions({ since: '2h', model: 'm.json', dir: '/d', step: '10' }, now);
    expect(o.source).toEqual({ kind: 'recorded', dir: '/d', since: new Date('2026-11-26T15:00:00Z'), to: now, stepMs: 10_000 });
  });

  it.each([
    [{ data: 't.csv', since: '2h' }, /either --data FILE or --since\/--to/],
    [{}, /no training data: give --data FILE .* or --since TIME/],
    [{ data: 't.csv', trees: 'many' }, /--trees must be an integer >= 1, got "many"/],
    [{ data: 't.csv', trees: '0' }, /--trees must be an integer >= 1, got "0"/],
    [{ data: 't.csv', depth: '31' }, /--depth must be at most 30/],
    [{ data: 't.csv', eta: '0' }, /--eta must be a number in \(0, 1\], got "0"/],
    [{ data: 't.csv', seed: '-1' }, /--seed must be an integer >= 0/],
    [{ data: 't.csv', validation: '1' }, /--validation must be a share in \(0, 1\)/],
    [{ data: 't.csv', step: '5' }, /--step applies to recorded metrics/],
    [{ data: 't.csv', label: 'label' }, /--label names the column or metric to predict instead of "label"/],
    [{ since: '1h', to: '2h' }, /--since .* must be before --to/],
    [{ since: 'yesterday-ish' }, /"yesterday-ish" is not a time/],
    [{ data: 't.csv', model: '/nonexistent-dir/m.json' }, /--model \/nonexistent-dir\/m\.json: directory \/nonexistent-dir does not exist/],
    [{ data: 't.csv', model: tmpdir() }, /--model .* is a directory: name a file/],
  ])('%j → BAD_USAGE', (opts, message) => {
    const e = thrownHerdError(() => parseTrainOptions({ model: 'm.json', ...opts }, now));
    expect(e.code).toBe('BAD_USAGE');
    expect(e.message).toMatch(message);
  });
});

describe('herd forecast (train, evaluate, importance, predict) on a table', () => {
  const data = writeTable('train.csv', 400);
  const heldOut = writeTable('held-out.csv', 60);
  const model = join(dir, 'model.json');

  it('trains, printing progress and the validation RMSE, and writes the model', async () => {
    const { out } = await herd('train', '--data', data, '--model', model, '--trees', '60', '--depth', '4', '--eta', '0.3', '--seed', '1');
    expect(out).toMatch(/read 400 rows × 14 features from .*train\.csv/);
    expect(out).toMatch(/training 60 trees \(depth 4, eta 0.3, seed 1\) on 320 rows; validating on the last 80/);
    // Not on a terminal: the phase lines only, no bar of rounds, no control characters.
    expect(out).not.toMatch(/[\r\x1b]|round/);
    const rmse = Number(/validation RMSE ([0-9.]+)/.exec(out)?.[1]);
    expect(rmse).toBeLessThan(60);
    expect(JSON.parse(readFileSync(model, 'utf8'))).toMatchObject({ format: 'herd-gbdt', featureNames: [...SNAPSHOT_FEATURES] });
  });

  it('with --json: the result alone on stdout, the phase lines on stderr', async () => {
    const { out, err } = await herd('train', '--data', data, '--model', join(dir, 'j.json'), '--trees', '10', '--json');
    const r = JSON.parse(out) as { model: string; trainRows: number; validation: { rmse: number; rows: number } };
    expect(r).toMatchObject({ model: join(dir, 'j.json'), trainRows: 320, validation: { rows: 80 } });
    expect(r.validation.rmse).toBeGreaterThan(0);
    expect(err).toMatch(/training 10 trees/);
    expect(err).not.toMatch(/[\r\x1b]/);
  });

  it('evaluates on held-out rows (JSON and text)', async () => {
    const s = JSON.parse((await herd('evaluate', '--model', model, '--data', heldOut, '--json')).out) as { rows: number; rmse: number; mae: number; r2: number };
    expect(s.rows).toBe(60);
    expect(s.r2).toBeGreaterThan(0.9);
    expect(s.mae).toBeLessThanOrEqual(s.rmse);
    expect((await herd('evaluate', '--model', model, '--data', heldOut)).out).toMatch(/rows\s+RMSE\s+MAE\s+R²/);
  });

  it('ranks the features: the host\'s CPU use first', async () => {
    const ranked = JSON.parse((await herd('importance', '--model', model, '--json')).out) as { rank: number; feature: string; share: number }[];
    expect(ranked[0]).toMatchObject({ rank: 1, feature: 'host_cpu_util' });
    expect(ranked.reduce((s, r) => s + r.share, 0)).toBeCloseTo(1, 6);
    expect((await herd('importance', '--model', model)).out).toMatch(/1\s+host_cpu_util/);
  });

  it('predicts every row', async () => {
    const p = JSON.parse((await herd('predict', '--model', model, '--data', heldOut, '--json')).out) as number[];
    expect(p).toHaveLength(60);
    expect((await herd('predict', '--model', model, '--data', heldOut)).out.split('\n')[0]).toBe('row,prediction');
  });

  it('names what does not fit: a missing column, a bad cell, a bad model file, no file', async () => {
    await expect(herd('evaluate', '--model', model, '--data', writeTable('short.csv', 20, { drop: 'ctr_threads' }))).rejects.toThrow(/short\.csv: .*missing column\(s\): ctr_threads/);
    await expect(herd('train', '--data', writeTable('bad.csv', 20, { bad: true }), '--model', join(dir, 'x.json'))).rejects.toThrow(/bad\.csv: row 5 \(line 6\) column "label": "fast" is not a number/);
    writeFileSync(join(dir, 'broken.json'), '{"format": ');
    await expect(herd('importance', '--model', join(dir, 'broken.json'))).rejects.toThrow(/broken\.json: not JSON/);
    writeFileSync(join(dir, 'other.json'), '{"format": "something"}');
    await expect(herd('importance', '--model', join(dir, 'other.json'))).rejects.toMatchObject({ code: 'BAD_CONFIG', message: expect.stringMatching(/other\.json: /) });
    await expect(herd('predict', '--model', model, '--data', join(dir, 'absent.csv'))).rejects.toMatchObject({ code: 'BAD_USAGE', message: expect.stringMatching(/absent\.csv: no such file/) });
    await expect(herd('train', '--data', data, '--model', join(dir, 'y.json'), '--label', 'nope')).rejects.toThrow(/train\.csv: no column "nope" \(--label\)/);
    await expect(herd('predict', '--model', model, '--data', dir)).rejects.toMatchObject({ code: 'BAD_CONFIG', message: `--data: cannot read ${dir}: EISDIR` });
  });

  it('reads a gzipped table (.gz), and says so when a .gz file is not gzip', async () => {
    const gz = join(dir, 'held-out.csv.gz');
    writeFileSync(gz, gzipSync(readFileSync(heldOut)));
    expect(JSON.parse((await herd('predict', '--model', model, '--data', gz, '--json')).out)).toEqual(JSON.parse((await herd('predict', '--model', model, '--data', heldOut, '--json')).out));
    writeFileSync(join(dir, 'plain.csv.gz'), readFileSync(heldOut));
    await expect(herd('predict', '--model', model, '--data', join(dir, 'plain.csv.gz'))).rejects.toMatchObject({ code: 'BAD_CONFIG', message: expect.stringMatching(/plain\.csv\.gz: not gzip data/) });
  });

  it('warns when the table has a column a snapshot cannot provide: forecast-greedy would refuse the model', async () => {
    const file = join(dir, 'foo.json');
    const { out } = await herd('train', '--data', writeTable('foo.csv', 40, { extra: 'foo' }), '--model', file, '--trees', '3');
    expect(out).toContain('warning: the table has feature(s) a cluster snapshot does not provide: foo (provided: ctr_cpu_cores,');
    expect(out).toContain('forecast-greedy will refuse this model; drop those columns to train one it can use');
    expect(checkPolicyArgs({ policy: 'forecast-greedy', args: { model: JSON.parse(readFileSync(file, 'utf8')) } }).errors.join('; ')).toMatch(/does not provide: foo/);
    expect((await herd('train', '--data', data, '--model', join(dir, 'ok.json'), '--trees', '3')).out).not.toContain('warning');
  });

  it('trains on another column with --label (and drops it from the features)', async () => {
    const { out: err } = await herd('train', '--data', data, '--model', join(dir, 'threads.json'), '--label', 'ctr_threads', '--trees', '5');
    expect(err).toMatch(/read 400 rows × 13 features/); // the 14 less ctr_threads; the "label" column is never a feature
    expect(JSON.parse(readFileSync(join(dir, 'threads.json'), 'utf8')).featureNames).not.toContain('ctr_threads');
  });

  it('with --label, leaves out the features computed from the label too (from a CSV table as from recorded metrics), saying so', async () => {
    const r = await herd('train', '--data', data, '--model', join(dir, 'cores.json'), '--label', 'ctr_cpu_cores', '--trees', '5');
    expect(r.err).toMatch(/--label ctr_cpu_cores: left out the column\(s\) computed from it, which would give the label away: ctr_cpu_util/);
    expect(r.out).toMatch(/read 400 rows × 12 features/);
    expect(JSON.parse(readFileSync(join(dir, 'cores.json'), 'utf8')).featureNames).not.toContain('ctr_cpu_util');
  });

  it('trains from the recorded metrics, or says why it cannot', async () => {
    await expect(herd('train', '--since', '2026-11-26T16:30:00Z', '--to', '2026-11-26T16:31:00Z', '--dir', FIXTURE, '--model', join(dir, 'r.json'))).rejects.toThrow(/\d row\(s\), too few to train and validate on/);
    await expect(herd('train', '--since', '2026-11-26T10:00:00Z', '--to', '2026-11-26T11:00:00Z', '--dir', FIXTURE, '--model', join(dir, 'r.json'))).rejects.toThrow(/no training rows in /);
  });

  it('gives the policy a model it uses: a config path resolved to JSON, then a move to the quieter host', () => {
    const issues: ConfigIssue[] = [];
    const [step] = resolveForecastModels([{ policy: 'forecast-greedy', args: { model: 'model.json', rewardThreshold: 1.2 } }], dir, issues);
    expect(issues).toEqual([]);
    expect(checkPolicyArgs(step as never).errors).toEqual([]);
    // h1 at 95 %: the table's host_cpu_util goes up to 0.99, a host at 100 % is outside what the model saw.
    const s = snapshot([host('h1', { cores: 2, cpuUtil: 0.95 }), host('h2', { cores: 2, cpuUtil: 0.1 })], [container('db', 'h1', { cpuCores: 0.5, threadCount: 2 })]);
    const plan = runPolicy(s, step as never);
    expect(plan.moves).toEqual([expect.objectContaining({ name: 'db', from: 'h1', to: 'h2', reason: expect.stringMatching(/^predicted \d+ ops\/s on h2 vs \d+ on h1 \(\+\d+%\)/) })]);
    resolveForecastModels([{ policy: 'forecast-greedy', args: { model: 'absent.json' } }], dir, issues);
    expect(issues).toEqual([{ path: ['loop', 'policies', 0, 'args', 'model'], message: expect.stringMatching(/absent\.json: no such file \(forecast-greedy needs a trained model/) }]);
  });
});

describe('the training table and the policy agree', () => {
  it('name the same features', () => expect([...SNAPSHOT_FEATURES]).toEqual([...FEATURES]));
  it('name the same ops/s label', () => expect(OPS_LABEL).toBe(LABEL_COLUMN));
  it('scores', () => {
    const s = scores(Float64Array.from([1, 2, 3]), Float64Array.from([1, 2, 5]));
    expect(s.rmse).toBeCloseTo(Math.sqrt(4 / 3));
    expect(s.mae).toBeCloseTo(2 / 3);
    expect(s.r2).toBeCloseTo(1 - 4 / 2);
    expect(() => scores(new Float64Array(0), new Float64Array(0))).toThrow(/no rows to score/);
  });
});

describe('herd forecast: the validation split, the model\'s label and ranges, tables at the edges', () => {
  it('holds out the latest rows by "at" whatever the file\'s order: a shuffled table trains the same model', async () => {
    const ordered = await herd('train', '--data', writeTable('at-ordered.csv', 200, { at: 'ordered' }), '--model', join(dir, 'at-ordered.json'), '--trees', '20', '--json');
    const shuffled = await herd('train', '--data', writeTable('at-shuffled.csv', 200, { at: 'shuffled' }), '--model', join(dir, 'at-shuffled.json'), '--trees', '20', '--json');
    expect(readFileSync(join(dir, 'at-shuffled.csv'), 'utf8')).not.toBe(readFileSync(join(dir, 'at-ordered.csv'), 'utf8'));
    expect((JSON.parse(shuffled.out) as { validation: unknown }).validation).toEqual((JSON.parse(ordered.out) as { validation: unknown }).validation);
    expect(readFileSync(join(dir, 'at-shuffled.json'), 'utf8')).toBe(readFileSync(join(dir, 'at-ordered.json'), 'utf8'));
    expect(shuffled.err).toMatch(/validating on the last 40 \(by "at"\)/);
    expect(shuffled.err).not.toContain('warning');
  });

  it('orders by at, then herdId, ties in file order; refuses an "at" that is no time', () => {
    const file = join(dir, 'order.csv');
    writeFileSync(file, 'at,herdId,x,label\n2026-11-26T10:00:05Z,b,1,1\n2026-11-26T10:00:00Z,b,2,2\n2026-11-26T10:00:05Z,a,3,3\n2026-11-26T10:00:05Z,a,4,4\n');
    const { table, sorted } = inTimeOrder(readTable(file, { requireLabel: true }), file);
    expect(sorted).toBe(true);
    expect(Array.from(table.label as Float64Array)).toEqual([2, 3, 4, 1]);
    expect(Array.from(table.columns[0] as Float64Array)).toEqual([2, 3, 4, 1]);
    expect(table.keys.herdId).toEqual(['b', 'a', 'a', 'b']);
    writeFileSync(file, 'at,x,label\n2026-11-26T10:00:05Z,1,1\nlater,2,2\n');
    expect(() => inTimeOrder(readTable(file, { requireLabel: true }), file)).toThrow(/order\.csv: row 2 \(line 3\) column "at": "later" is not a time/);
  });

  it('without "at", warns on stderr that the split assumes the rows are in time order', async () => {
    const { out, err } = await herd('train', '--data', writeTable('no-at.csv', 50), '--model', join(dir, 'no-at.json'), '--trees', '3');
    expect(err).toMatch(/^warning: .*no-at\.csv has no "at" column: the validation split takes the last 20 % of the rows as given, which assumes they are in time order\n$/);
    expect(out).not.toContain('warning');
  });

  it('writes what the model predicts and the training range of each feature into the model', async () => {
    const data = writeTable('labelled.csv', 100);
    await herd('train', '--data', data, '--model', join(dir, 'ops.json'), '--trees', '3');
    const ops = JSON.parse(readFileSync(join(dir, 'ops.json'), 'utf8')) as { label: string; featureNames: string[]; featureRanges: [number, number][] };
    expect(ops.label).toBe('label');
    expect(ops.featureRanges[ops.featureNames.indexOf('host_cores')]).toEqual([2, 2]);
    expect(ops.featureRanges[ops.featureNames.indexOf('host_cpu_util')]).toEqual([0, 0.99]);
    expect(checkPolicyArgs({ policy: 'forecast-greedy', args: { model: ops } }).errors).toEqual([]);
    // A model of something else is refused by the policy, naming what it predicts.
    await herd('train', '--data', data, '--model', join(dir, 'threads-label.json'), '--label', 'ctr_threads', '--trees', '3');
    const threads = JSON.parse(readFileSync(join(dir, 'threads-label.json'), 'utf8')) as { label: string };
    expect(threads.label).toBe('ctr_threads');
    expect(checkPolicyArgs({ policy: 'forecast-greedy', args: { model: threads } }).errors.join('; ')).toMatch(/the model predicts "ctr_threads", not ops\/s/);
  });

  it('evaluate refuses a table with no rows (R² would come out as 1)', async () => {
    const model = join(dir, 'edge.json');
    await herd('train', '--data', writeTable('edge.csv', 40), '--model', model, '--trees', '3');
    const empty = join(dir, 'header-only.csv');
    writeFileSync(empty, `${[...SNAPSHOT_FEATURES, 'label'].join(',')}\n`);
    await expect(herd('evaluate', '--model', model, '--data', empty)).rejects.toMatchObject({ code: 'BAD_CONFIG', message: expect.stringMatching(/header-only\.csv: no rows \(a header only\): nothing to evaluate on/) });
  });

  it('evaluate --label label is the default label column', async () => {
    const model = join(dir, 'edge2.json');
    const held = writeTable('edge2-held.csv', 30);
    await herd('train', '--data', writeTable('edge2.csv', 40), '--model', model, '--trees', '3');
    expect((await herd('evaluate', '--model', model, '--data', held, '--label', 'label', '--json')).out).toBe((await herd('evaluate', '--model', model, '--data', held, '--json')).out);
  });

  it('predict ignores a label column, blank or not a number', async () => {
    const model = join(dir, 'edge3.json');
    await herd('train', '--data', writeTable('edge3.csv', 40), '--model', model, '--trees', '3');
    const held = readFileSync(writeTable('edge3-held.csv', 5), 'utf8').trim().split('\n');
    const blank = join(dir, 'blank-label.csv');
    writeFileSync(blank, `${[held[0], ...held.slice(1).map((l, i) => `${l.slice(0, l.lastIndexOf(',') + 1)}${i === 1 ? 'n/a' : ''}`)].join('\n')}\n`);
    const want = JSON.parse((await herd('predict', '--model', model, '--data', join(dir, 'edge3-held.csv'), '--json')).out) as number[];
    expect(JSON.parse((await herd('predict', '--model', model, '--data', blank, '--json')).out)).toEqual(want);
    // A row of the wrong width is still reported with the file's own counts.
    writeFileSync(blank, `${held[0]}\n1,2\n`);
    await expect(herd('predict', '--model', model, '--data', blank)).rejects.toThrow(/blank-label\.csv: row 1 \(line 2\) has 2 cells, the header 15/);
  });
});
