/**
 * Herd's Prometheus metrics on the lab, scraped by Debian's real `prometheus` and queried
 * with PromQL: every family of the compute daemons (after a live migration), the monitor
 * and the control daemon. Prometheus is started by the test on a free loopback port and
 * stopped by its pid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LabLayout } from '../../control/lab/layout.ts';
import { METRICS_PORTS } from '../../protocol/metrics-config.ts';
import { COUNTER, execIn } from '../support/containers.ts';
import { herd, herdOk } from '../support/herd-cli.ts';
import { dockerOf, readyLab, setFaults } from '../support/lab.ts';
import { eventually, freePort } from '../integration/helpers.ts';

const PROMETHEUS = '/usr/bin/prometheus';
let layout: LabLayout;
let dir: string;
let prometheus: ChildProcess | undefined;
let output = '';
let api: string;

async function query(promql: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const res = await fetch(`${api}/api/v1/query?query=${encodeURIComponent(promql)}`);
  const body = (await res.json()) as { status: string; error?: string; data?: { result: { metric: Record<string, string>; value: [number, string] }[] } };
  if (body.status !== 'success') throw new Error(`PromQL ${promql}: ${body.error ?? res.status}`);
  return body.data?.result ?? [];
}

describe('Prometheus scrapes the lab (real prometheus, PromQL)', () => {
  beforeAll(async () => {
    // Never skip: a machine without it is not set up for this suite.
    if (!existsSync(PROMETHEUS)) throw new Error('prometheus not installed: run scripts/setup (Debian package prometheus)');
    layout = await readyLab(2);
    dir = mkdtempSync(join(tmpdir(), 'herd-e2e-prometheus-'));
    const targets = {
      compute: layout.hosts.map((h) => `${h.ip}:${METRICS_PORTS.compute}`),
      monitor: [`${layout.gateway}:${METRICS_PORTS.monitor}`],
      control: [`${layout.gateway}:${METRICS_PORTS.control}`],
    };
    const jobs = Object.entries(targets).map(([job, list]) => `  - job_name: herd-${job}\n    static_configs:\n      - targets: [${list.map((t) => `'${t}'`).join(', ')}]`);
    writeFileSync(join(dir, 'prometheus.yml'), `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n${jobs.join('\n')}\n`);
    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    prometheus = spawn(PROMETHEUS, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    prometheus.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    prometheus.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    await eventually('prometheus to answer and every target to be up', async () => {
      if (prometheus?.exitCode !== null) throw new Error(`prometheus exited:\n${output.slice(-2000)}`);
      try {
        const up = await query('up');
        return up.length === 4 && up.every((r) => r.value[1] === '1');
      } catch {
        return false;
      }
    });
  }, 600_000);

  afterAll(async () => {
    const p = prometheus;
    if (p?.pid !== undefined && p.exitCode === null) {
      const gone = new Promise((r) => p.once('exit', r));
      process.kill(p.pid, 'SIGTERM');
      await gone;
    }
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('answers PromQL for every family of the compute daemons, the monitor and the control daemon', { timeout: 300_000 }, async () => {
    await herdOk(['run', '--host', 'h1', '--name', 'prom-a', 'herd/busybox', ...COUNTER]);
    // 6 MB in the upper dir: over preCopyFilesystemMinBytes, so the move has a pre-copy phase and bytes.
    await execIn(dockerOf(layout, 'h1'), 'prom-a', ['sh', '-c', 'head -c 6000000 /dev/urandom > /big']);
    await herdOk(['migrate', 'prom-a', '--to', 'h2'], { timeoutMs: 120_000 });
    // A rollback, for herd_rollbacks_total by cause: h2's checkpoint fails, the container stays on h2.
    await setFaults(layout, 'h2', ['fail-checkpoint']);
    try {
      const failed = await herd(['migrate', 'prom-a', '--to', 'h1'], { timeoutMs: 120_000 });
      expect(failed.code, failed.stderr).not.toBe(0);
    } finally {
      await setFaults(layout, 'h2', []);
    }
    await herdOk(['control', 'evaluate']);
    const answers: string[] = [];
    const expectSeries = async (promql: string, check: (values: number[]) => boolean = (v) => v.length > 0) => {
      let last: { metric: Record<string, string>; value: [number, string] }[] = [];
      await eventually(`PromQL ${promql}`, async () => check((last = await query(promql)).map((r) => Number(r.value[1]))));
      answers.push(`${promql} => ${last.map((r) => `${JSON.stringify(r.metric)} ${r.value[1]}`).join('; ')}`);
    };
    // compute
    await expectSeries('sum by (role, outcome, fs_mode) (herd_migrations_total)', (v) => v.some((x) => x >= 1));
    await expectSeries('herd_migrations_total{role="source",outcome="done",fs_mode="diff",instance="10.213.0.11:9464"}', (v) => v[0] !== undefined && v[0] >= 1);
    await expectSeries('herd_migrations_total{role="target",outcome="committed"}', (v) => v.some((x) => x >= 1));
    await expectSeries('sum by (phase) (herd_migration_phase_seconds_count)', (v) => v.length === 6 && v.every((x) => x >= 1));
    await expectSeries('histogram_quantile(0.5, sum by (le) (herd_migration_phase_seconds_bucket{phase="downtime"}))', (v) => v[0] !== undefined && v[0] > 0);
    await expectSeries('sum by (kind) (herd_migration_bytes_total)', (v) => v.length === 3 && v.every((x) => x > 0));
    await expectSeries('herd_criu_queue_length', (v) => v.length === 2);
    await expectSeries('herd_migrations_in_flight', (v) => v.length === 4);
    await expectSeries('herd_rollbacks_total{instance="10.213.0.12:9464"}', (v) => v.length === 1 && v[0] === 1);
    // monitor
    await expectSeries('sum by (kind) (herd_monitor_samples_total)', (v) => v.length === 2 && v.every((x) => x > 0));
    await expectSeries('sum(rate(herd_monitor_pcp_request_duration_seconds_count[30s]))', (v) => v[0] !== undefined && v[0] > 0);
    await expectSeries('herd_monitor_hosts_stale');
    await expectSeries('herd_monitor_dataset_bytes_total', (v) => v[0] !== undefined && v[0] > 0);
    await expectSeries('herd_monitor_publish_buffered_samples');
    await expectSeries('rate(process_cpu_seconds_total{job="herd-monitor"}[30s])');
    // control
    await expectSeries('sum(herd_control_evaluations_total)', (v) => v[0] !== undefined && v[0] >= 1);
    await expectSeries('herd_control_plan_duration_seconds_count', (v) => v[0] !== undefined && v[0] >= 1);
    await expectSeries('herd_control_migrations_total{outcome="done"}', (v) => v[0] !== undefined && v[0] >= 1);
    await expectSeries('herd_control_containers', (v) => v.length === 2);
    await expectSeries('herd_control_cpu_imbalance_ratio');
    await expectSeries('herd_control_moves_proposed_total');
    process.stdout.write(`PromQL answers:\n  ${answers.join('\n  ')}\n`);
    await herdOk(['rm', 'prom-a', '--force']);
  });
});
