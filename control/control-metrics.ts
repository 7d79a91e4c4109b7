/**
 * The control daemon's Prometheus families, counted from the control events the loop
 * publishes (one choke point: what operators see in `herd events` is what is counted) and,
 * for the gauges, from the latest evaluation's snapshot.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ClusterSnapshot } from '../policies/model.ts';
import type { ControlEvent } from '../protocol/messages.ts';

/**
 * Downtime buckets, in seconds: fine where Herd's downtimes are (0.1 to 2 s: a 0.8 s and a
 * 1.8 s migration must not share a bucket), coarse beyond. The compute daemon's phase
 * histogram uses the same (compute/compute-metrics.ts), so quantiles compare.
 */
export const DOWNTIME_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1, 1.25, 1.5, 2, 3, 5, 10, 30, 60];

export interface ControlMetrics {
  observe(event: ControlEvent): void;
}

/** Max minus min CPU utilisation (0..1) over the online hosts: 0 is perfectly balanced. */
export function cpuImbalance(snapshot: ClusterSnapshot): number | undefined {
  const utils = snapshot.hosts.filter((h) => h.online && h.cpuUtil !== undefined).map((h) => h.cpuUtil as number);
  return utils.length === 0 ? undefined : Math.max(...utils) - Math.min(...utils);
}

export function registerControlMetrics(registry: Registry, latest: () => ClusterSnapshot | undefined): ControlMetrics {
  const evaluations = new Counter({ name: 'herd_control_evaluations_total', help: 'Evaluations of the control loop, by the policy that made the plan', labelNames: ['policy'] as const, registers: [registry] });
  const planSeconds = new Histogram({ name: 'herd_control_plan_duration_seconds', help: 'Time to build the snapshot and plan, per evaluation', buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [registry] });
  const proposed = new Counter({ name: 'herd_control_moves_proposed_total', help: 'Moves the policy chain proposed', registers: [registry] });
  const vetoed = new Counter({ name: 'herd_control_moves_vetoed_total', help: 'Moves the safety layer or the last re-check held back, by rule', labelNames: ['rule'] as const, registers: [registry] });
  const executed = new Counter({ name: 'herd_control_moves_executed_total', help: 'Moves sent as migrations', registers: [registry] });
  const annotations = new Counter({ name: 'herd_control_annotations_total', help: 'Reasons something did not happen, by code', labelNames: ['reason'] as const, registers: [registry] });
  const migrations = new Counter({ name: 'herd_control_migrations_total', help: 'Migrations seen to end (the loop\'s and manual ones), by outcome', labelNames: ['outcome'] as const, registers: [registry] });
  const downtime = new Histogram({ name: 'herd_control_migration_downtime_seconds', help: 'Downtime of done migrations (frozen to running on the target)', buckets: DOWNTIME_BUCKETS, registers: [registry] });
  new Gauge({
    name: 'herd_control_containers',
    help: 'Containers per host in the latest evaluation',
    labelNames: ['host'] as const,
    registers: [registry],
    collect() {
      const s = latest();
      if (s === undefined) return;
      this.reset();
      for (const h of s.hosts) this.set({ host: h.hostId }, s.containers.filter((c) => c.hostId === h.hostId).length);
    },
  });
  new Gauge({
    name: 'herd_control_cpu_imbalance_ratio',
    help: 'Max minus min CPU utilisation over the online hosts in the latest evaluation (0..1; 0 is balanced)',
    registers: [registry],
    collect() {
      const s = latest();
      // No evaluation yet, or no online host with CPU figures: unknown (NaN), not the last
      // value seen nor 0 (which reads "perfectly balanced").
      this.set((s === undefined ? undefined : cpuImbalance(s)) ?? Number.NaN);
    },
  });

  return {
    observe(e) {
      switch (e.kind) {
        case 'evaluation':
          evaluations.inc({ policy: e.policy ?? 'none' });
          proposed.inc(e.proposed ?? 0);
          if (e.durationMs !== undefined) planSeconds.observe(e.durationMs / 1000);
          break;
        case 'veto':
          vetoed.inc({ rule: e.code ?? 'unknown' });
          break;
        case 'move':
          executed.inc();
          break;
        case 'annotation':
          annotations.inc({ reason: e.code ?? 'unknown' });
          break;
        case 'migration':
          migrations.inc({ outcome: e.outcome ?? 'unknown' });
          if (e.outcome === 'done' && e.downtimeMs !== undefined) downtime.observe(e.downtimeMs / 1000);
          break;
        default:
      }
    },
  };
}
