/**
 * The comparison `herd simulate` and `npm run bench:policies` print for a scenario:
 * control (no migration), ideal (best static placement, when the scenario is small
 * enough), and each policy with and without the safety layer.
 */
import { HerdError } from '../../protocol/errors.ts';
import { checkPolicyArgs, POLICIES, type PolicyName } from '../../policies/registry.ts';
import { safetyRulesSchema, type SafetyRules } from '../../policies/safety/safety.ts';
import { idealPlacement, type IdealResult } from './ideal.ts';
import type { Scenario } from './scenario.ts';
import { simulate, type SimResult } from './simulator.ts';

/** The balancing policies compared by default (drain only acts on hosts being drained). */
export const COMPARED_POLICIES = ['cpu-greedy', 'cpu-greedy-multithread', 'oltp-disk'] as const satisfies readonly PolicyName[];

export interface ComparisonRow {
  label: string;
  kind: 'control' | 'ideal' | 'policy';
  /** The chain's policies (kind 'policy'). */
  policy?: string;
  safety?: boolean;
  result: SimResult;
  /** ops / ideal ops × 100. */
  pctOfIdeal?: number;
  /** (ops / control ops − 1) × 100. */
  pctOverControl?: number;
  /** ops / ideal ops × 100 from `settleSeconds` on (after an unbalanced start). */
  pctOfIdealSettled?: number;
}

export interface Comparison {
  scenario: string;
  hosts: number;
  containers: number;
  durationSeconds: number;
  /** When the "settled" figures start (undefined: not measured). */
  settleSeconds: number | undefined;
  ideal: { status: 'ok'; placements: number; placement: Record<string, string> } | { status: 'skipped'; placements: number; reason: string };
  rows: ComparisonRow[];
}

export interface CompareOptions {
  /** Policies to compare (default COMPARED_POLICIES); each runs alone, with the scenario's args for it. */
  policies?: readonly string[];
  /** Also run the scenario's own chain (`control.policies`) when it has more than one step (default true). */
  includeChain?: boolean;
  idealWorkLimit?: number;
  /** Also compare ops from this time on (default: 300 s when the scenario lasts at least 600 s); null: not at all. */
  settleSeconds?: number | null;
}

/** The default start of the "settled" figures. */
export function defaultSettleSeconds(durationSeconds: number): number | undefined {
  return durationSeconds >= 600 ? 300 : undefined;
}

/** Runs the comparison (deterministic). */
export function compareScenario(scenario: Scenario, options: CompareOptions = {}): Comparison {
  const base: SafetyRules = safetyRulesSchema.parse(scenario.control.safety);
  const on: SafetyRules = { ...base, enabled: true };
  const off: SafetyRules = { ...base, enabled: false };
  const settleSeconds = options.settleSeconds === null ? undefined : (options.settleSeconds ?? defaultSettleSeconds(scenario.durationSeconds));
  const settle = settleSeconds === undefined ? {} : { settleSeconds };
  const rows: ComparisonRow[] = [];
  rows.push({ label: 'control (no migration)', kind: 'control', result: simulate(scenario, settle) });
  const ideal: IdealResult = idealPlacement(scenario, options.idealWorkLimit);
  if (ideal.status === 'ok') rows.push({ label: 'ideal (best static placement)', kind: 'ideal', result: simulate(scenario, { placement: ideal.placement, ...settle }) });

  const chains: { name: string; chain: { policy: string; args: Record<string, unknown> }[] }[] = [];
  const configuredChain = scenario.control.policies;
  for (const name of options.policies ?? COMPARED_POLICIES) {
    if (!Object.hasOwn(POLICIES, name)) throw new Error(`unknown policy ${name}`);
    const configured = configuredChain.find((s) => s.policy === name);
    const args = configured?.args ?? {};
    // Up front: with bad arguments every evaluation would fail and the rows would just repeat "control".
    const { errors } = checkPolicyArgs({ policy: name as PolicyName, args });
    if (errors.length > 0) throw new HerdError('BAD_CONFIG', `${name} cannot run on scenario ${scenario.name}: ${errors.join('; ')}${configured === undefined ? ` (give its args in the scenario's control.policies)` : ''}`);
    chains.push({ name, chain: [{ policy: name, args }] });
  }
  if ((options.includeChain ?? true) && configuredChain.length > 1) chains.push({ name: `chain ${configuredChain.map((s) => s.policy).join('>')}`, chain: configuredChain });
  for (const { name, chain } of chains) {
    rows.push({ label: `${name} + safety`, kind: 'policy', policy: name, safety: true, result: simulate(scenario, { chain, safety: on, ...settle }) });
    rows.push({ label: `${name} (no safety)`, kind: 'policy', policy: name, safety: false, result: simulate(scenario, { chain, safety: off, ...settle }) });
  }
  const controlOps = rows[0]?.result.opsPerSec ?? 0;
  const idealRow = rows.find((r) => r.kind === 'ideal');
  const idealOps = idealRow?.result.opsPerSec;
  const idealSettled = idealRow?.result.opsPerSecFrom?.opsPerSec;
  for (const r of rows) {
    const settled = r.result.opsPerSecFrom?.opsPerSec;
    if (settled !== undefined && idealSettled !== undefined && idealSettled > 0) r.pctOfIdealSettled = (settled / idealSettled) * 100;
    if (idealOps !== undefined && idealOps > 0) r.pctOfIdeal = (r.result.opsPerSec / idealOps) * 100;
    if (controlOps > 0) r.pctOverControl = (r.result.opsPerSec / controlOps - 1) * 100;
  }
  return {
    scenario: scenario.name,
    hosts: scenario.hosts.length,
    containers: scenario.containers.length,
    durationSeconds: scenario.durationSeconds,
    settleSeconds,
    ideal: ideal.status === 'ok' ? { status: 'ok', placements: ideal.placements, placement: ideal.placement } : { status: 'skipped', placements: ideal.placements, reason: ideal.reason },
    rows,
  };
}

/** Columns: left-aligned first, right-aligned numbers. */
export function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

const pct = (x: number | undefined, digits = 1): string => (x === undefined ? '-' : x.toFixed(digits));
const signed = (x: number | undefined): string => (x === undefined ? '-' : `${x >= 0 ? '+' : ''}${x.toFixed(1)}`);

export function columns(settleSeconds: number | undefined): string[] {
  return ['run', 'host CPU %', 'container CPU %', 'ops/s', '% of ideal', '% over control', 'migrations', 'ops lost', ...(settleSeconds === undefined ? [] : [`% of ideal from ${settleSeconds} s`])];
}

export function comparisonRows(c: Comparison): string[][] {
  return c.rows.map((r) => [
    r.label,
    pct(r.result.hostCpuUtil * 100),
    pct(r.result.containerCpuUtil * 100),
    r.result.opsPerSec.toFixed(0),
    pct(r.pctOfIdeal),
    signed(r.pctOverControl),
    String(r.result.migrations),
    r.result.opsLostToDowntime.toFixed(0),
    ...(c.settleSeconds === undefined ? [] : [pct(r.pctOfIdealSettled)]),
  ]);
}

/** The printed comparison of one scenario. */
export function formatComparison(c: Comparison): string {
  const idealNote = c.ideal.status === 'ok' ? `ideal searched over ${c.ideal.placements.toLocaleString('en-US')} static placements` : `ideal skipped: ${c.ideal.reason}`;
  return [`== ${c.scenario}: ${c.hosts} hosts, ${c.containers} containers, ${c.durationSeconds} s (${idealNote})`, renderTable(columns(c.settleSeconds), comparisonRows(c))].join('\n');
}

/** A JSON-friendly view of a comparison (no per-evaluation detail). */
export function comparisonJson(c: Comparison): unknown {
  return {
    ...c,
    rows: c.rows.map((r) => ({
      label: r.label,
      kind: r.kind,
      ...(r.policy === undefined ? {} : { policy: r.policy, safety: r.safety }),
      hostCpuUtil: r.result.hostCpuUtil,
      containerCpuUtil: r.result.containerCpuUtil,
      opsPerSec: r.result.opsPerSec,
      totalOps: r.result.totalOps,
      pctOfIdeal: r.pctOfIdeal ?? null,
      pctOverControl: r.pctOverControl ?? null,
      pctOfIdealSettled: r.pctOfIdealSettled ?? null,
      migrations: r.result.migrations,
      opsLostToDowntime: r.result.opsLostToDowntime,
      evaluations: r.result.evaluations,
      proposedMoves: r.result.proposedMoves,
      vetoes: r.result.vetoes,
      migrationLog: r.result.migrationLog,
      finalPlacement: r.result.finalPlacement,
    })),
  };
}
