/**
 * One decision, the same everywhere it is made (the control loop, the simulator, `herd plan`
 * offline): the configured chain with the loop's missing-samples threshold and, while a host
 * drains, `drain` ahead of it; the snapshot with the safety layer's holds; the chain's plan;
 * the safety layer. Sending (with the last re-check) is the caller's.
 */
import type { ClusterSnapshot, Plan } from './model.ts';
import { defaultArgs, runChain, type PolicyName, type PolicyStep } from './registry.ts';
import { applySafety, withHolds, type SafetyRules, type SafetyState } from './safety/safety.ts';

/** A chain step as the loop runs it: the missing-samples threshold is each policy's default `maxMissingRatio`. */
export function loopStep(step: { policy: PolicyName; args: Record<string, unknown> }, missingSamplesThreshold: number): PolicyStep {
  const defaults = defaultArgs(step.policy) as Record<string, unknown>;
  const args = 'maxMissingRatio' in defaults && !('maxMissingRatio' in step.args) ? { maxMissingRatio: missingSamplesThreshold, ...step.args } : step.args;
  return { policy: step.policy, args };
}

/** `policy` as the configured chain runs it (its arguments there, such as forecast-greedy's model), or with its defaults when the chain lacks it. */
export function configuredStep(policies: readonly { policy: PolicyName; args: Record<string, unknown> }[], policy: PolicyName): { policy: PolicyName; args: Record<string, unknown> } {
  return policies.find((s) => s.policy === policy) ?? { policy, args: {} };
}

export function chainFor(policies: readonly { policy: PolicyName; args: Record<string, unknown> }[], options: { missingSamplesThreshold: number; draining: boolean }): PolicyStep[] {
  const configured = policies.map((s) => loopStep(s, options.missingSamplesThreshold));
  return options.draining ? [loopStep({ policy: 'drain', args: {} }, options.missingSamplesThreshold), ...configured] : configured;
}

/** Drains are operator intent: the caps apply, hysteresis and cooldowns do not. */
export function rulesFor(plan: Plan, rules: SafetyRules): SafetyRules {
  return plan.policy === 'drain' ? { ...rules, hysteresisEvaluations: 1, cooldownSeconds: 0 } : rules;
}

export interface Decision {
  /** The snapshot the policies saw (with the safety layer's holds). */
  snapshot: ClusterSnapshot;
  /** The chain's plan, before the safety layer. */
  plan: Plan;
  /** What the safety layer lets through, with a veto annotation per move held back. */
  allowed: Plan;
  /** The safety layer's state after this evaluation. */
  state: SafetyState;
  /** The rules that applied (relaxed for a drain). */
  rules: SafetyRules;
}

export function decide(snapshot: ClusterSnapshot, chain: readonly PolicyStep[], state: SafetyState, rules: SafetyRules, plan: (s: ClusterSnapshot) => Plan = (s) => runChain(s, chain)): Decision {
  const seen = withHolds(snapshot, state, rules);
  const proposed = plan(seen);
  const applied = rulesFor(proposed, rules);
  const safe = applySafety(proposed, seen, state, applied);
  return { snapshot: seen, plan: proposed, allowed: safe.plan, state: safe.state, rules: applied };
}
