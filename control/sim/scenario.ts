/**
 * The scenario file of the cluster simulator (`herd simulate --scenario FILE`,
 * `npm run bench:policies`): hosts, containers with their demand traces, and the control
 * loop's settings. The zod schema below is the contract; `scenario.schema.json` beside this
 * file is generated from it (`npx tsx control/sim/write-schema.ts`) for tools outside
 * Herd, and control/sim/README.md documents it with an example.
 *
 * Rules JSON Schema cannot say (ids unique, a container's host exists, demand steps in
 * increasing time, known policies with valid arguments, …) are checked by
 * `scenarioProblems`; `parseScenario` reports every problem of both kinds at once.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { HerdError } from '../../protocol/errors.ts';
import { checkPolicyArgs, POLICIES, type PolicyName } from '../../policies/registry.ts';
import { safetyRulesSchema } from '../../policies/safety/safety.ts';

const id = z.string().min(1);
const positive = z.number().positive();
const nonNegative = z.number().min(0);

export const demandStepSchema = z
  .strictObject({
    atSeconds: nonNegative.describe('When this level starts (seconds from the start of the scenario); it holds until the next step'),
    cpuCores: nonNegative.describe('Cores the container would keep busy if nothing held it back (it never gets more than its threads or its CPU limit)'),
    diskOpsPerSec: nonNegative.default(0).describe('Disk operations per second it would issue if nothing held it back'),
  })
  .describe('One step of a staircase demand trace');

export const simHostSchema = z
  .strictObject({
    id: id.describe('Host id (hostId in snapshots)'),
    cores: positive.describe("Cores the host's containers share"),
    diskOpsCapacity: positive.optional().describe('Disk operations per second the host can serve in total; no disk limit when absent'),
    memoryBytes: positive.optional().describe('Memory for containers; snapshots then carry memoryAvailableBytes'),
  })
  .describe('A compute host');

export const migrationOverrideSchema = z
  .strictObject({
    downtimeSeconds: nonNegative.describe('Time the container does no work'),
    totalSeconds: nonNegative.describe('Time the migration is in flight (at least the downtime)'),
  })
  .describe("Overrides the migration cost interpolated from the container's memory and diff size");

export const simContainerSchema = z
  .strictObject({
    herdId: id.describe('Herd id, unique in the scenario'),
    name: z.string().min(1).optional().describe('Container name (default: the herdId)'),
    host: id.describe('The host it starts on'),
    threads: z.number().int().min(1).describe('Threads: cores it can use at once'),
    cpuLimitCores: positive.optional().describe('CPU quota in cores (none when absent)'),
    memoryBytes: nonNegative.describe('Resident memory: sets the migration cost'),
    diffBytes: nonNegative.optional().describe('Size of its writable layer (default 1 MiB): sets the migration cost'),
    opsPerCoreSecond: positive.describe('Workload operations it completes per second of CPU time it gets'),
    migration: migrationOverrideSchema.optional(),
    demand: z.array(demandStepSchema).min(1).describe('Staircase of demand, steps in increasing atSeconds; no demand before the first step'),
  })
  .describe('A Herd-managed container and its demand trace');

export const simPolicyStepSchema = z
  .strictObject({
    policy: id.describe('A registered policy (cpu-greedy, cpu-greedy-multithread, oltp-disk, …)'),
    args: z.record(z.string(), z.unknown()).default({}).describe("The policy's arguments; defaults for the rest"),
  })
  .describe('One step of the policy chain');

/** The reactive trigger of the control loop (control/config.ts `loop.reactive`). */
export const simReactiveSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    cpuUtil: z.number().min(0).max(1).default(0.95).describe('A host sample at or above this busy share counts'),
    cpuPressurePct: z.number().min(0).max(100).default(60).describe('…as does CPU pressure at or above this (not modelled: the simulator has no PSI)'),
    consecutiveSamples: z.number().int().min(1).default(3).describe('Samples in a row that trigger an evaluation at once'),
    minIntervalSeconds: z.number().min(0).default(30).describe('At most one reactive evaluation per this many seconds'),
  })
  .describe("Reactive trigger: a host over its threshold in consecutive samples triggers an evaluation (Herd's control loop)");

/**
 * The control loop: the same fields, meanings and defaults as the control daemon's `loop:`
 * configuration (control/config.ts), less what a simulation has no use for.
 */
export const simControlSchema = z
  .strictObject({
    windowSeconds: positive.default(30).describe('Metric window each evaluation looks at'),
    evaluationIntervalSeconds: positive.default(150).describe('Time between periodic evaluations'),
    initialDelaySeconds: nonNegative.default(150).describe('Time of the first periodic evaluation'),
    missingSamplesThreshold: z.number().min(0).max(1).default(0.02).describe("A container with more missing samples than this share of its window is not considered (each policy's maxMissingRatio unless its args set one)"),
    hostIntervalSeconds: positive.default(5).describe("Host sampling period (Herd's monitor default: 5 s)"),
    containerIntervalSeconds: positive.default(2).describe("Container sampling period (Herd's monitor default: 2 s)"),
    reactive: simReactiveSchema.prefault({}),
    policies: z.array(simPolicyStepSchema).default([{ policy: 'oltp-disk', args: {} }]).describe('The policy chain: tried in order, the first that proposes moves makes the plan'),
    safety: safetyRulesSchema.prefault({}).describe('Safety rules (the simulator runs each policy with them enabled and disabled)'),
  })
  .describe("The control loop (as the control daemon's loop: configuration)");

export const scenarioSchema = z
  .strictObject({
    $schema: z.string().optional().describe('Path or URL of this JSON Schema (ignored)'),
    name: id.describe('Scenario name'),
    description: z.string().optional(),
    seed: z.number().int().optional().describe('Seed of the generator that wrote it (informative)'),
    durationSeconds: positive.describe('Length of the simulated run'),
    hosts: z.array(simHostSchema).min(1),
    containers: z.array(simContainerSchema),
    control: simControlSchema.prefault({}),
  })
  .describe('A Herd cluster simulator scenario (herd simulate --scenario FILE)');

export type ScenarioInput = z.input<typeof scenarioSchema>;
export type Scenario = z.output<typeof scenarioSchema>;
export type SimHost = Scenario['hosts'][number];
export type SimContainer = Scenario['containers'][number];
export type DemandStep = SimContainer['demand'][number];

/** The JSON Schema of a scenario file (what `scenario.schema.json` holds). */
export function scenarioJsonSchema(): Record<string, unknown> {
  return { ...z.toJSONSchema(scenarioSchema, { io: 'input' }), title: 'Herd simulator scenario' };
}

export function scenarioJsonSchemaText(): string {
  return `${JSON.stringify(scenarioJsonSchema(), null, 2)}\n`;
}

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const list = (x: unknown): unknown[] => (Array.isArray(x) ? x : []);

/** Rules beyond the JSON Schema, checked on whatever parts of the raw value are there. */
export function scenarioProblems(raw: unknown): string[] {
  const problems: string[] = [];
  if (!isObj(raw)) return problems;
  const hostIds = new Map<string, number>();
  list(raw.hosts).forEach((h, i) => {
    if (!isObj(h) || typeof h.id !== 'string') return;
    const first = hostIds.get(h.id);
    if (first !== undefined) problems.push(`hosts.${i}.id: duplicate host id "${h.id}" (also hosts.${first}.id)`);
    else hostIds.set(h.id, i);
  });
  const herdIds = new Map<string, number>();
  list(raw.containers).forEach((c, i) => {
    if (!isObj(c)) return;
    if (typeof c.herdId === 'string') {
      const first = herdIds.get(c.herdId);
      if (first !== undefined) problems.push(`containers.${i}.herdId: duplicate herdId "${c.herdId}" (also containers.${first}.herdId)`);
      else herdIds.set(c.herdId, i);
    }
    if (typeof c.host === 'string' && Array.isArray(raw.hosts) && !hostIds.has(c.host)) problems.push(`containers.${i}.host: no host "${c.host}" in hosts`);
    let last = -Infinity;
    list(c.demand).forEach((d, j) => {
      if (!isObj(d) || typeof d.atSeconds !== 'number') return;
      if (d.atSeconds <= last) problems.push(`containers.${i}.demand.${j}.atSeconds: ${d.atSeconds} is not after the previous step (${last})`);
      last = d.atSeconds;
    });
    if (isObj(c.migration) && typeof c.migration.totalSeconds === 'number' && typeof c.migration.downtimeSeconds === 'number' && c.migration.totalSeconds < c.migration.downtimeSeconds) {
      problems.push(`containers.${i}.migration.totalSeconds: ${c.migration.totalSeconds} is below the downtime (${c.migration.downtimeSeconds})`);
    }
  });
  const control = isObj(raw.control) ? raw.control : {};
  list(control.policies).forEach((s, i) => {
    if (!isObj(s) || typeof s.policy !== 'string') return;
    if (!Object.hasOwn(POLICIES, s.policy)) {
      problems.push(`control.policies.${i}.policy: unknown policy "${s.policy}" (known: ${Object.keys(POLICIES).join(', ')})`);
      return;
    }
    if (s.args !== undefined && !isObj(s.args)) return; // the schema reports it
    const { errors } = checkPolicyArgs({ policy: s.policy as PolicyName, args: (s.args ?? {}) as Record<string, unknown> });
    for (const e of errors) problems.push(`control.policies.${i}.args: ${e}`);
  });
  const window = typeof control.windowSeconds === 'number' ? control.windowSeconds : 30;
  for (const key of ['hostIntervalSeconds', 'containerIntervalSeconds'] as const) {
    const v = typeof control[key] === 'number' ? control[key] : key === 'hostIntervalSeconds' ? 5 : 2;
    if (v > window) problems.push(`control.${key}: ${v} s is longer than the window (${window} s): a window would hold no sample`);
  }
  return problems;
}

function issuePath(path: readonly PropertyKey[]): string {
  return path.length === 0 ? '(root)' : path.map(String).join('.');
}

/** Every problem of a raw scenario value (schema and rules), each as "path: message". */
export function scenarioErrors(raw: unknown): string[] {
  const r = scenarioSchema.safeParse(raw);
  const schema = r.success ? [] : r.error.issues.map((i) => `${issuePath(i.path)}: ${i.message}`);
  return [...schema, ...scenarioProblems(raw)];
}

/** Validates a raw scenario; throws BAD_CONFIG naming `source` and every invalid path. */
export function parseScenario(raw: unknown, source: string): Scenario {
  const errors = scenarioErrors(raw);
  if (errors.length > 0) throw new HerdError('BAD_CONFIG', `${source}: invalid scenario (${errors.length} problem${errors.length === 1 ? '' : 's'}):\n  ${errors.join('\n  ')}`);
  return scenarioSchema.parse(raw);
}

/** Reads and validates a scenario file; a missing file, bad JSON or an invalid scenario is BAD_CONFIG. */
export function loadScenarioFile(path: string): Scenario {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new HerdError('BAD_CONFIG', `${path}: cannot read the scenario file: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new HerdError('BAD_CONFIG', `${path}: not valid JSON: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return parseScenario(raw, path);
}

