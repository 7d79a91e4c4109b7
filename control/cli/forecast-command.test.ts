import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { FEATURES } from '../../monitor/dataset/index.ts';
import { SNAPSHOT_FEATURES } from '../../policies/forecast-greedy/features.ts';
import { checkPolicyArgs, runPolicy } from '../../policies/registry.ts';
import { container, host, snapshot } from '../../policies/testing/builders.ts';
import { resolveForecastModels } from '../config.ts';
import type { ConfigIssue } from '../../protocol/config.ts';
import { parseTrainOptions, registerForecastCommand, scores } from './forecast-command.ts';
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

/** A table where ops/s falls with the host's CPU use: 1000 × (1 − util) + 10 × threads. */
function writeTable(name: string, rows: number, o: { drop?: string; bad?: boolean; extra?: string } = {}): string {
  const names = [...SNAPSHOT_FEATURES.filter((n) => n !== o.drop), ...(o.extra === undefined ? [] : [o.extra])];
  const lines = [[...names, 'label'].join(',')];
  for (let r = 0; r < rows; r++) {
    const util = (r * 37) % 100 / 100;
    const threads = (r % 4) + 1;
    const cells = names.map((n) => (n === 'host_cpu_util' ? util : n === 'ctr_threads' ? threads : n === 'host_cores' ? 2 : (r * 13) % 7));
    lines.push([...cells, o.bad === true && r === 4 ? 'fast' : 1000 * (1 - util) + 10 * threads].join(','));
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

  it('trains from the recorded metrics, or says why it cannot', async () => {
    await expect(herd('train', '--since', '2026-11-26T16:30:00Z', '--to', '2026-11-26T16:31:00Z', '--dir', FIXTURE, '--model', join(dir, 'r.json'))).rejects.toThrow(/\d row\(s\), too few to train and validate on/);
    await expect(herd('train', '--since', '2026-11-26T10:00:00Z', '--to', '2026-11-26T11:00:00Z', '--dir', FIXTURE, '--model', join(dir, 'r.json'))).rejects.toThrow(/no training rows in /);
  });

  it('gives the policy a model it uses: a config path resolved to JSON, then a move to the quieter host', () => {
    const issues: ConfigIssue[] = [];
    const [step] = resolveForecastModels([{ policy: 'forecast-greedy', args: { model: 'model.json', rewardThreshold: 1.2 } }], dir, issues);
    expect(issues).toEqual([]);
    expect(checkPolicyArgs(step as never).errors).toEqual([]);
    const s = snapshot([host('h1', { cores: 2, cpuUtil: 1 }), host('h2', { cores: 2, cpuUtil: 0.1 })], [container('db', 'h1', { cpuCores: 0.5, threadCount: 2 })]);
    const plan = runPolicy(s, step as never);
    expect(plan.moves).toEqual([expect.objectContaining({ name: 'db', from: 'h1', to: 'h2', reason: expect.stringMatching(/^predicted \d+ ops\/s on h2 vs \d+ on h1 \(\+\d+%\)/) })]);
    resolveForecastModels([{ policy: 'forecast-greedy', args: { model: 'absent.json' } }], dir, issues);
    expect(issues).toEqual([{ path: ['loop', 'policies', 0, 'args', 'model'], message: expect.stringMatching(/absent\.json: no such file \(forecast-greedy needs a trained model/) }]);
  });
});

describe('the training table and the policy agree', () => {
  it('name the same features', () => expect([...SNAPSHOT_FEATURES]).toEqual([...FEATURES]));
  it('scores', () => {
    const s = scores(Float64Array.from([1, 2, 3]), Float64Array.from([1, 2, 5]));
    expect(s.rmse).toBeCloseTo(Math.sqrt(4 / 3));
    expect(s.mae).toBeCloseTo(2 / 3);
    expect(s.r2).toBeCloseTo(1 - 4 / 2);
  });
});
