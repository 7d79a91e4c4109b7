/**
 * `forecast-greedy`: moves containers where a trained model (`herd forecast train`)
 * predicts they do more operations per second. Candidates are only the (container, host)
 * pairs that matter: containers on overloaded hosts (CPU used ≥ `overloadUtil` × cores)
 * × other hosts that accept containers and have CPU room and free memory for them (a host
 * of unknown core count is neither), at most `maxTargets` per container: those with the
 * most CPU room, so that an evaluation's cost does not grow with the number of hosts. For each, the model predicts the container's ops/s
 * where it is (its host's window as measured) and on the target "as if moved" (the
 * target's CPU, disk ops and memory with the container's added);
 * a pair qualifies when predicted(target) / predicted(current) ≥ `rewardThreshold`. The
 * best ratios go first, each container at most once, while the target still has room and
 * the source is still overloaded (after the moves planned before), at most `maxMoves`.
 *
 * Only a model of ops/s is taken: its `label` must be the training table's label column
 * (OPS_LABEL), as `herd forecast train` records it without `--label`; a model of another
 * metric (or one that does not say, such as a file from before the field existed) would
 * make the ratios below meaningless.
 *
 * A pair whose rows (where the container is, or on the target as if moved) hold a feature
 * outside the range the model was trained on (its `featureRanges`) is skipped with
 * `OUT_OF_RANGE` (`outOfRange: allow` keeps it, the move's reason saying so): beyond its
 * training range a tree answers as at the edge, so a bigger host or a heavier container
 * would be predicted as the biggest one seen. Models without ranges (XGBoost's) are not
 * checked.
 *
 * Pure: `args.model` is the model's JSON (Herd's or XGBoost's), loaded while the
 * arguments are parsed (once per JSON object); a path must be read into JSON before
 * (`resolveForecastModels` in control/config.ts).
 */
import { z } from 'zod';
import { loadModel, type GbdtModel } from '../forecast/gbdt/index.ts';
import { acceptsContainers, arrivingCpu, byKeyThenId, coresKnown, fmt, hostCpuUsed, memoryProblem, type Annotation, type ClusterSnapshot, type ContainerSnapshot, type CpuKnownHost, type Move, type Plan, type PolicyDefinition } from '../model.ts';
import { ineligibility, windowProblem } from '../cpu-greedy/greedy.ts';
import { featureValues, OPS_LABEL, SNAPSHOT_FEATURES, type SnapshotFeature } from './features.ts';

const NAME = 'forecast-greedy';
export const MISSING_MODEL = 'forecast-greedy needs a trained model: herd forecast train --data TABLE.csv --model MODEL.json (or --since/--to on recorded metrics), then give args.model (the model file, read when the config is loaded)';

const loaded = new WeakMap<object, GbdtModel>();

/** Which of `names` a cluster snapshot does not provide, as a sentence; undefined when it provides them all. */
export function unknownFeatures(names: readonly string[]): string | undefined {
  const unknown = names.filter((n) => !(SNAPSHOT_FEATURES as readonly string[]).includes(n));
  return unknown.length === 0 ? undefined : `feature(s) a cluster snapshot does not provide: ${unknown.join(', ')} (provided: ${SNAPSHOT_FEATURES.join(', ')})`;
}

/** The model of a JSON value, with its features checked against what a snapshot provides (memoised per object). */
export function modelOf(json: unknown): GbdtModel {
  if (json === null || typeof json !== 'object') throw new Error('not a model JSON object');
  const known = loaded.get(json);
  if (known !== undefined) return known;
  const model = loadModel(json);
  if (model.featureNames.length === 0) throw new Error(`the model has no feature names (an XGBoost model saved without them): it needs columns named like the training table's (${SNAPSHOT_FEATURES.join(', ')})`);
  const unknown = unknownFeatures(model.featureNames);
  if (unknown !== undefined) throw new Error(`the model uses ${unknown}`);
  if (model.label === undefined) {
    throw new Error(
      `the model does not say what it predicts (no "label": made by an older Herd, or an XGBoost model without the herd_label attribute); forecast-greedy needs a model of ops/s: train one with herd forecast train (without --label), or for XGBoost set bst.set_attr(herd_label="${OPS_LABEL}") before save_model`,
    );
  }
  if (model.label !== OPS_LABEL) throw new Error(`the model predicts "${model.label}", not ops/s (the training table's "${OPS_LABEL}" column): forecast-greedy compares predicted ops/s; train the model without --label`);
  loaded.set(json, model);
  return model;
}

const modelArg = z.unknown().transform((json, ctx) => {
  if (json === undefined || json === null) {
    ctx.addIssue({ code: 'custom', message: MISSING_MODEL });
    return z.NEVER;
  }
  if (typeof json === 'string') {
    ctx.addIssue({ code: 'custom', message: `"${json}" is a path: the control loop's config loader must read it into the model's JSON before the policy runs (resolveForecastModels); offline, give the JSON itself` });
    return z.NEVER;
  }
  try {
    return { json, model: modelOf(json) };
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `not a usable model: ${err instanceof Error ? err.message : String(err)}` });
    return z.NEVER;
  }
});

export const forecastGreedyArgsSchema = z.strictObject({
  /** The trained model's JSON (required). */
  model: modelArg,
  /** Minimum predicted(target) / predicted(current) for a move. */
  rewardThreshold: z.number().min(1).default(1.1),
  /** A host is overloaded from this share of its cores used. */
  overloadUtil: z.number().positive().max(1).default(0.9),
  /** Share of the target's cores its CPU use may reach with the container added. */
  targetMaxUtil: z.number().positive().max(1).default(1),
  maxMoves: z.number().int().min(1).default(2),
  minSamples: z.number().int().min(0).default(3),
  maxMissingRatio: z.number().min(0).max(1).default(0.02),
  /** A pair with a feature outside the model's training range: skipped (default) or kept, the move's reason saying so; annotated OUT_OF_RANGE either way. */
  outOfRange: z.enum(['skip', 'allow']).default('skip'),
  /**
   * Targets predicted per candidate container: the ones with the most CPU room (then by
   * host id) that take it. Bounds an evaluation's predictions to candidates × (1 + maxTargets)
   * however many hosts there are.
   */
  maxTargets: z.number().int().min(1).default(8),
});
export type ForecastGreedyArgs = z.infer<typeof forecastGreedyArgsSchema>;

interface Pair {
  c: ContainerSnapshot;
  from: CpuKnownHost;
  to: CpuKnownHost;
  current: number;
  predicted: number;
  ratio: number;
  /** Features outside the training range, where it is and on the target; empty when none. */
  unseenHere: readonly Unseen[];
  unseenThere: readonly Unseen[];
  /** Ties between equal ratios: container, then target (computed once, not in every comparison). */
  tie: string;
}

const RANGE_SLACK = 1e-9;
const figure = (x: number) => (Math.abs(x) >= 1e5 ? x.toPrecision(3) : String(Math.round(x * 1000) / 1000));

/** A feature of a row outside the model's training range: its column and value. */
interface Unseen {
  k: number;
  x: number;
}
const NONE_UNSEEN: readonly Unseen[] = [];

/**
 * The features of a row outside the model's training range. A missing value (NaN) is not
 * out of range (the trees learned a direction for it), nor is a feature every training row
 * lacked (no tree splits on it). Described (describeUnseen) only when a message needs it.
 */
function unseenFeatures(model: GbdtModel, row: Record<SnapshotFeature, number>): readonly Unseen[] {
  const ranges = model.featureRanges;
  if (ranges === undefined) return NONE_UNSEEN;
  let out: Unseen[] | undefined;
  model.featureNames.forEach((name, k) => {
    const r = ranges[k];
    const x = row[name as SnapshotFeature];
    if (r === null || r === undefined || Number.isNaN(x)) return;
    const slack = RANGE_SLACK * Math.max(1, Math.abs(r[0]), Math.abs(r[1]));
    if (x < r[0] - slack || x > r[1] + slack) (out ??= []).push({ k, x });
  });
  return out ?? NONE_UNSEEN;
}

/** "name value (trained lo..hi)". */
function describeUnseen(model: GbdtModel, u: Unseen): string {
  const r = model.featureRanges?.[u.k] as [number, number];
  return `${model.featureNames[u.k]} ${figure(u.x)} (trained ${figure(r[0])}..${figure(r[1])})`;
}

/** A pair's features outside the training range, where the container is and on the target, as sentences. */
function unseenText(model: GbdtModel, p: Pair): string[] {
  return [...p.unseenHere.map((u) => `on ${p.from.hostId} (where it is) ${describeUnseen(model, u)}`), ...p.unseenThere.map((u) => `on ${p.to.hostId} ${describeUnseen(model, u)}`)];
}

/**
 * The model's input matrix (column-major, in its column order), filled row by row as the
 * rows are made: a row object lives only while it is copied (tens of thousands of rows at
 * scale would otherwise all survive to the prediction, and their numbers with them).
 */
class RowMatrix {
  private readonly data: Float64Array;
  private next = 0;
  constructor(private readonly model: GbdtModel, private readonly rows: number) {
    this.data = new Float64Array(rows * model.featureNames.length);
  }

  /** Adds a row; returns its features outside the model's training range. */
  add(values: Record<SnapshotFeature, number>): readonly Unseen[] {
    const names = this.model.featureNames;
    for (let k = 0; k < names.length; k++) this.data[k * this.rows + this.next] = values[names[k] as SnapshotFeature];
    this.next++;
    return unseenFeatures(this.model, values);
  }

  predict(): Float64Array {
    const names = this.model.featureNames;
    return this.model.predict({ data: this.data, rows: this.rows, cols: names.length, names: [...names] });
  }
}

const pct = (ratio: number) => `${ratio >= 1 ? '+' : ''}${fmt((ratio - 1) * 100, 0)}%`;

export function planForecastGreedy(snapshot: ClusterSnapshot, args: ForecastGreedyArgs): Plan {
  const annotations: Annotation[] = [];
  const plan = (moves: Move[]): Plan => ({ snapshotVersion: snapshot.version, policy: NAME, moves, annotations });
  const model = args.model.model;
  const used = new Map(snapshot.hosts.map((h) => [h.hostId, hostCpuUsed(h, snapshot.containers) + arrivingCpu(snapshot, h.hostId)]));
  // A host whose core count is unknown is neither a source nor a target.
  const online = snapshot.hosts.filter((h) => h.online).filter(coresKnown);
  if (online.length < 2) {
    annotations.push({ level: 'info', code: 'TOO_FEW_HOSTS', policy: NAME, message: `${online.length} online host(s) with a known core count: nothing to move between` });
    return plan([]);
  }
  const overloaded = online.filter((h) => (used.get(h.hostId) ?? 0) >= args.overloadUtil * h.cores - 1e-9).sort(byKeyThenId((h) => (used.get(h.hostId) ?? 0) / h.cores, (h) => h.hostId, true));
  if (overloaded.length === 0) {
    annotations.push({ level: 'info', code: 'BALANCED', policy: NAME, message: `no host uses ${fmt(args.overloadUtil * 100, 0)} % of its cores or more (${online.map((h) => `${h.hostId} ${fmt((used.get(h.hostId) ?? 0) / h.cores * 100, 0)} %`).join(', ')})` });
    return plan([]);
  }
  const room = (h: CpuKnownHost, extra: number) => h.cores * args.targetMaxUtil - (used.get(h.hostId) ?? 0) - extra;
  // Most room first: each candidate takes the first maxTargets of these that can hold it.
  const targets = online.filter((h) => acceptsContainers(h) && windowProblem(h, args) === undefined).sort(byKeyThenId((h) => room(h, 0), (h) => h.hostId, true));
  // Memory the moves planned so far take on each target.
  const memoryFree = (h: CpuKnownHost, taken: number) => (h.memoryAvailableBytes === undefined ? undefined : h.memoryAvailableBytes - taken);

  const skipped: string[] = [];
  const noMemory: string[] = [];
  const candidates: { c: ContainerSnapshot; from: CpuKnownHost; to: CpuKnownHost[] }[] = [];
  const onHost = new Map<string, ContainerSnapshot[]>();
  for (const c of snapshot.containers) {
    const list = onHost.get(c.hostId);
    if (list === undefined) onHost.set(c.hostId, [c]);
    else list.push(c);
  }
  for (const from of overloaded) {
    for (const c of (onHost.get(from.hostId) ?? []).sort(byKeyThenId((x) => x.cpuCores ?? 0, (x) => x.herdId, true))) {
      const why = ineligibility(c, args, snapshot.nowMs);
      if (why !== undefined) {
        skipped.push(`${c.name}: ${why.message}`);
        continue;
      }
      const to: CpuKnownHost[] = [];
      for (const t of targets) {
        // Sorted by room: no target further on has room for it.
        if ((c.cpuCores ?? 0) > room(t, 0) + 1e-9 || to.length >= args.maxTargets) break;
        if (t.hostId === from.hostId) continue;
        const why = memoryProblem(c, t.hostId, memoryFree(t, 0));
        if (why !== undefined) noMemory.push(why);
        else to.push(t);
      }
      if (to.length > 0) candidates.push({ c, from, to });
    }
  }
  if (skipped.length > 0) annotations.push({ level: 'skip', code: 'CANDIDATE_REJECTED', policy: NAME, message: `${skipped.slice(0, 5).join('; ')}${skipped.length > 5 ? '; …' : ''}` });
  if (noMemory.length > 0) annotations.push({ level: 'skip', code: 'NOT_ENOUGH_MEMORY', policy: NAME, message: `target(s) ruled out: ${noMemory.slice(0, 5).join('; ')}${noMemory.length > 5 ? '; …' : ''}` });
  const overloadText = overloaded.map((h) => `${h.hostId} uses ${fmt(used.get(h.hostId) ?? 0)} of ${h.cores} core(s)`).join(', ');
  if (candidates.length === 0) {
    annotations.push({ level: 'skip', code: 'NO_TARGET_CAPACITY', policy: NAME, message: `${overloadText}; no other host accepts and has CPU room and free memory for any of their movable containers` });
    return plan([]);
  }

  // One prediction for every row: each candidate where it is, then on each of its targets.
  const hostsById = new Map(snapshot.hosts.map((h) => [h.hostId, h]));
  const hostOf = (id: string) => hostsById.get(id);
  const matrix = new RowMatrix(model, candidates.reduce((n, x) => n + 1 + x.to.length, 0));
  const unseenRows: { here: readonly Unseen[]; there: (readonly Unseen[])[] }[] = [];
  for (const { c, from, to } of candidates) {
    const here = matrix.add(featureValues(snapshot, c, from, false, hostOf));
    unseenRows.push({ here, there: to.map((t) => matrix.add(featureValues(snapshot, c, t, true, hostOf))) });
  }
  const predicted = matrix.predict();
  const pairs: Pair[] = [];
  let i = 0;
  candidates.forEach(({ c, from, to }, j) => {
    const { here, there } = unseenRows[j] as (typeof unseenRows)[number];
    const current = predicted[i++] as number;
    to.forEach((t, k) => {
      const p = predicted[i++] as number;
      pairs.push({ c, from, to: t, current, predicted: p, ratio: current > 0 ? p / current : Number.NaN, unseenHere: here, unseenThere: there[k] ?? NONE_UNSEEN, tie: `${c.herdId}>${t.hostId}` });
    });
  });
  const isUnseen = (p: Pair) => p.unseenHere.length + p.unseenThere.length > 0;
  const unseen = pairs.filter(isUnseen);
  if (unseen.length > 0) {
    const what = unseen.slice(0, 5).map((p) => `${p.c.name} → ${p.to.hostId}: ${unseenText(model, p).join(', ')}`);
    annotations.push({
      level: args.outOfRange === 'skip' ? 'skip' : 'info',
      code: 'OUT_OF_RANGE',
      policy: NAME,
      message: `${unseen.length} pair(s) with a feature outside the model's training range ${args.outOfRange === 'skip' ? 'skipped' : 'kept (outOfRange: allow)'}: ${what.join('; ')}${unseen.length > 5 ? '; …' : ''}`,
    });
  }
  const usable = args.outOfRange === 'skip' ? pairs.filter((p) => !isUnseen(p)) : pairs;
  if (usable.length === 0) return plan([]); // OUT_OF_RANGE says why
  const qualifying = usable.filter((p) => p.ratio >= args.rewardThreshold).sort(byKeyThenId((p) => p.ratio, (p) => p.tie, true));
  if (qualifying.length === 0) {
    const best = usable.filter((p) => !Number.isNaN(p.ratio)).sort(byKeyThenId((p) => p.ratio, (p) => p.tie, true))[0];
    annotations.push({
      level: 'info',
      code: 'BELOW_REWARD',
      policy: NAME,
      message: best === undefined ? `${overloadText}; the model predicts no positive ops/s for the candidates where they are: no gain to compare` : `${overloadText}; the best predicted gain is ${best.c.name} on ${best.to.hostId}: ${fmt(best.predicted, 0)} ops/s vs ${fmt(best.current, 0)} on ${best.from.hostId} (${pct(best.ratio)}), below ×${args.rewardThreshold}`,
    });
    return plan([]);
  }
  const moves: Move[] = [];
  const moved = new Set<string>();
  const added = new Map<string, number>();
  const addedMemory = new Map<string, number>();
  for (const p of qualifying) {
    if (moves.length >= args.maxMoves) break;
    if (moved.has(p.c.herdId)) continue;
    const cores = p.c.cpuCores ?? 0;
    if (cores > room(p.to, added.get(p.to.hostId) ?? 0) + 1e-9) continue;
    if (memoryProblem(p.c, p.to.hostId, memoryFree(p.to, addedMemory.get(p.to.hostId) ?? 0)) !== undefined) continue;
    if ((used.get(p.from.hostId) ?? 0) + (added.get(p.from.hostId) ?? 0) < args.overloadUtil * p.from.cores - 1e-9) continue; // no longer overloaded
    moved.add(p.c.herdId);
    added.set(p.to.hostId, (added.get(p.to.hostId) ?? 0) + cores);
    added.set(p.from.hostId, (added.get(p.from.hostId) ?? 0) - cores);
    addedMemory.set(p.to.hostId, (addedMemory.get(p.to.hostId) ?? 0) + (p.c.memoryBytes ?? 0));
    moves.push({
      herdId: p.c.herdId,
      name: p.c.name,
      from: p.from.hostId,
      to: p.to.hostId,
      policy: NAME,
      reasonCode: 'PREDICTED_GAIN',
      reason: `predicted ${fmt(p.predicted, 0)} ops/s on ${p.to.hostId} vs ${fmt(p.current, 0)} on ${p.from.hostId} (${pct(p.ratio)}); ${p.from.hostId} uses ${fmt(used.get(p.from.hostId) ?? 0)} of ${p.from.cores} core(s)${isUnseen(p) ? `; outside the training range: ${unseenText(model, p).join(', ')}` : ''}`,
      expectedGain: p.predicted - p.current,
    });
  }
  if (moves.length === 0) annotations.push({ level: 'skip', code: 'NO_TARGET_CAPACITY', policy: NAME, message: `${overloadText}; ${qualifying.length} pair(s) above ×${args.rewardThreshold} but their targets filled up or their sources stopped being overloaded` });
  return plan(moves);
}

export const forecastGreedy: PolicyDefinition<ForecastGreedyArgs> = {
  name: NAME,
  description: 'moves containers off overloaded hosts to where a trained model (herd forecast train) predicts the most ops/s, when the predicted gain reaches rewardThreshold',
  argsSchema: forecastGreedyArgsSchema as unknown as z.ZodType<ForecastGreedyArgs>,
  plan: planForecastGreedy,
};
