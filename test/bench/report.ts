/** Medians, ranges and the printed tables and ratio lines of the migration benchmark. */
import type { Workload } from './bench-support.ts';
import { MiB } from './bench-support.ts';
import type { Sample } from './methods.ts';
import { createProgress, type Progress } from '../../control/cli/progress.ts';

/** A benchmark's progress on stderr (control/cli/progress.ts): on a terminal with the time and bars, else plain lines; stdout keeps the figures. */
export function benchProgress(name: string): Progress {
  return createProgress(process.stderr, process.stderr.isTTY === true ? 'terminal' : 'lines', { prefix: `${name}: `, clock: true });
}

export interface Row {
  method: string;
  samples: Sample[];
}

export interface WorkloadResult {
  workload: Workload;
  rows: Row[];
}

type Field = 'checkpointMs' | 'transferMs' | 'restoreMs' | 'downtimeMs' | 'totalMs' | 'bytes' | 'cliMs' | 'connectMs' | 'createMs';

export function values(samples: Sample[], field: Field): number[] {
  return samples.filter((s) => s.error === undefined).map((s) => s[field]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
}

export function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function cell(samples: Sample[], field: Field, scale = 1, digits = 0): string {
  const xs = values(samples, field).map((x) => x / scale);
  const m = median(xs);
  if (m === undefined) return '-';
  if (xs.length === 1) return m.toFixed(digits);
  return `${m.toFixed(digits)} [${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)}]`;
}

function pad(cols: string[], widths: number[]): string {
  return cols.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
}

export function workloadTitle(w: Workload): string {
  return `mem ${w.memMiB} MiB x diff ${w.diffMiB} MiB${w.image === 'herd/busybox' ? '' : ` on ${w.image}`}`;
}

export function printWorkload(r: WorkloadResult, out: (s: string) => void): void {
  const first = r.rows.flatMap((row) => row.samples).find((s) => s.memory !== undefined)?.memory;
  out('');
  out(`== ${workloadTitle(r.workload)}${first === undefined ? '' : `   (measured before the move: shell VmRSS ${first.vmRssMiB.toFixed(1)} MiB, cgroup rss ${first.cgroupRssMiB.toFixed(1)} MiB)`}`);
  const head = ['method', 'ok', 'checkpoint ms', 'transfer ms', 'restore ms', 'downtime ms', 'total ms', 'MiB moved', 'CLI wall ms'];
  const lines = r.rows.map((row) => {
    const ok = row.samples.filter((s) => s.error === undefined).length;
    return [row.method, `${ok}/${row.samples.length}`, cell(row.samples, 'checkpointMs'), cell(row.samples, 'transferMs'), cell(row.samples, 'restoreMs'), cell(row.samples, 'downtimeMs'), cell(row.samples, 'totalMs'), cell(row.samples, 'bytes', MiB, 1), cell(row.samples, 'cliMs')];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  out(pad(head, widths));
  for (const l of lines) out(pad(l, widths));
  const bare = r.rows.find((row) => row.method.startsWith('bare'));
  if (bare !== undefined && values(bare.samples, 'totalMs').length > 0) {
    out(`   bare before the freeze (in its total): ssh master connect ${cell(bare.samples, 'connectMs')} ms, docker create on h2 ${cell(bare.samples, 'createMs')} ms`);
  }
  for (const row of r.rows) {
    row.samples.forEach((s, i) => {
      if (s.error !== undefined) out(`   FAILED ${row.method} run ${i + 1}: ${s.error}`);
      if (s.warning !== undefined) out(`   WARNING ${row.method} run ${i + 1}: ${s.warning}`);
    });
  }
}

export function medianOf(r: WorkloadResult | undefined, method: string, field: Field): number | undefined {
  const row = r?.rows.find((x) => x.method === method);
  return row === undefined ? undefined : median(values(row.samples, field));
}

/** "a / b = x (target ...: met|missed)", or why it cannot be computed. */
export function ratioLine(label: string, a: number | undefined, b: number | undefined, target?: { text: string; met: (x: number) => boolean }): string {
  if (a === undefined || b === undefined || b === 0) return `${label} = n/a (a measurement is missing or failed)${target ? `   target ${target.text}: not measured` : ''}`;
  const x = a / b;
  return `${label} = ${(a / 1000).toFixed(2)} s / ${(b / 1000).toFixed(2)} s = ${x.toFixed(2)}x${target ? `   target ${target.text}: ${target.met(x) ? 'MET' : 'MISSED'}` : ''}`;
}

/** The closing line of a benchmark for one target: `target <what>: <figure> vs <goal>: MET|MISSED` (MISSED when not measured). */
export function targetLine(what: string, a: number | undefined, b: number | undefined, target: { text: string; met: (x: number) => boolean }): string {
  if (a === undefined || b === undefined || b === 0) return `target ${what}: not measured vs ${target.text}: MISSED`;
  const x = a / b;
  return `target ${what}: ${x.toFixed(2)}x vs ${target.text}: ${target.met(x) ? 'MET' : 'MISSED'}`;
}
