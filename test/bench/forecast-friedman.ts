/**
 * `npx tsx test/bench/forecast-friedman.ts [--rows 100000] [--trees 200] [--depth 6] [--eta 0.1] [--repeat 3]`
 *
 * Prints figures (not a test): Herd's gradient-boosted trees (policies/forecast/gbdt) against
 * XGBoost's `hist` method on Friedman #1 — 100,000 rows × 20 features (5 informative),
 * y = 10 sin(π x1 x2) + 20 (x3 − 0.5)² + 10 x4 + 5 x5 + N(0, 1), x uniform on [0, 1], seed
 * 20261126 — first 80 % for training, last 20 % for testing. The data is generated HERE, in
 * TypeScript (Herd's seeded PRNG), and written as CSV (shortest round-trip decimals, so
 * numpy reads the very same doubles) for XGBoost, which runs in a python3 subprocess in the
 * same run with the same hyperparameters and one thread. Training time includes binning
 * (Herd) and DMatrix construction (XGBoost); prediction uses `inplace_predict` on the
 * numpy array; XGBoost gets base_score = mean(y) like Herd. With `--repeat N` each side runs
 * N times and the fastest time counts.
 * See issue "Forecasting", "Benchmark". Needs python3-xgboost (Debian, 1.7).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { seededRng, sliceRows, trainGbdt, type GbdtParams, type Matrix } from '../../policies/forecast/gbdt/index.ts';

const SEED = 20261126;
const FEATURES = 20;
const NOISE = 1.0;

const { values: opts } = parseArgs({
  options: {
    rows: { type: 'string', default: '100000' },
    trees: { type: 'string', default: '200' },
    depth: { type: 'string', default: '6' },
    eta: { type: 'string', default: '0.1' },
    repeat: { type: 'string', default: '3' },
    python: { type: 'string' },
  },
});
const ROWS = Number(opts.rows);
const REPEAT = Math.max(1, Number(opts.repeat));
const params: GbdtParams = { nEstimators: Number(opts.trees), maxDepth: Number(opts.depth), eta: Number(opts.eta), lambda: 1, gamma: 0, minChildWeight: 1, subsample: 1, colsampleByTree: 1, maxBin: 256, seed: 0 };

const PYTHON_XGBOOST = String.raw`
import json, sys, time
import numpy as np, xgboost as xgb
path, n_train, p = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
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
print(json.dumps({"version": xgb.__version__, "rmse": rmse, "trainSeconds": best_train, "predictSeconds": best_pred}))
`;

/** Friedman #1, column-major, and the CSV (y first) for Python. */
function friedman(rows: number): { x: Matrix; y: Float64Array; csv: string } {
  const rng = seededRng(SEED);
  const data = new Float64Array(rows * FEATURES);
  const y = new Float64Array(rows);
  const lines: string[] = [['y', ...Array.from({ length: FEATURES }, (_, i) => `x${i + 1}`)].join(',')];
  const row = new Array<number>(FEATURES + 1);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < FEATURES; c++) data[c * rows + r] = row[c + 1] = rng.next();
    const [x1, x2, x3, x4, x5] = [1, 2, 3, 4, 5].map((i) => row[i] as number) as [number, number, number, number, number];
    y[r] = row[0] = 10 * Math.sin(Math.PI * x1 * x2) + 20 * (x3 - 0.5) ** 2 + 10 * x4 + 5 * x5 + NOISE * rng.normal();
    lines.push(row.join(','));
  }
  return { x: { data, rows, cols: FEATURES, names: Array.from({ length: FEATURES }, (_, i) => `x${i + 1}`) }, y, csv: `${lines.join('\n')}\n` };
}

function findPython(): string {
  const candidates = [opts.python, process.env.HERD_PYTHON, 'python3', '/usr/bin/python3'].filter((c): c is string => typeof c === 'string' && c !== '');
  for (const c of candidates) if (spawnSync(c, ['-c', 'import xgboost'], { stdio: 'ignore' }).status === 0) return c;
  throw new Error(`no python3 with xgboost among ${candidates.join(', ')} (apt-get install python3-xgboost, or --python PATH)`);
}

const rmse = (a: Float64Array, b: Float64Array) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += ((a[i] as number) - (b[i] as number)) ** 2;
  return Math.sqrt(s / a.length);
};

const python = findPython();
const nTrain = Math.floor(ROWS * 0.8);
const { x, y, csv } = friedman(ROWS);
const dir = mkdtempSync(join(tmpdir(), 'herd-friedman-'));
try {
  const csvPath = join(dir, 'friedman1.csv');
  writeFileSync(csvPath, csv);
  const xtr = sliceRows(x, 0, nTrain);
  const xte = sliceRows(x, nTrain, ROWS);
  const ytr = y.slice(0, nTrain);
  const yte = y.slice(nTrain);
  console.log(`Friedman #1: ${ROWS} rows × ${FEATURES} features (5 informative), noise ${NOISE}, seed ${SEED}; train ${nTrain}, test ${ROWS - nTrain}`);
  console.log(`parameters: ${params.nEstimators} trees, depth ${params.maxDepth}, eta ${params.eta}, lambda ${params.lambda}, max_bin ${params.maxBin}, one thread; best of ${REPEAT}`);

  let herdTrain = Infinity;
  let herdPredict = Infinity;
  let herdPred: Float64Array = new Float64Array(0);
  for (let i = 0; i < REPEAT; i++) {
    const t0 = performance.now();
    const model = trainGbdt(xtr, ytr, params);
    const t1 = performance.now();
    herdPred = model.predict(xte);
    const t2 = performance.now();
    herdTrain = Math.min(herdTrain, (t1 - t0) / 1000);
    herdPredict = Math.min(herdPredict, (t2 - t1) / 1000);
  }
  const herdRmse = rmse(herdPred, yte);

  const out = execFileSync(python, ['-c', PYTHON_XGBOOST, csvPath, String(nTrain), JSON.stringify({ ...params, repeat: REPEAT })], { encoding: 'utf8', maxBuffer: 16 * 2 ** 20 });
  const xgb = JSON.parse(out.trim().split('\n').pop() as string) as { version: string; rmse: number; trainSeconds: number; predictSeconds: number };

  const nTest = ROWS - nTrain;
  const fmt = (v: number, d = 3) => v.toFixed(d);
  const line = (name: string, r: number, tr: number, pr: number) =>
    console.log(`${name.padEnd(16)} RMSE ${fmt(r, 4)}  training ${fmt(tr, 2)} s  prediction ${fmt(pr * 1000, 1)} ms (${Math.round(nTest / pr).toLocaleString('en-US')} rows/s)`);
  line('Herd', herdRmse, herdTrain, herdPredict);
  line(`XGBoost ${xgb.version}`, xgb.rmse, xgb.trainSeconds, xgb.predictSeconds);
  const rmseRatio = herdRmse / xgb.rmse;
  const trainRatio = herdTrain / xgb.trainSeconds;
  const throughputRatio = nTest / herdPredict / (nTest / xgb.predictSeconds);
  const verdict = (ok: boolean) => (ok ? 'MET' : 'MISSED');
  console.log(`target RMSE ratio vs XGBoost: ${fmt(rmseRatio)} vs <= 1.02: ${verdict(rmseRatio <= 1.02)}`);
  console.log(`target training time ratio: ${fmt(trainRatio)} vs <= 2: ${verdict(trainRatio <= 2)}`);
  console.log(`target prediction throughput ratio: ${fmt(throughputRatio)} vs >= 1: ${verdict(throughputRatio >= 1)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
