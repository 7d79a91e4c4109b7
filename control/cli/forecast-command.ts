/**
 * `herd forecast train|evaluate|importance|predict`: trains the ops/s model the
 * forecast-greedy policy uses (policies/forecast/gbdt) on a training table — a CSV
 * (monitor/dataset/README.md) or one built from the recorded metrics (--since/--to) —
 * and inspects it. Offline: needs no broker.
 *
 * Hold-out: `train` validates on the latest `--validation` share of the rows (default 0.2),
 * as the model will be used: on the future. With an `at` column the rows are first put in
 * time order (by `at`, then `herdId`, ties kept in file order), so a shuffled table scores as
 * one in time order; without one the rows are taken as given and a warning says that the
 * split assumes they are in time order. `evaluate` scores a model on a table it was not
 * trained on.
 *
 * The model records what it predicts (`label`: "label", the table's ops/s column, or the
 * column or metric `--label` named): forecast-greedy takes only a model of ops/s.
 */
import { cliProgress, type Progress } from './progress.ts';
import { existsSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { Command } from 'commander';
import { HerdError } from '../../protocol/errors.ts';
import { readConfigBytes } from '../../protocol/config.ts';
import { assertFeatures, loadModel, trainGbdt, type GbdtModel, type GbdtParams, type Matrix } from '../../policies/forecast/gbdt/index.ts';
import { unknownFeatures } from '../../policies/forecast-greedy/policy.ts';
import { buildTableFromDir, LABEL_COLUMN, labelLeaks, parseCsvTable, parseTime, splitCsvLine, tableToCsv, toMatrix, type CsvTable } from '../../monitor/dataset/index.ts';
import { checkOutputFile, printJson, table, writeOutputFile } from './context.ts';

const DEFAULT_DATASET_DIR = '/var/lib/herd/metrics';

// ------------------------------------------------------------------ option parsing
const usage = (message: string): never => {
  throw new HerdError('BAD_USAGE', message);
};

export function intOption(flag: string, text: string | undefined, min: number): number | undefined {
  if (text === undefined) return undefined;
  const x = Number(text);
  if (text.trim() === '' || !Number.isInteger(x) || x < min) usage(`${flag} must be an integer >= ${min}, got "${text}"`);
  return x;
}

export function numberOption(flag: string, text: string | undefined, ok: (x: number) => boolean, what: string): number | undefined {
  if (text === undefined) return undefined;
  const x = Number(text);
  if (text.trim() === '' || !Number.isFinite(x) || !ok(x)) usage(`${flag} must be ${what}, got "${text}"`);
  return x;
}

export interface TrainOptions {
  source: { kind: 'csv'; file: string } | { kind: 'recorded'; dir: string; since: Date; to: Date; stepMs: number };
  model: string;
  label?: string;
  params: Partial<GbdtParams>;
  validation: number;
}

export function parseTrainOptions(opts: { data?: string; since?: string; to?: string; dir?: string; step?: string; model: string; label?: string; trees?: string; depth?: string; eta?: string; seed?: string; validation?: string }, now = new Date()): TrainOptions {
  if (opts.data !== undefined && (opts.since !== undefined || opts.to !== undefined)) usage('give either --data FILE or --since/--to (recorded metrics), not both');
  if (opts.data === undefined && opts.since === undefined) usage('no training data: give --data FILE (a training table, CSV) or --since TIME [--to TIME] (the recorded metrics)');
  if (opts.data !== undefined && opts.step !== undefined) usage('--step applies to recorded metrics (--since/--to), not to a table given with --data');
  const params: Partial<GbdtParams> = {};
  const trees = intOption('--trees', opts.trees, 1);
  const depth = intOption('--depth', opts.depth, 1);
  const eta = numberOption('--eta', opts.eta, (x) => x > 0 && x <= 1, 'a number in (0, 1]');
  const seed = intOption('--seed', opts.seed, 0);
  if (trees !== undefined) params.nEstimators = trees;
  if (depth !== undefined) {
    if (depth > 30) usage(`--depth must be at most 30, got ${depth}`);
    params.maxDepth = depth;
  }
  if (eta !== undefined) params.eta = eta;
  if (seed !== undefined) params.seed = seed;
  const validation = numberOption('--validation', opts.validation, (x) => x > 0 && x < 1, 'a share in (0, 1)') ?? 0.2;
  if (opts.model.trim() === '') usage('--model needs a file name');
  checkOutputFile(opts.model, '--model'); // before the training, not after it
  if (opts.label !== undefined && (opts.label.trim() === '' || opts.label === LABEL_COLUMN)) usage(`--label names the column or metric to predict instead of "${LABEL_COLUMN}", got "${opts.label}"`);
  let source: TrainOptions['source'];
  if (opts.data !== undefined) source = { kind: 'csv', file: opts.data };
  else {
    const since = parseTime(opts.since as string, now, '--since');
    const to = parseTime(opts.to ?? 'now', now, '--to');
    if (!(since < to)) usage(`--since (${since.toISOString()}) must be before --to (${to.toISOString()})`);
    const step = numberOption('--step', opts.step, (x) => x > 0, 'a positive number of seconds') ?? 5;
    source = { kind: 'recorded', dir: opts.dir ?? DEFAULT_DATASET_DIR, since, to, stepMs: step * 1000 };
  }
  return { source, model: opts.model, ...(opts.label === undefined ? {} : { label: opts.label }), params, validation };
}

// ------------------------------------------------------------------ tables and models
const quoteCell = (s: string) => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

/**
 * The CSV text without its `label` column, for a reader that does not want the label
 * (predict: whatever the column holds, blank or not a number, is ignored; parseCsvTable
 * checks a label column whenever there is one). Row errors keep the file's own cell counts.
 */
function withoutLabelColumn(text: string, file: string): string {
  const lines = text.split(/\r?\n/);
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  if (lines.length === 0) return text;
  const header = splitCsvLine(lines[0] as string).map((h) => h.trim());
  const k = header.indexOf(LABEL_COLUMN);
  if (k < 0) return text;
  return `${lines
    .map((line, r) => {
      const cells = splitCsvLine(line);
      if (cells.length !== header.length) throw new HerdError('BAD_CONFIG', `${file}: row ${r} (line ${r + 1}) has ${cells.length} cells, the header ${header.length}`);
      cells.splice(k, 1);
      return cells.map(quoteCell).join(',');
    })
    .join('\n')}\n`;
}

/**
 * Reads a training table; with `labelColumn`, that column is the label (and no feature;
 * `label` itself is the default). Without `requireLabel`, a `label` column is ignored.
 */
export function readTable(file: string, options: { requireLabel: boolean; labelColumn?: string }): CsvTable {
  if (!existsSync(file)) throw new HerdError('BAD_USAGE', `${file}: no such file (a training table, CSV: see monitor/dataset/README.md)`);
  const bytes = readConfigBytes(file, '--data');
  let text: string;
  try {
    text = (file.endsWith('.gz') ? gunzipSync(bytes) : bytes).toString('utf8');
  } catch (err) {
    throw new HerdError('BAD_CONFIG', `${file}: not gzip data (${(err as Error).message}); name a plain CSV without .gz`, { cause: err });
  }
  const labelColumn = options.labelColumn === LABEL_COLUMN ? undefined : options.labelColumn;
  if (!options.requireLabel && labelColumn === undefined) return parseCsvTable(withoutLabelColumn(text, file), { file, requireLabel: false });
  const t = parseCsvTable(text, { file, requireLabel: options.requireLabel && labelColumn === undefined });
  if (labelColumn === undefined) return t;
  const k = t.names.indexOf(labelColumn);
  if (k < 0) throw new HerdError('BAD_CONFIG', `${file}: no column "${labelColumn}" (--label) among ${t.names.join(', ')}`);
  const label = t.columns[k] as Float64Array;
  const missing = label.findIndex((x) => Number.isNaN(x));
  if (missing >= 0) throw new HerdError('BAD_CONFIG', `${file}: row ${missing + 1} (line ${missing + 2}) column "${labelColumn}" (--label) is empty: every row needs a label`);
  // The features computed from the label's field would give it away (build.ts labelLeaks): left out too.
  const leaks = labelLeaks(labelColumn).filter((c) => c !== labelColumn && t.names.includes(c));
  if (leaks.length > 0) process.stderr.write(`herd forecast: --label ${labelColumn}: left out the column(s) computed from it, which would give the label away: ${leaks.join(', ')}\n`);
  const keep = (_: unknown, i: number) => i !== k && !leaks.includes(t.names[i] as string);
  return { names: t.names.filter(keep), columns: t.columns.filter(keep), label, rows: t.rows, keys: t.keys };
}

export function readModel(file: string): GbdtModel {
  if (!existsSync(file)) throw new HerdError('BAD_USAGE', `${file}: no such model file (make one with herd forecast train)`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new HerdError('BAD_CONFIG', `${file}: not JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    return loadModel(json);
  } catch (err) {
    throw new HerdError('BAD_CONFIG', `${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** The table's feature columns in the model's order; BAD_CONFIG naming missing/extra columns otherwise. */
export function matrixForModel(model: GbdtModel, t: CsvTable, file: string): Matrix {
  const names = model.featureNames;
  if (names.length === 0) return toMatrix(t); // an XGBoost model without names: the table's column order
  try {
    assertFeatures(model, [...t.names].sort((a, b) => names.indexOf(a) - names.indexOf(b)));
  } catch (err) {
    throw new HerdError('BAD_CONFIG', `${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  return toMatrix({ names: [...names], columns: names.map((n) => t.columns[t.names.indexOf(n)] as Float64Array), rows: t.rows });
}

/** The model's predictions; BAD_CONFIG naming the file when the table does not fit the model. */
export function predictTable(model: GbdtModel, t: CsvTable, file: string): Float64Array {
  const x = matrixForModel(model, t, file);
  try {
    return model.predict(x);
  } catch (err) {
    throw new HerdError('BAD_CONFIG', `${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * The rows in time order when the table has an `at` column: by `at`, then `herdId` (when
 * present), ties in file order (the order build.ts writes). `sorted` false: no `at`, rows as given.
 */
export function inTimeOrder(t: CsvTable, file: string): { table: CsvTable; sorted: boolean } {
  const at = t.keys.at;
  if (at === undefined) return { table: t, sorted: false };
  const ms = Float64Array.from(at, (text, r) => {
    const x = Date.parse(text);
    if (Number.isNaN(x)) throw new HerdError('BAD_CONFIG', `${file}: row ${r + 1} (line ${r + 2}) column "at": "${text.length > 40 ? `${text.slice(0, 40)}…` : text}" is not a time (ISO 8601, e.g. 2026-11-26T16:30:35.000Z)`);
    return x;
  });
  const ids = t.keys.herdId;
  const order = Array.from({ length: t.rows }, (_, i) => i).sort((a, b) => (ms[a] as number) - (ms[b] as number) || (ids === undefined ? 0 : (ids[a] as string) < (ids[b] as string) ? -1 : (ids[a] as string) > (ids[b] as string) ? 1 : 0) || a - b);
  if (order.every((r, i) => r === i)) return { table: t, sorted: true };
  const keys = Object.fromEntries(Object.entries(t.keys).map(([k, v]) => [k, order.map((i) => v[i] as string)]));
  return {
    table: { names: t.names, columns: t.columns.map((c) => Float64Array.from(order, (i) => c[i] as number)), ...(t.label === undefined ? {} : { label: Float64Array.from(order, (i) => (t.label as Float64Array)[i] as number) }), rows: t.rows, keys },
    sorted: true,
  };
}

export function sliceTable(t: CsvTable, from: number, to: number): CsvTable {
  const keys = Object.fromEntries(Object.entries(t.keys).map(([k, v]) => [k, v.slice(from, to)]));
  return { names: t.names, columns: t.columns.map((c) => c.slice(from, to)), ...(t.label === undefined ? {} : { label: t.label.slice(from, to) }), rows: to - from, keys };
}

export interface Scores {
  rows: number;
  rmse: number;
  mae: number;
  r2: number;
}

export function scores(y: Float64Array, yhat: Float64Array): Scores {
  const n = y.length;
  // No rows: every figure would be 0/0 (and R² came out as 1); callers refuse such a table first.
  if (n === 0) throw new HerdError('BAD_CONFIG', 'no rows to score');
  let se = 0;
  let ae = 0;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += (y[i] as number) / n;
  let ss = 0;
  for (let i = 0; i < n; i++) {
    const e = (y[i] as number) - (yhat[i] as number);
    se += e * e;
    ae += Math.abs(e);
    ss += ((y[i] as number) - mean) ** 2;
  }
  return { rows: n, rmse: Math.sqrt(se / n), mae: ae / n, r2: ss === 0 ? (se === 0 ? 1 : Number.NaN) : 1 - se / ss };
}

const g = (x: number) => (Number.isNaN(x) ? 'n/a' : Math.abs(x) >= 100 ? x.toFixed(1) : x.toPrecision(4));

// ------------------------------------------------------------------ commands
export async function runTrain(o: TrainOptions, progress: Progress = cliProgress(false)): Promise<{ model: GbdtModel; validation: Scores; trainRows: number }> {
  const out = (line: string) => progress.phase(line);
  let t: CsvTable;
  let what: string;
  if (o.source.kind === 'csv') {
    t = readTable(o.source.file, { requireLabel: true, ...(o.label === undefined ? {} : { labelColumn: o.label }) });
    what = o.source.file;
  } else {
    const built = await buildTableFromDir(o.source.dir, o.source, { stepMs: o.source.stepMs, ...(o.label === undefined ? {} : { labelMetric: o.label }) });
    t = parseCsvTable(tableToCsv(built), { requireLabel: true });
    what = `${o.source.dir} ${o.source.since.toISOString()} .. ${o.source.to.toISOString()} (${o.source.stepMs / 1000} s grid, ${built.dropped.noLabel} grid row(s) without a label dropped)`;
  }
  if (t.rows < 10) throw new HerdError('BAD_CONFIG', `${o.source.kind === 'csv' ? o.source.file : what}: ${t.rows} row(s), too few to train and validate on (at least 10)`);
  out(`read ${t.rows} rows × ${t.names.length} features from ${what}`);
  // The hold-out is the latest rows: with `at`, by time whatever the file's order.
  const ordered = inTimeOrder(t, what);
  t = ordered.table;
  if (!ordered.sorted) process.stderr.write(`warning: ${what} has no "at" column: the validation split takes the last ${Math.round(o.validation * 100)} % of the rows as given, which assumes they are in time order\n`);
  // Before the training: forecast-greedy's config load would refuse the model afterwards.
  const unknown = unknownFeatures(t.names);
  if (unknown !== undefined) progress.line(`warning: the table has ${unknown}: forecast-greedy will refuse this model; drop those columns to train one it can use`);
  const nVal = Math.max(1, Math.round(t.rows * o.validation));
  const train = sliceTable(t, 0, t.rows - nVal);
  const val = sliceTable(t, t.rows - nVal, t.rows);
  const p = { nEstimators: 100, maxDepth: 6, eta: 0.3, seed: 0, ...o.params };
  out(`training ${p.nEstimators} trees (depth ${p.maxDepth}, eta ${p.eta}, seed ${p.seed}) on ${train.rows} rows; validating on the last ${val.rows}${ordered.sorted ? ' (by "at")' : ''}`);
  const started = Date.now();
  let model: GbdtModel;
  try {
    model = trainGbdt(
      toMatrix(train),
      train.label as Float64Array,
      o.params,
      { x: toMatrix(val), y: val.label as Float64Array },
      (round, rounds, rmse) => progress.advance(`round${rmse === undefined ? '' : ` (validation RMSE ${g(rmse)})`}`, round + 1, rounds),
      { label: o.label ?? LABEL_COLUMN },
    );
  } catch (err) {
    throw new HerdError('BAD_CONFIG', `training failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  const validation = scores(val.label as Float64Array, model.predict(toMatrix(val)));
  out(`trained in ${((Date.now() - started) / 1000).toFixed(1)} s${model.bestIteration === undefined ? '' : ` (best iteration ${model.bestIteration})`}`);
  out(`validation RMSE ${g(validation.rmse)}, MAE ${g(validation.mae)}, R² ${g(validation.r2)} (${validation.rows} held-out rows)`);
  writeOutputFile(o.model, `${JSON.stringify(model.toJSON())}\n`, '--model');
  out(`wrote ${o.model}`);
  return { model, validation, trainRows: train.rows };
}

export function registerForecastCommand(program: Command): void {
  const forecast = program.command('forecast').description('train and inspect the ops/s model of the forecast-greedy policy (offline)');

  forecast
    .command('train')
    .description('train a model on a training table (--data) or on the recorded metrics (--since/--to); prints the validation RMSE')
    .option('--data <file>', 'training table, CSV, gzipped when it ends in .gz (header: feature columns and "label"; monitor/dataset/README.md)')
    .option('--since <time>', 'recorded metrics from (ISO time, date, or a duration ago such as 2h)')
    .option('--to <time>', 'recorded metrics until, exclusive (default now)')
    .option('--dir <dir>', `dataset directory with --since (default ${DEFAULT_DATASET_DIR})`)
    .option('--step <seconds>', 'grid step with --since (default 5)')
    .requiredOption('--model <file>', 'where to write the model (JSON)')
    .option('--label <metric>', 'predict this column (--data) or container metric (--since) instead of sysbench ops/s (recorded in the model as its label: forecast-greedy takes only ops/s models)')
    .option('--trees <n>', 'boosting rounds (default 100)')
    .option('--depth <n>', 'tree depth (default 6)')
    .option('--eta <x>', 'learning rate (default 0.3)')
    .option('--seed <n>', 'random seed (default 0)')
    .option('--validation <share>', 'share of the rows held out for validation: the latest by "at" (the last as given when the table has no "at") (default 0.2)')
    .option('--json', 'print {model, trainRows, validation, bestIteration} as JSON at the end (progress goes to stderr)')
    .action(async (opts: Parameters<typeof parseTrainOptions>[0] & { json?: boolean }) => {
      const options = parseTrainOptions(opts);
      const progress = cliProgress(opts.json, { clock: true });
      try {
        const r = await runTrain(options, progress);
        if (opts.json === true) printJson({ model: options.model, trainRows: r.trainRows, validation: r.validation, ...(r.model.bestIteration === undefined ? {} : { bestIteration: r.model.bestIteration }) });
      } finally {
        progress.end();
      }
    });

  forecast
    .command('evaluate')
    .description('RMSE, MAE and R² of a model on a table it was not trained on')
    .requiredOption('--model <file>', 'model (JSON: Herd\'s or XGBoost\'s)')
    .requiredOption('--data <file>', 'table with the model\'s feature columns and "label"')
    .option('--label <column>', 'the label column (default "label")')
    .option('--json', 'print JSON')
    .action((opts: { model: string; data: string; label?: string; json?: boolean }) => {
      const model = readModel(opts.model);
      const t = readTable(opts.data, { requireLabel: true, ...(opts.label === undefined ? {} : { labelColumn: opts.label }) });
      if (t.rows === 0) throw new HerdError('BAD_CONFIG', `${opts.data}: no rows (a header only): nothing to evaluate on`);
      const column = opts.label ?? LABEL_COLUMN;
      if (model.label !== undefined && model.label !== column) process.stderr.write(`warning: the model predicts "${model.label}", scored here against column "${column}"\n`);
      const s = scores(t.label as Float64Array, predictTable(model, t, opts.data));
      if (opts.json === true) printJson(s);
      else process.stdout.write(`${table(['rows', 'RMSE', 'MAE', 'R²'], [[String(s.rows), g(s.rmse), g(s.mae), g(s.r2)]])}\n`);
    });

  forecast
    .command('importance')
    .description('the model\'s features ranked by total split gain')
    .requiredOption('--model <file>', 'model (JSON)')
    .option('--json', 'print JSON')
    .action((opts: { model: string; json?: boolean }) => {
      const ranked = readModel(opts.model).importance();
      const total = ranked.reduce((s, f) => s + f.gain, 0);
      const rows = ranked.map((f, i) => ({ rank: i + 1, feature: f.feature, gain: f.gain, share: total > 0 ? f.gain / total : 0 }));
      if (opts.json === true) printJson(rows);
      else process.stdout.write(`${table(['rank', 'feature', 'gain', 'share'], rows.map((r) => [String(r.rank), r.feature, g(r.gain), `${(r.share * 100).toFixed(1)} %`]))}\n`);
    });

  forecast
    .command('predict')
    .description('predictions for every row of a table (a label column, if any, is ignored)')
    .requiredOption('--model <file>', 'model (JSON)')
    .requiredOption('--data <file>', 'table with the model\'s feature columns')
    .option('--json', 'print JSON')
    .action((opts: { model: string; data: string; json?: boolean }) => {
      const model = readModel(opts.model);
      const t = readTable(opts.data, { requireLabel: false });
      const yhat = predictTable(model, t, opts.data);
      if (opts.json === true) printJson(Array.from(yhat));
      else process.stdout.write(`row,prediction\n${Array.from(yhat, (y, i) => `${i + 1},${y}`).join('\n')}\n`);
    });
}

