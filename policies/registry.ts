/**
 * Every policy Herd knows, by name, and the chain runner: a cluster's policy chain is tried
 * in order and the first policy that proposes moves makes the plan; the annotations of
 * every policy tried are kept. A policy that throws fails only its own step, with an
 * annotation, and the chain goes on.
 */
import { z } from 'zod';
import { cpuGreedy } from './cpu-greedy/policy.ts';
import { cpuGreedyMultithread } from './cpu-greedy-multithread/policy.ts';
import type { Annotation, ClusterSnapshot, Plan, PolicyDefinition } from './model.ts';
import { oltpDisk } from './oltp-disk/policy.ts';
import { drain } from './drain/policy.ts';
import { forecastGreedy } from './forecast-greedy/policy.ts';

export const POLICIES = {
  'cpu-greedy': cpuGreedy,
  'cpu-greedy-multithread': cpuGreedyMultithread,
  'oltp-disk': oltpDisk,
  drain,
  'forecast-greedy': forecastGreedy,
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each policy has its own argument type
} as const satisfies Record<string, PolicyDefinition<any>>;

export type PolicyName = keyof typeof POLICIES;
export const POLICY_NAMES = Object.keys(POLICIES) as PolicyName[];

/** One step of a chain as configured: a policy and its arguments (defaults filled in at load). */
export const policyStepSchema = z
  .strictObject({
    policy: z.enum(POLICY_NAMES as [PolicyName, ...PolicyName[]]),
    args: z.record(z.string(), z.unknown()).default({}),
  })
  // The arguments are checked against their policy's schema where the step is loaded, every problem with its path.
  .superRefine((step, ctx) => {
    for (const message of checkPolicyArgs(step).errors) ctx.addIssue({ code: 'custom', path: ['args'], message });
  });
export type PolicyStep = z.infer<typeof policyStepSchema>;

/** Validates a step's arguments against its policy's schema; returns every problem with its path. */
export function checkPolicyArgs(step: PolicyStep): { args: unknown; errors: string[] } {
  const def = POLICIES[step.policy] as PolicyDefinition<unknown>;
  const r = def.argsSchema.safeParse(step.args);
  if (r.success) return { args: r.data, errors: [] };
  return { args: undefined, errors: r.error.issues.map((i) => `${step.policy}.args${i.path.length > 0 ? `.${i.path.join('.')}` : ''}: ${i.message}`) };
}

/** The default arguments of a policy (what `herd plan` shows and a config may override). */
export function defaultArgs(name: PolicyName): unknown {
  const schema = (POLICIES[name] as PolicyDefinition<unknown>).argsSchema;
  const all = schema.safeParse({});
  if (all.success) return all.data;
  // A policy with a required argument (forecast-greedy's model): the defaults of the others.
  const shape = (schema as unknown as { shape?: Record<string, z.ZodType> }).shape ?? {};
  return Object.fromEntries(
    Object.entries(shape).flatMap(([k, field]) => {
      const d = field.safeParse(undefined);
      return d.success && d.data !== undefined ? [[k, d.data]] : [];
    }),
  );
}

export function runPolicy(snapshot: ClusterSnapshot, step: PolicyStep): Plan {
  const def = POLICIES[step.policy] as PolicyDefinition<unknown>;
  const { args, errors } = checkPolicyArgs(step);
  if (errors.length > 0) return failed(snapshot, step.policy, 'BAD_POLICY_ARGS', errors.join('; '));
  try {
    return def.plan(snapshot, args);
  } catch (err) {
    return failed(snapshot, step.policy, 'POLICY_FAILED', `${step.policy} threw: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function failed(snapshot: ClusterSnapshot, policy: string, code: string, message: string): Plan {
  return { snapshotVersion: snapshot.version, policy, moves: [], annotations: [{ level: 'error', code, policy, message }] };
}

export function runChain(snapshot: ClusterSnapshot, chain: readonly PolicyStep[]): Plan {
  const annotations: Annotation[] = [];
  for (const step of chain) {
    const plan = runPolicy(snapshot, step);
    annotations.push(...plan.annotations);
    if (plan.moves.length > 0) return { ...plan, annotations };
  }
  if (chain.length === 0) annotations.push({ level: 'info', code: 'NO_POLICY', message: 'the policy chain is empty' });
  return { snapshotVersion: snapshot.version, policy: chain.map((s) => s.policy).join(',') || 'none', moves: [], annotations };
}
