/**
 * `npm run bench:monitor [-- --window 60 --real 10,50 --synthetic 10,100,1000 ...]`
 *
 * Prints figures (not a test): the monitor daemon's own CPU time and memory for 10, 100
 * and 1000 monitored containers at the default rates (hosts every 5 s, containers every
 * 2 s). Rows with real containers run busybox sleepers on the lab (real Docker, cgroups,
 * pmcd/pmproxy); larger counts use recorded PCP answers from a local HTTP server, a
 * synthetic cgroup tree and a fake Docker API, and say so. In the same run: pmcd and
 * pmproxy CPU, and the cost of reading the same metrics straight from the cgroup
 * filesystem. See issue 4, "Benchmark".
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadNativeReader } from '../../monitor/cgroup-reader.ts';
import { startEmbeddedBroker } from '../../control/broker/embedded-broker.ts';
import { labLayout, type LabLayout } from '../../control/lab/layout.ts';
import { readLabState } from '../../control/lab/state.ts';
import { silentLogger } from '../../protocol/log.ts';
import { closeBroker, connectBroker } from '../../protocol/mqtt.ts';
import { parseTopic } from '../../protocol/topics.ts';
import { directReadCost, memoryOf, cpuSeconds, pidOf, processTree, sleep, startMonitor, treeCpuSeconds, type CgroupDirs, type DirectReadCost } from './monitor-measure.ts';
import { startFakeDocker, startFakePmproxy, syntheticContainers, writeSyntheticCgroups } from './monitor-fakes.ts';
import { ensureSleepers, otherManaged, removeSleepers, type RealContainer } from './monitor-lab.ts';

const HELP = `usage: npm run bench:monitor -- [options]
  --window S        seconds measured per row (default 60: shorter windows vary by ±0.5 % of
                    a core between runs at 1000 containers, e.g. with or without an old-space GC)
  --warmup S        seconds before measuring (default 60: start-up, JIT compilation and the
                    first garbage collections settle in the first minute; a daemon's steady
                    state is what runs for days)
  --real LIST       real lab container counts (default 10,50; "none" to skip)
  --synthetic LIST  recorded-PCP/synthetic counts (default 10,100,1000)
  --quick           window 15 s, warm-up 20 s, real 10, synthetic 10,100,1000
  --cpu-prof DIR    write a V8 CPU profile of each monitor child into DIR`;

const { values: opts } = parseArgs({
  options: { window: { type: 'string' }, warmup: { type: 'string' }, real: { type: 'string' }, synthetic: { type: 'string' }, quick: { type: 'boolean' }, 'cpu-prof': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
});
if (opts.help === true) {
  console.log(HELP);
  process.exit(0);
}
const counts = (raw: string | undefined, dflt: number[]): number[] => {
  if (raw === undefined) return dflt;
  if (raw === 'none' || raw === '') return [];
  const xs = raw.split(',').map(Number);
  if (xs.some((x) => !Number.isInteger(x) || x <= 0)) throw new Error(`not a list of positive integers: "${raw}"`);
  return xs;
};
const quick = opts.quick === true;
const windowS = Number(opts.window ?? (quick ? 15 : 60));
const warmupS = Number(opts.warmup ?? (quick ? 20 : 60));
const realCounts = counts(opts.real, quick ? [10] : [10, 50]);
const syntheticCounts = counts(opts.synthetic, [10, 100, 1000]);
const HOST_INTERVAL_S = 5;
const CONTAINER_INTERVAL_S = 2;
const TARGET_CORE_SHARE = 0.02;
/** The monitor's cgroup reader in every row: the native one when it is built (as `auto` picks), said in the output. */
const nativeLoaded = loadNativeReader();
const CGROUP_READER = 'module' in nativeLoaded ? 'native' : 'js';

const out = (s: string) => process.stdout.write(`${s}\n`);
const progress = (s: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
const pct = (share: number | undefined) => (share === undefined ? 'n/a' : `${(share * 100).toFixed(2)} %`);
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

interface RowResult {
  containers: number;
  source: 'real' | 'synthetic';
  monitorShare: number;
  rssBytes: number;
  peakRssBytes: number;
  samplesPerSec: number;
  pmcdShare?: number;
  pmproxyShare?: number;
  /** Other Herd-managed containers the monitor sampled too (real rows). */
  others?: number;
  /** Why the row cannot be trusted (the lab changed under it). */
  invalid?: string;
}

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'herd-bench-monitor-'));
  const broker = await startEmbeddedBroker({ host: '127.0.0.1', port: 0 }, silentLogger);
  const counter = await connectBroker({ url: broker.url, clientId: 'bench-monitor-counter' });
  let samples = 0;
  // A host sample is one message; a container batch carries one sample per container.
  counter.on('message', (topic, payload) => {
    samples += parseTopic(topic)?.kind === 'containerMetrics' ? (JSON.parse(payload.toString('utf8')) as { samples: unknown[] }).samples.length : 1;
  });
  await counter.subscribeAsync('herd/v1/metrics/#', { qos: 0 });
  const rows: RowResult[] = [];
  const notes: string[] = [];
  let baseline: { pmcd: number; pmproxy: number } | undefined;
  let direct: { cost: DirectReadCost; what: string } | undefined;

  /** Runs the monitor with `config` and measures it (and pmcd/pmproxy when real). */
  const measureRow = async (containers: number, source: RowResult['source'], config: object): Promise<RowResult> => {
    const dir = mkdtempSync(join(tmp, `${source}-${containers}-`));
    const configPath = join(dir, 'monitor.yaml');
    writeFileSync(configPath, JSON.stringify({ broker: { url: broker.url }, datasetDir: join(dir, 'metrics'), cgroupReader: CGROUP_READER, ...config }, null, 2));
    const child = startMonitor(configPath, join(dir, 'monitor.log'), opts['cpu-prof'] === undefined ? {} : { cpuProfileDir: join(opts['cpu-prof'], `${source}-${containers}`) });
    try {
      await sleep(warmupS * 1000);
      const pcp = source === 'real' ? pcpPids() : undefined;
      const before = { monitor: cpuSeconds(child.pid), pmcd: pcp && treeCpuSeconds(pcp.pmcd), pmproxy: pcp && treeCpuSeconds(pcp.pmproxy), samples, at: performance.now() };
      if (before.monitor === undefined) throw new Error(`the monitor exited during warm-up:\n${tail(join(dir, 'monitor.log'))}`);
      await sleep(windowS * 1000);
      const seconds = (performance.now() - before.at) / 1000;
      const after = cpuSeconds(child.pid);
      if (after === undefined) throw new Error(`the monitor exited:\n${tail(join(dir, 'monitor.log'))}`);
      const mem = memoryOf(child.pid);
      const row: RowResult = { containers, source, monitorShare: (after - before.monitor) / seconds, ...mem, samplesPerSec: (samples - before.samples) / seconds };
      if (pcp !== undefined) {
        // A restarted pmcd or pmproxy (someone ran lab down/up) makes the difference meaningless.
        const now = pcpPids();
        if (now !== undefined && now.pmcd[0] === pcp.pmcd[0] && now.pmproxy[0] === pcp.pmproxy[0]) {
          row.pmcdShare = (treeCpuSeconds(pcp.pmcd) - (before.pmcd ?? 0)) / seconds;
          row.pmproxyShare = (treeCpuSeconds(pcp.pmproxy) - (before.pmproxy ?? 0)) / seconds;
        } else row.invalid = 'pmcd or pmproxy restarted during the window';
      }
      // Fewer samples than the containers give: containers went away (another session used the lab).
      const expected = containers / CONTAINER_INTERVAL_S;
      if (row.samplesPerSec < expected * 0.8) row.invalid = `${row.samplesPerSec.toFixed(1)} samples/s where ${containers} containers give ~${expected.toFixed(0)}: containers went away during the window`;
      return row;
    } finally {
      await child.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  };

  // ---- real rows: the lab, when it is up and nobody else is using it
  const layout = realCounts.length > 0 ? usableLab(notes) : undefined;
  if (layout !== undefined) {
    const pcp = pcpPids();
    if (pcp === undefined) notes.push('pmcd/pmproxy not running: real rows skipped');
    else {
      progress(`baseline: pmcd/pmproxy for ${windowS} s without the benchmark's monitor`);
      const b0 = { pmcd: treeCpuSeconds(pcp.pmcd), pmproxy: treeCpuSeconds(pcp.pmproxy), at: performance.now() };
      await sleep(windowS * 1000);
      const s = (performance.now() - b0.at) / 1000;
      baseline = { pmcd: (treeCpuSeconds(pcp.pmcd) - b0.pmcd) / s, pmproxy: (treeCpuSeconds(pcp.pmproxy) - b0.pmproxy) / s };
      let real: RealContainer[] = [];
      try {
        await removeSleepers(layout);
        for (const n of realCounts) {
          progress(`real: starting ${n} sleepers on ${layout.hosts.map((h) => h.id).join('+')}`);
          real = await ensureSleepers(layout, n, real);
          progress(`real: measuring the monitor with ${n} containers (${warmupS} s warm-up, ${windowS} s window)`);
          const hosts = layout.hosts.map((h) => ({ id: h.id, pmproxyUrl: 'http://127.0.0.1:44322', dockerSocket: h.dockerSocket, cgroupParent: h.cgroupName, cpus: h.cpus, interfaces: [h.vethRoot], swapNetworkDirection: true }));
          const others = await otherManaged(layout);
          rows.push({ ...(await measureRow(n, 'real', { hosts })), ...(others > 0 ? { others } : {}) });
        }
        const dirs: CgroupDirs[] = real
          .filter((c) => existsSync(`/sys/fs/cgroup/memory/${c.cgroupParent}/${c.dockerId}`))
          .map((c) => (controller: string) => `/sys/fs/cgroup/${controller}/${c.cgroupParent}/${c.dockerId}`);
        if (dirs.length < real.length) notes.push(`only ${dirs.length} of ${real.length} real containers were left for the direct cgroup reads (another session used the lab)`);
        progress(`cgroup fs: reading the real containers' cgroup files directly`);
        if (dirs.length > 0) direct = { cost: await directReadCost(dirs, '/proc', 20_000), what: `the kernel's cgroup files of the ${dirs.length} real lab containers, read in turn 20000 times` };
      } finally {
        progress(`real: removed ${await removeSleepers(layout)} sleepers`);
      }
    }
  }

  // ---- synthetic rows: recorded PCP answers + synthetic cgroup tree + fake Docker API
  for (const n of syntheticCounts) {
    progress(`synthetic: ${n} containers (recorded PCP answers, synthetic cgroup tree, fake Docker API)`);
    const dir = mkdtempSync(join(tmp, `tree-${n}-`));
    const containers = syntheticContainers(n);
    const parent = 'herd-s1';
    const tree = writeSyntheticCgroups(dir, parent, containers);
    const pmproxy = await startFakePmproxy(containers, parent);
    const socket = join(dir, 'docker.sock');
    const docker = await startFakeDocker(socket, containers);
    try {
      rows.push(await measureRow(n, 'synthetic', { hosts: [{ id: 's1', pmproxyUrl: pmproxy.url, dockerSocket: socket, cgroupParent: parent, cgroupRoot: tree.cgroupRoot, procRoot: tree.procRoot, cpus: [0, 1] }] }));
      if (direct === undefined && n === Math.max(...syntheticCounts)) {
        const dirs: CgroupDirs[] = containers.map((c) => (controller: string) => join(tree.cgroupRoot, controller, parent, c.dockerId));
        direct = { cost: await directReadCost(dirs, tree.procRoot, Math.max(n, 5000)), what: `the synthetic cgroup tree (regular files, not the kernel's cgroup fs; the lab was not available)` };
      }
    } finally {
      await docker.close();
      await pmproxy.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }
  await closeBroker(counter);
  await broker.close();
  rmSync(tmp, { recursive: true, force: true });
  report(rows, baseline, direct, notes);
}

function tail(path: string): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '(no log)';
  }
}

function pcpPids(): { pmcd: number[]; pmproxy: number[] } | undefined {
  const pmcd = pidOf('pmcd');
  const pmproxy = pidOf('pmproxy');
  if (pmcd === undefined || pmproxy === undefined) return undefined;
  return { pmcd: processTree(pmcd), pmproxy: processTree(pmproxy) };
}

function usableLab(notes: string[]): LabLayout | undefined {
  const state = readLabState();
  if (state === undefined) {
    notes.push('the lab is not up (bin/herd lab up): real rows skipped');
    return undefined;
  }
  let busy = '';
  try {
    // Another benchmark or a test run on the lab would remove or disturb the containers measured.
    busy = execFileSync('pgrep', ['-f', 'migration.bench|vitest'], { encoding: 'utf8' }).trim();
  } catch {
    busy = '';
  }
  if (busy !== '') {
    notes.push('another benchmark (migration.bench) or a vitest run is using the lab: real rows skipped');
    return undefined;
  }
  const layout = labLayout({ hosts: state.hosts, cpuCount: availableParallelism() });
  if (!layout.hosts.every((h) => existsSync(h.dockerSocket))) {
    notes.push("the lab's dockerd sockets are missing: real rows skipped");
    return undefined;
  }
  return layout;
}

function report(rows: RowResult[], baseline: { pmcd: number; pmproxy: number } | undefined, direct: { cost: DirectReadCost; what: string } | undefined, notes: string[]): void {
  out('');
  out(`Herd monitor benchmark, ${new Date().toISOString()}, ${availableParallelism()} CPUs, node ${process.version}`);
  out(`Default rates: hosts every ${HOST_INTERVAL_S} s, containers every ${CONTAINER_INTERVAL_S} s. The monitor is \`herd monitor\` in a child process;`);
  out(`its CPU is utime+stime from /proc/<pid>/stat over a ${windowS} s window after ${warmupS} s of warm-up, as a share of one core.`);
  out('Rows: "real" = busybox sleepers on the lab (real Docker, cgroups, pmcd/pmproxy); "synthetic" = recorded PCP answers');
  out('from a local HTTP server, a synthetic cgroup tree in a temp dir, a fake Docker API (list, events, inspect) and a json-file');
  out("log per container (Docker's default log driver, as on the lab), served and written by the benchmark process (not counted).");
  out('Every container writes one log line per 10 s in both.');
  out(`The monitor's cgroup reader: ${CGROUP_READER}${'error' in nativeLoaded ? ` (${nativeLoaded.error})` : ' (monitor/native, built by scripts/build-native)'}.`);
  out('');
  const header = ['containers', 'source', 'monitor CPU', 'per container', 'RSS', 'peak RSS', 'samples/s', 'pmcd+PMDAs', 'pmproxy'];
  const table = rows.map((r) => [
    String(r.containers),
    r.source === 'real' ? `real (lab)${r.others === undefined ? '' : ` +${r.others} other`}` : 'synthetic',
    pct(r.monitorShare),
    `${((r.monitorShare / r.containers) * 1e6).toFixed(0)} µs/s`,
    mib(r.rssBytes),
    mib(r.peakRssBytes),
    r.samplesPerSec.toFixed(1),
    r.source === 'real' ? pct(r.pmcdShare) : 'n/a (recorded)',
    r.source === 'real' ? pct(r.pmproxyShare) : 'n/a (recorded)',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((t) => (t[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i <= 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  out(line(header));
  for (const t of table) out(line(t));
  for (const r of rows) if (r.invalid !== undefined) out(`INVALID row ${r.containers} ${r.source}: ${r.invalid}`);
  out('');
  if (baseline !== undefined) {
    out(`pmcd (+ its PMDAs) and pmproxy in the real rows serve the lab's own monitor too. Without the benchmark's monitor,`);
    out(`over ${windowS} s: pmcd+PMDAs ${pct(baseline.pmcd)}, pmproxy ${pct(baseline.pmproxy)} of one core; the difference is the benchmark monitor's share.`);
  }
  if (direct !== undefined) {
    const c = direct.cost;
    const at = (perContainer: number, n: number) => pct((perContainer * n) / CONTAINER_INTERVAL_S);
    out('');
    out(`Reading the same metrics straight from the cgroup filesystem (in the benchmark process, ${direct.what}):`);
    const us = (x: number) => `${(x * 1e6).toFixed(1)} µs`;
    const shares = (x: number) => [10, 100, 1000].map((n) => at(x, n)).join(' / ');
    out(`  (per container per round; then as a share of one core every ${CONTAINER_INTERVAL_S} s for 10 / 100 / 1000 containers)`);
    out(`  CPU time only (what the monitor takes from PCP): kept open + pread ${us(c.pcpMetricsKept)}, readFileSync ${us(c.pcpMetricsSync)}, fs/promises ${us(c.pcpMetricsAsync)}`);
    out(`    kept ${shares(c.pcpMetricsKept)}; readFileSync ${shares(c.pcpMetricsSync)}; fs/promises ${shares(c.pcpMetricsAsync)}`);
    const native = c.allMetricsNative;
    out(`  every container metric (adds block I/O, memory, processes, threads, net/dev): ${native === undefined ? 'native reader not built' : `native ${us(native)} (the monitor's way)`}, JavaScript kept open + pread ${us(c.allMetricsKept)}, readFileSync ${us(c.allMetricsSync)}, fs/promises ${us(c.allMetricsAsync)}`);
    out(`    ${native === undefined ? '' : `native ${shares(native)}; `}kept ${shares(c.allMetricsKept)}; readFileSync ${shares(c.allMetricsSync)}; fs/promises ${shares(c.allMetricsAsync)}`);
    if (native !== undefined) out(`    native / JavaScript (kept open): ${(native / c.allMetricsKept).toFixed(2)}`);
  }
  out('');
  const at1000 = rows.filter((r) => r.containers === 1000);
  for (const r of at1000) out(`Target ≤ ${pct(TARGET_CORE_SHARE)} of one core at 1000 containers (${r.source}): ${pct(r.monitorShare)}: ${r.monitorShare <= TARGET_CORE_SHARE ? 'MET' : 'MISSED'}`);
  if (at1000.length === 0) out('Target at 1000 containers: not measured in this run');
  for (const source of ['real', 'synthetic'] as const) {
    const rs = rows.filter((r) => r.source === source).sort((a, b) => a.containers - b.containers);
    if (rs.length < 3) continue;
    const slopes = rs.slice(1).map((r, i) => ({ from: rs[i]!.containers, to: r.containers, perContainer: (r.monitorShare - rs[i]!.monitorShare) / (r.containers - rs[i]!.containers) }));
    const text = slopes.map((s) => `${s.from}→${s.to}: ${(s.perContainer * 1e6).toFixed(1)} µs/s per added container`).join(', ');
    const first = slopes[0]!.perContainer;
    const last = slopes[slopes.length - 1]!.perContainer;
    // Linear or better: the cost of one more container does not rise with the count (25 % slack for noise).
    out(`Growth (${source}): ${text}: ${last <= Math.max(first, 0) * 1.25 + 1e-6 ? 'linear or better' : 'worse than linear'}`);
  }
  for (const n of notes) out(`Note: ${n}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:monitor failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
