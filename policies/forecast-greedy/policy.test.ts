import { describe, expect, it } from 'vitest';
import { container, host, snapshot } from '../testing/builders.ts';
import { checkPolicyArgs, runPolicy } from '../registry.ts';
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
