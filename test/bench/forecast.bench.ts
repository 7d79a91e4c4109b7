/**
 * `npm run bench:forecast [-- --data FILE] [--rows 100000] [--trees 200] [--depth 6] [--eta 0.1] [--repeat 3] [--charts DIR] [--python PATH]`
 *
 * Prints figures (not a test): Herd's gradient-boosted trees (policies/forecast/gbdt)
 * against XGBoost's `hist` method (Debian's python3-xgboost 1.7, in a python3 subprocess in
 * the same run), same hyperparameters, same rows, one thread each, on two data sets:
 *
 * (a) lab: the lab recording (`--data`, default monitor/dataset/recordings/lab-forecast.csv.gz,
 *     made by `npm run dataset:record`): sysbench CPU, memory and OLTP containers, one row
 *     per container and second, the label their sysbench ops/s. Rows are in time order;
 *     the first 80 % train, the last 20 % (the last minutes) test.
 * (b) Friedman #1: 100,000 rows × 20 features (5 informative),
 *     y = 10 sin(π x1 x2) + 20 (x3 − 0.5)² + 10 x4 + 5 x5 + N(0, 1), x uniform on [0, 1],
 *     seed 20261126, generated here with Herd's seeded PRNG; first 80 % train, last 20 % test.
 *
 * The rows go to XGBoost as CSV (shortest round-trip decimals, so numpy reads the very same
 * doubles; missing values as nan). Training time includes binning (Herd) and DMatrix
 * construction (XGBoost); prediction uses `inplace_predict` on the numpy array; XGBoost gets
 * base_score = mean(y) like Herd. Each side runs `--repeat` times and its fastest time counts
 * (this VM's timings vary by ±40 % from run to run).
 *
 * Charts (PNG, in `--charts`, default docs/forecast): forecast-lab.png, one test container's
 * predicted (Herd, XGBoost) and actual ops/s over time; importance-lab.png, each feature's
 * share of the total split gain, Herd and XGBoost side by side.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readTable, scores, sliceTable } from '../../control/cli/forecast-command.ts';
import { toMatrix } from '../../monitor/dataset/index.ts';
import { seededRng, sliceRows, trainGbdt, type GbdtModel, type GbdtParams, type Matrix } from '../../policies/forecast/gbdt/index.ts';
import { REPO_ROOT } from '../support/herd-cli.ts';
import { writePngChart } from './png-chart.ts';
import { benchProgress } from './report.ts';

const SEED = 20261126;
const FRIEDMAN_FEATURES = 20;
const NOISE = 1.0;

const { values: opts } = parseArgs({
  options: {
    data: { type: 'string', default: `${REPO_ROOT}/monitor/dataset/recordings/lab-forecast.csv.gz` },
    rows: { type: 'string', default: '100000' },
    trees: { type: 'string', default: '200' },
    depth: { type: 'string', default: '6' },
    eta: { type: 'string', default: '0.1' },
    repeat: { type: 'string', default: '3' },
    charts: { type: 'string', default: `${REPO_ROOT}/docs/forecast` },
    python: { type: 'string' },
  },
});
const REPEAT = Math.max(1, Number(opts.repeat));
const params: GbdtParams = { nEstimators: Number(opts.trees), maxDepth: Number(opts.depth), eta: Number(opts.eta), lambda: 1, gamma: 0, minChildWeight: 1, subsample: 1, colsampleByTree: 1, maxBin: 256, seed: 0 };

const PYTHON_XGBOOST = String.raw`
import json, sys, time
import numpy as np, xgboost as xgb
path, n_train, p, out = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
data = np.loadtxt(path, delimiter=",", skiprows=1)
x, y = data[:, 1:], data[:, 0]
xtr, ytr, xte, yte = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
params = {"objective": "reg:squarederror", "tree_method": "hist", "max_depth": p["maxDepth"], "eta": p["eta"], "lambda": p["lambda"],
          "gamma": 0, "min_child_weight": p["minChildWeight"], "max_bin": p["maxBin"], "subsample": 1, "colsample_bytree": 1,
          "base_score": float(np.mean(ytr)), "nthread": 1, "seed": 0}
best_train = best_pred = float("inf")
for _ in range(p["repeat"]):
    t0 = time.perf_counter()
    dtrain = xgb.DMatrix(xtr, label=ytr, nthread=1)
    booster = xgb.train(params, dtrain, p["nEstimators"])
    t1 = time.perf_counter()
    pred = booster.inplace_predict(xte)
    t2 = time.perf_counter()
    best_train, best_pred = min(best_train, t1 - t0), min(best_pred, t2 - t1)
rmse = float(np.sqrt(np.mean((pred - yte) ** 2)))
gain = booster.get_score(importance_type="total_gain")
json.dump({"predictions": [float(v) for v in pred], "gain": [gain.get("f%d" % i, 0.0) for i in range(x.shape[1])]}, open(out, "w"))
print(json.dumps({"version": xgb.__version__, "rmse": rmse, "trainSeconds": best_train, "predictSeconds": best_pred}))
`;

interface Split {
  name: string;
  what: string;
  train: Matrix;
  ytrain: Float64Array;
  test: Matrix;
  ytest: Float64Array;
}

interface Side {
  rmse: number;
  trainSeconds: number;
  predictSeconds: number;
  predictions: Float64Array;
  /** Share of the total split gain per feature, in the matrix's column order. */
  gainShare: number[];
}

function findPython(): string {
  const candidates = [opts.python, process.env.HERD_PYTHON, 'python3', '/usr/bin/python3'].filter((c): c is string => typeof c === 'string' && c !== '');
  for (const c of candidates) if (spawnSync(c, ['-c', 'import xgboost'], { stdio: 'ignore' }).status === 0) return c;
  throw new Error(`no python3 with xgboost among ${candidates.join(', ')} (apt-get install python3-xgboost, or --python PATH)`);
}

const shares = (gain: number[]) => {
  const total = gain.reduce((s, g) => s + g, 0);
  return gain.map((g) => (total > 0 ? g / total : 0));
};

/** Friedman #1, column-major. */
function friedman(rows: number): Split {
  const rng = seededRng(SEED);
  const data = new Float64Array(rows * FRIEDMAN_FEATURES);
  const y = new Float64Array(rows);
  const row = new Array<number>(FRIEDMAN_FEATURES);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < FRIEDMAN_FEATURES; c++) data[c * rows + r] = row[c] = rng.next();
    const [x1, x2, x3, x4, x5] = row as [number, number, number, number, number];
    y[r] = 10 * Math.sin(Math.PI * x1 * x2) + 20 * (x3 - 0.5) ** 2 + 10 * x4 + 5 * x5 + NOISE * rng.normal();
  }
  const x: Matrix = { data, rows, cols: FRIEDMAN_FEATURES, names: Array.from({ length: FRIEDMAN_FEATURES }, (_, i) => `x${i + 1}`) };
  const n = Math.floor(rows * 0.8);
  return { name: 'friedman', what: `Friedman #1: ${rows} rows × ${FRIEDMAN_FEATURES} features (5 informative), noise ${NOISE}, seed ${SEED}; train ${n}, test ${rows - n}`, train: sliceRows(x, 0, n), ytrain: y.slice(0, n), test: sliceRows(x, n, rows), ytest: y.slice(n) };
}

/** The lab recording, in time order: first 80 % train, last 20 % test (with the rows' keys, for the chart). */
function lab(file: string): Split & { at: string[]; herdIds: string[] } {
  if (!existsSync(file)) throw new Error(`${file}: no lab recording; make one with "npm run dataset:record" on a running lab (bin/herd lab up --hosts 3), or give --data FILE`);
  const t = readTable(file, { requireLabel: true });
  const n = Math.floor(t.rows * 0.8);
  const train = sliceTable(t, 0, n);
  const test = sliceTable(t, n, t.rows);
  const minutes = (Date.parse(t.keys.at?.at(-1) ?? '') - Date.parse(t.keys.at?.[0] ?? '')) / 60_000;
  return {
    name: 'lab',
    what: `lab recording ${file.replace(`${REPO_ROOT}/`, '')}: ${t.rows} rows × ${t.names.length} features, ${new Set(t.keys.herdId).size} containers, ${minutes.toFixed(0)} min; train the first ${n}, test the last ${t.rows - n}`,
    train: toMatrix(train),
    ytrain: train.label as Float64Array,
    test: toMatrix(test),
    ytest: test.label as Float64Array,
    at: test.keys.at ?? [],
    herdIds: test.keys.herdId ?? [],
  };
}

function runHerd(s: Split): Side {
  let trainSeconds = Infinity;
  let predictSeconds = Infinity;
  let model: GbdtModel | undefined;
  let predictions: Float64Array = new Float64Array(0);
  for (let i = 0; i < REPEAT; i++) {
    const t0 = performance.now();
    model = trainGbdt(s.train, s.ytrain, params);
    const t1 = performance.now();
    predictions = model.predict(s.test);
    const t2 = performance.now();
    trainSeconds = Math.min(trainSeconds, (t1 - t0) / 1000);
    predictSeconds = Math.min(predictSeconds, (t2 - t1) / 1000);
  }
  const gain = new Map((model as GbdtModel).importance().map((f) => [f.feature, f.gain]));
  return { rmse: scores(s.ytest, predictions).rmse, trainSeconds, predictSeconds, predictions, gainShare: shares(s.train.names.map((n) => gain.get(n) ?? 0)) };
}

function runXgboost(python: string, s: Split, dir: string): Side & { version: string } {
  const cell = (v: number) => (Number.isNaN(v) ? 'nan' : String(v));
  const lines = [['y', ...s.train.names].join(',')];
  for (const [x, y] of [[s.train, s.ytrain], [s.test, s.ytest]] as const) {
    for (let r = 0; r < x.rows; r++) {
      const row = [cell(y[r] as number)];
      for (let c = 0; c < x.cols; c++) row.push(cell(x.data[c * x.rows + r] as number));
      lines.push(row.join(','));
    }
  }
  const csv = join(dir, `${s.name}.csv`);
  const out = join(dir, `${s.name}.out.json`);
  writeFileSync(csv, `${lines.join('\n')}\n`);
  const stdout = execFileSync(python, ['-c', PYTHON_XGBOOST, csv, String(s.train.rows), JSON.stringify({ ...params, repeat: REPEAT }), out], { encoding: 'utf8', maxBuffer: 16 * 2 ** 20 });
  const r = JSON.parse(stdout.trim().split('\n').pop() as string) as { version: string; rmse: number; trainSeconds: number; predictSeconds: number };
  const extra = JSON.parse(readFileSync(out, 'utf8')) as { predictions: number[]; gain: number[] };
  return { ...r, predictions: Float64Array.from(extra.predictions), gainShare: shares(extra.gain) };
}

function report(s: Split, herd: Side, xgb: Side & { version: string }): void {
  const nTest = s.test.rows;
  const fmt = (v: number, d = 3) => v.toFixed(d);
  const line = (name: string, r: Side) =>
    console.log(`  ${name.padEnd(16)} RMSE ${fmt(r.rmse, 4)}  training ${fmt(r.trainSeconds, 2)} s  prediction ${fmt(r.predictSeconds * 1000, 1)} ms (${Math.round(nTest / r.predictSeconds).toLocaleString('en-US')} rows/s)`);
  line('Herd', herd);
  line(`XGBoost ${xgb.version}`, xgb);
  const rmseRatio = herd.rmse / xgb.rmse;
  const trainRatio = herd.trainSeconds / xgb.trainSeconds;
  const throughputRatio = xgb.predictSeconds / herd.predictSeconds;
  const verdict = (ok: boolean) => (ok ? 'MET' : 'MISSED');
  targets.push(`target ${s.name} RMSE ratio vs XGBoost: ${fmt(rmseRatio)} vs <= 1.02: ${verdict(rmseRatio <= 1.02)}`);
  targets.push(`target ${s.name} training time ratio: ${fmt(trainRatio)} vs <= 2: ${verdict(trainRatio <= 2)}`);
  targets.push(`target ${s.name} prediction throughput ratio: ${fmt(throughputRatio)} vs >= 1: ${verdict(throughputRatio >= 1)}`);
}

/**
 * One test container's predicted vs actual ops/s over time: among the containers with many
 * test rows, the one with the median relative error of Herd's forecast (a typical one, not
 * the best or the worst).
 */
async function forecastChart(file: string, s: ReturnType<typeof lab>, herd: Side, xgb: Side): Promise<string> {
  const rowsOf = new Map<string, number[]>();
  s.herdIds.forEach((id, i) => {
    const rows = rowsOf.get(id);
    if (rows === undefined) rowsOf.set(id, [i]);
    else rows.push(i);
  });
  const most = Math.max(...[...rowsOf.values()].map((r) => r.length));
  const relativeError = (rows: number[]) => {
    const actual = rows.reduce((a, i) => a + Math.abs(s.ytest[i] as number), 0);
    return rows.reduce((a, i) => a + Math.abs((herd.predictions[i] as number) - (s.ytest[i] as number)), 0) / Math.max(1e-9, actual);
  };
  const candidates = [...rowsOf.entries()].filter(([, r]) => r.length >= most / 2).sort((a, b) => relativeError(a[1]) - relativeError(b[1]));
  const [id, rows] = candidates[Math.floor(candidates.length / 2)] as [string, number[]];
  const values = rows.flatMap((i) => [
    { at: s.at[i], series: 'actual (sysbench)', ops: s.ytest[i] },
    { at: s.at[i], series: 'Herd forecast', ops: herd.predictions[i] },
    { at: s.at[i], series: 'XGBoost forecast', ops: xgb.predictions[i] },
  ]);
  await writePngChart(file, {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `Forecast vs actual: container ${id} (lab recording, test period)`, subtitle: [`the container with the median error of ${candidates.length}: ${rows.length} one-second rows, Herd's mean absolute error ${(relativeError(rows) * 100).toFixed(0)} % of actual`, `RMSE over all ${s.test.rows} test rows: Herd ${herd.rmse.toFixed(1)}, XGBoost ${xgb.rmse.toFixed(1)}`] },
    width: 900,
    height: 320,
    data: { values },
    mark: { type: 'line', strokeWidth: 1.2 },
    encoding: {
      x: { field: 'at', type: 'temporal', title: 'time (UTC)', scale: { type: 'utc' }, axis: { format: '%H:%M:%S' } },
      y: { field: 'ops', type: 'quantitative', title: 'operations per second' },
      color: { field: 'series', type: 'nominal', title: null, scale: { domain: ['actual (sysbench)', 'Herd forecast', 'XGBoost forecast'], range: ['#222222', '#e45756', '#4c78a8'] }, legend: { orient: 'top' } },
    },
  });
  return id;
}

async function importanceChart(file: string, s: Split, herd: Side, xgb: Side): Promise<void> {
  const values = s.train.names.flatMap((feature, i) => [
    { feature, learner: 'Herd', share: herd.gainShare[i] },
    { feature, learner: 'XGBoost', share: xgb.gainShare[i] },
  ]);
  const order = s.train.names.map((n, i) => ({ n, v: herd.gainShare[i] as number })).sort((a, b) => b.v - a.v).map((x) => x.n);
  await writePngChart(file, {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'Feature importance (share of total split gain), lab recording', subtitle: 'the same data, hyperparameters and rows for both learners' },
    width: 600,
    data: { values },
    mark: 'bar',
    encoding: {
      y: { field: 'feature', type: 'nominal', sort: order, title: null },
      yOffset: { field: 'learner', type: 'nominal' },
      x: { field: 'share', type: 'quantitative', title: 'share of total gain', axis: { format: '%' } },
      color: { field: 'learner', type: 'nominal', title: null, scale: { domain: ['Herd', 'XGBoost'], range: ['#e45756', '#4c78a8'] } },
    },
  });
}

const targets: string[] = [];
const python = findPython();
const dir = mkdtempSync(join(tmpdir(), 'herd-forecast-bench-'));
const bench = benchProgress('bench:forecast');
try {
  console.log(`parameters: ${params.nEstimators} trees, depth ${params.maxDepth}, eta ${params.eta}, lambda ${params.lambda}, max_bin ${params.maxBin}, one thread; best of ${REPEAT}`);
  const labSplit = lab(resolve(opts.data as string));
  const friedmanSplit = friedman(Number(opts.rows));
  const results: [Split, Side, Side & { version: string }][] = [];
  for (const s of [labSplit, friedmanSplit]) {
    console.log(`\n(${s === labSplit ? 'a' : 'b'}) ${s.what}`);
    bench.phase(`${s.name}: Herd's learner, ${REPEAT} run(s)`);
    const herd = runHerd(s);
    bench.phase(`${s.name}: XGBoost ${REPEAT} run(s)`);
    const xgb = runXgboost(python, s, dir);
    report(s, herd, xgb);
    results.push([s, herd, xgb]);
  }
  const charts = resolve(opts.charts as string);
  mkdirSync(charts, { recursive: true });
  const [, labHerd, labXgb] = results[0] as [Split, Side, Side];
  const id = await forecastChart(join(charts, 'forecast-lab.png'), labSplit, labHerd, labXgb);
  await importanceChart(join(charts, 'importance-lab.png'), labSplit, labHerd, labXgb);
  const ranked = labSplit.train.names.map((n, i) => ({ n, v: labHerd.gainShare[i] as number })).sort((a, b) => b.v - a.v);
  console.log(`\ncharts: ${join(charts, 'forecast-lab.png')} (container ${id}), ${join(charts, 'importance-lab.png')}`);
  console.log(`lab importance (Herd): ${ranked.slice(0, 5).map((r) => `${r.n} ${(r.v * 100).toFixed(1)}%`).join(', ')}`);
  console.log('');
  for (const t of targets) console.log(t);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
