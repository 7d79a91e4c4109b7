import { describe, expect, it } from 'vitest';
import { container, host, snapshot } from '../testing/builders.ts';
import { checkPolicyArgs, runPolicy } from '../registry.ts';
import { featureValues, SNAPSHOT_FEATURES } from './features.ts';
import { forecastGreedyArgsSchema, MISSING_MODEL, planForecastGreedy } from './policy.ts';
import { TINY_MODEL } from './tiny-model.ts';

const args = (o: Record<string, unknown> = {}) => forecastGreedyArgsSchema.parse({ model: TINY_MODEL, ...o });

describe('forecast-greedy arguments', () => {
  it('refuses a config without a model, saying how to make one', () => {
    const { errors } = checkPolicyArgs({ policy: 'forecast-greedy', args: {} });
    expect(errors).toEqual([`forecast-greedy.args.model: ${MISSING_MODEL}`]);
    expect(MISSING_MODEL).toMatch(/^forecast-greedy needs a trained model: herd forecast train /);
  });

  it.each([
    ['a path not read', 'model.json', /"model\.json" is a path/],
    ['not a model', { trees: [] }, /not a usable model: /],
    ['a feature a snapshot lacks', { ...TINY_MODEL, featureNames: [...TINY_MODEL.featureNames.slice(0, -1), 'ctr_gpu'] }, /not a usable model: .*does not provide: ctr_gpu/],
    ['a model of another label (--label)', { ...TINY_MODEL, label: 'ctr_threads' }, /not a usable model: the model predicts "ctr_threads", not ops\/s \(the training table's "label" column\)/],
    ['a model that does not say what it predicts', (({ label: _, ...m }) => m)(TINY_MODEL), /not a usable model: the model does not say what it predicts \(no "label": .*herd forecast train \(without --label\), or for XGBoost set bst\.set_attr\(herd_label="label"\)/],
  ])('refuses %s', (_what, model, message) => {
    const { errors } = checkPolicyArgs({ policy: 'forecast-greedy', args: { model } });
    expect(errors.join('; ')).toMatch(message);
  });

  it('has defaults for the rest', () => {
    const a = args();
    expect(a.rewardThreshold).toBe(1.1);
    expect(a.model.model.featureNames.length).toBe(14);
    expect(checkPolicyArgs({ policy: 'forecast-greedy', args: { model: TINY_MODEL, rewardThreshold: 0.5 } }).errors[0]).toMatch(/rewardThreshold/);
  });
});

describe('forecast-greedy plans (model: 800 ops/s below 70 % host CPU, 400 above)', () => {
  it('moves a container off an overloaded host to where the model predicts more, saying the predicted gain', () => {
    const s = snapshot([host('h1', { cpuUtil: 1 }), host('h2', { cores: 2, cpuUtil: 0.1 })], [container('db', 'h1', { cpuCores: 0.6 }), container('web', 'h1', { cpuCores: 0.4 })]);
    const plan = planForecastGreedy(s, args({ maxMoves: 1 }));
    expect(plan.moves).toHaveLength(1);
    const m = plan.moves[0];
    // db first (candidates in descending CPU, equal ratios broken by id: id-db < id-web).
    expect(m).toMatchObject({ name: 'db', from: 'h1', to: 'h2', reasonCode: 'PREDICTED_GAIN', expectedGain: 400 });
    expect(m?.reason).toMatch(/^predicted 800 ops\/s on h2 vs 400 on h1 \(\+100%\)/);
  });

  it('moves each container once, never over the target\'s capacity, stops when the source is no longer overloaded', () => {
    const s = snapshot([host('h1', { cores: 2, cpuUtil: 1 }), host('h2', { cores: 2, cpuUtil: 0.1 }), host('h3', { cores: 2, cpuUtil: 0.1 })], [container('a', 'h1', { cpuCores: 0.7 }), container('b', 'h1', { cpuCores: 0.7 }), container('c', 'h1', { cpuCores: 0.6 })]);
    const plan = planForecastGreedy(s, args({ maxMoves: 3 }));
    expect(plan.moves.map((m) => `${m.name}>${m.to}`)).toEqual(['a>h2']);
    // After a leaves, h1 uses 1.3 of 2 cores (65 %): no longer overloaded at 90 %.
  });

  it('predicts each candidate on at most maxTargets targets, those with the most CPU room', () => {
    // h2 is busy (above 70 % once the container lands: 400 ops/s), h3 and h4 are idle (800); with maxTargets 1 only the roomiest is tried.
    const hosts = [host('h1', { cores: 1, cpuUtil: 1 }), host('h2', { cores: 8, cpuUtil: 0.69 }), host('h3', { cores: 2, cpuUtil: 0.1 }), host('h4', { cores: 2, cpuUtil: 0.2 })];
    const s = snapshot(hosts, [container('a', 'h1', { cpuCores: 0.5 })]);
    // Room: h2 8 x 0.31 = 2.48 cores, h3 1.8, h4 1.6.
    expect(planForecastGreedy(s, args({ maxTargets: 1 })).annotations).toEqual([expect.objectContaining({ code: 'BELOW_REWARD', message: expect.stringMatching(/best predicted gain is a on h2: 400 ops\/s vs 400/) })]);
    expect(planForecastGreedy(s, args({ maxTargets: 2 })).moves.map((m) => m.to)).toEqual(['h3']);
    expect(planForecastGreedy(s, args()).moves.map((m) => m.to)).toEqual(['h3']);
    expect(checkPolicyArgs({ policy: 'forecast-greedy', args: { model: TINY_MODEL, maxTargets: 0 } }).errors[0]).toMatch(/maxTargets/);
  });

  it('does nothing below the reward threshold, and says the best gain it saw', () => {
    // Target at 0.65 + 0.3 → above 70 % "as if moved": 400 vs 400.
    const s = snapshot([host('h1', { cpuUtil: 1 }), host('h2', { cpuUtil: 0.65 })], [container('a', 'h1', { cpuCores: 0.3 })]);
    const plan = planForecastGreedy(s, args());
    expect(plan.moves).toEqual([]);
    expect(plan.annotations).toEqual([expect.objectContaining({ code: 'BELOW_REWARD', message: expect.stringMatching(/best predicted gain is a on h2: 400 ops\/s vs 400 on h1 \(\+0%\), below ×1\.1/) })]);
  });

  const one = (h1: Partial<Parameters<typeof host>[1]>, h2: Partial<Parameters<typeof host>[1]> | undefined, a: Partial<Parameters<typeof container>[2]>) =>
    snapshot([host('h1', h1), ...(h2 === undefined ? [] : [host('h2', h2)])], [container('a', 'h1', a)]);
  it.each([
    { what: 'no host overloaded', s: one({ cpuUtil: 0.5 }, { cpuUtil: 0.1 }, { cpuCores: 0.5 }), code: 'BALANCED' },
    { what: 'one host', s: one({ cpuUtil: 1 }, undefined, { cpuCores: 1 }), code: 'TOO_FEW_HOSTS' },
    { what: 'no room', s: one({ cpuUtil: 1 }, { cpuUtil: 0.9 }, { cpuCores: 0.5 }), code: 'NO_TARGET_CAPACITY' },
    { what: 'target draining', s: one({ cpuUtil: 1 }, { cpuUtil: 0.1, draining: true }, { cpuCores: 0.5 }), code: 'NO_TARGET_CAPACITY' },
    { what: 'target offline', s: one({ cpuUtil: 1 }, { cpuUtil: 0.1, online: false }, { cpuCores: 0.5 }), code: 'TOO_FEW_HOSTS' },
    { what: 'target with too few samples', s: one({ cpuUtil: 1 }, { cpuUtil: 0.1, sampleCount: 1 }, { cpuCores: 0.5 }), code: 'NO_TARGET_CAPACITY' },
    { what: 'container in flight', s: one({ cpuUtil: 1 }, { cpuUtil: 0.1 }, { cpuCores: 0.5, migrating: true }), code: 'CANDIDATE_REJECTED' },
    { what: 'container held by the safety layer', s: one({ cpuUtil: 1 }, { cpuUtil: 0.1 }, { cpuCores: 0.5, heldUntilMs: 2_000_000 }), code: 'CANDIDATE_REJECTED' },
  ])('$what → no move ($code)', ({ s, code }) => {
    const plan = planForecastGreedy(s, args());
    expect(plan.moves).toEqual([]);
    expect(plan.annotations.map((a) => a.code)).toContain(code);
  });

  it('a target without the free memory is ruled out, and the plan says so', () => {
    const MiB = 2 ** 20;
    const s = snapshot([host('h1', { cpuUtil: 1 }), host('h2', { cpuUtil: 0.1, memoryAvailableBytes: 1000 * MiB }), host('h3', { cpuUtil: 0.1, memoryAvailableBytes: 4000 * MiB })], [container('db', 'h1', { cpuCores: 0.5, memoryBytes: 1600 * MiB })]);
    const plan = planForecastGreedy(s, args());
    expect(plan.moves.map((m) => m.to)).toEqual(['h3']);
    expect(plan.annotations).toContainEqual(expect.objectContaining({ code: 'NOT_ENOUGH_MEMORY', message: expect.stringContaining('db needs ~1600 MiB of memory, h2 has 1000 MiB available') }));
    const none = planForecastGreedy({ ...s, hosts: s.hosts.filter((h) => h.hostId !== 'h3') }, args());
    expect(none.moves).toEqual([]);
    expect(none.annotations.map((a) => a.code)).toEqual(['NOT_ENOUGH_MEMORY', 'NO_TARGET_CAPACITY']);
  });

  it('runs from the registry, the model loaded once per JSON object', () => {
    const s = snapshot([host('h1', { cpuUtil: 1 }), host('h2', { cpuUtil: 0.1 })], [container('a', 'h1', { cpuCores: 0.5 })]);
    const plan = runPolicy(s, { policy: 'forecast-greedy', args: { model: TINY_MODEL } });
    expect(plan.moves.map((m) => m.to)).toEqual(['h2']);
    expect(args().model.model).toBe(args().model.model);
  });
});

describe('forecast-greedy: features of a container without a CPU limit (the monitor records its host\'s cores as its limit)', () => {
  const s = snapshot([host('h1', { cores: 2, cpuUtil: 1 }), host('h2', { cores: 8, cpuUtil: 0.1 })], [container('web', 'h1', { cpuCores: 1.8, cpuLimitCores: 2 }), container('capped', 'h1', { cpuCores: 0.9, cpuLimitCores: 1 })]);
  const [h1, h2] = s.hosts as [Parameters<typeof featureValues>[2], Parameters<typeof featureValues>[2]];
  const [web, capped] = s.containers as [Parameters<typeof featureValues>[1], Parameters<typeof featureValues>[1]];

  it('as if moved, takes the target\'s cores as its limit, as the monitor would record there', () => {
    expect(featureValues(s, web, h1, false)).toMatchObject({ ctr_cpu_limit_cores: 2, ctr_cpu_util: 0.9 });
    expect(featureValues(s, web, h2, true)).toMatchObject({ ctr_cpu_limit_cores: 8, ctr_cpu_util: 1.8 / 8, host_cores: 8 });
  });

  it('keeps a real limit (one other than its host\'s cores)', () => {
    expect(featureValues(s, capped, h2, true)).toMatchObject({ ctr_cpu_limit_cores: 1, ctr_cpu_util: 0.9 });
  });

  it('so a model that favours a container with CPU to spare moves it to the bigger host', () => {
    // 1000 ops/s when the container uses under half of its limit, 200 otherwise.
    const model = { ...TINY_MODEL, baseScore: 0, trees: [{ feature: [SNAPSHOT_FEATURES.indexOf('ctr_cpu_util'), -1, -1], threshold: [0.5, 0, 0], defaultLeft: [0, 0, 0], left: [1, -1, -1], right: [2, -1, -1], value: [0, 1000, 200], gain: [1, 0, 0] }] };
    const one = snapshot(s.hosts, [web]);
    const plan = planForecastGreedy(one, args({ model }));
    expect(plan.moves).toEqual([expect.objectContaining({ name: 'web', to: 'h2', reason: expect.stringMatching(/^predicted 1000 ops\/s on h2 vs 200 on h1/) })]);
  });
});

describe('forecast-greedy: features outside the model\'s training range', () => {
  // Trained on hosts of 1 or 2 cores only (the other features: no range recorded → not checked).
  const ranged = { ...TINY_MODEL, featureRanges: SNAPSHOT_FEATURES.map((f) => (f === 'host_cores' ? [1, 2] : f === 'host_cpu_util' ? [0, 1] : null)) };
  const s = snapshot([host('h1', { cpuUtil: 1 }), host('h2', { cores: 8, cpuUtil: 0.1 }), host('h3', { cores: 2, cpuUtil: 0.1 })], [container('db', 'h1', { cpuCores: 0.5 })]);

  it('skips a pair whose target the model never saw the like of, and says so (OUT_OF_RANGE)', () => {
    const plan = planForecastGreedy(s, args({ model: ranged }));
    expect(plan.moves.map((m) => m.to)).toEqual(['h3']);
    expect(plan.annotations).toContainEqual(expect.objectContaining({ level: 'skip', code: 'OUT_OF_RANGE', message: '1 pair(s) with a feature outside the model\'s training range skipped: db → h2: on h2 host_cores 8 (trained 1..2)' }));
    // Without ranges (an older model, or XGBoost's), nothing is checked: h2 wins the tie by id.
    expect(planForecastGreedy(s, args()).moves.map((m) => m.to)).toEqual(['h2']);
  });

  it('a container the model never saw the like of where it is: every pair of it skipped, and an empty plan says why', () => {
    const big = snapshot([host('h1', { cores: 4, cpuUtil: 1 }), host('h3', { cores: 2, cpuUtil: 0.1 })], [container('db', 'h1', { cpuCores: 0.5 })]);
    const plan = planForecastGreedy(big, args({ model: ranged }));
    expect(plan.moves).toEqual([]);
    expect(plan.annotations).toEqual([expect.objectContaining({ code: 'OUT_OF_RANGE', message: expect.stringContaining('db → h3: on h1 (where it is) host_cores 4 (trained 1..2)') })]);
  });

  it('with outOfRange: allow, keeps the pair and the move\'s reason says what was outside', () => {
    const plan = planForecastGreedy(s, args({ model: ranged, outOfRange: 'allow' }));
    expect(plan.moves).toEqual([expect.objectContaining({ to: 'h2', reason: expect.stringMatching(/; outside the training range: on h2 host_cores 8 \(trained 1\.\.2\)$/) })]);
    expect(plan.annotations).toContainEqual(expect.objectContaining({ level: 'info', code: 'OUT_OF_RANGE', message: expect.stringContaining('kept (outOfRange: allow)') }));
  });
});

