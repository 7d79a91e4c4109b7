/**
 * `npm run bench:migration [-- --quick | --mem 16,256 --diff 1,100 --reps 3 ...]`
 *
 * Prints figures (not a test): Herd's live migration h1 → h2 on the lab, per filesystem
 * mode, against two references run on the same workloads in the same run: the bare
 * Docker/CRIU primitives by hand, and Podman's checkpoint --export / restore --import.
 * Then a large image with a small diff, diff against full. See issue 3, "Benchmark".
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { labLayout } from '../../control/lab/layout.ts';
import { herd } from '../support/herd-cli.ts';
import { DOCKER_CLI, MiB, NAME_PREFIX, Registry, docker, hostOf, lastLines, run, type Workload } from './bench-support.ts';
import { LARGE_IMAGE, ensureLargeImage } from './large-image.ts';
import { bareMigration, ensurePodmanImage, herdMigration, makeContext, podmanMigration, runcRoundTrip, type FsMode, type Sample } from './methods.ts';
import { benchProgress, medianOf, printWorkload, ratioLine, targetLine, workloadTitle, type Row, type WorkloadResult } from './report.ts';
import { pauseLoopFor } from './lab-control.ts';

const HELP = `usage: npm run bench:migration -- [options]
  --mem LIST        resident memory per workload, MiB (default 16,256; env BENCH_MEM)
  --diff LIST       written files per workload, MiB (default 1,100; env BENCH_DIFF)
  --reps N          repetitions of every measurement (default 3; env BENCH_REPS)
  --quick           16 MiB x 1 MiB only, 1 repetition, large image of 100 MB
  --large-mb N      size of herd/bench-large's random files, MB (default 300; env BENCH_LARGE_MB)
  --no-large        skip the large-image diff-vs-full workload
  --no-podman       skip the Podman reference
  --no-db           skip the MariaDB-under-load row (bench:db-migration --only mariadb --moves 2)
  --keep            keep herd/bench-large on the hosts afterwards`;

const { values: opts } = parseArgs({
  options: {
    mem: { type: 'string' }, diff: { type: 'string' }, reps: { type: 'string' }, quick: { type: 'boolean' }, 'large-mb': { type: 'string' },
    'no-large': { type: 'boolean' }, 'no-podman': { type: 'boolean' }, 'no-db': { type: 'boolean' }, keep: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
  },
});
if (opts.help === true) {
  console.log(HELP);
  process.exit(0);
}

function list(flag: string | undefined, env: string | undefined, dflt: number[]): number[] {
  const raw = flag ?? env;
  if (raw === undefined) return dflt;
  const xs = raw.split(',').map((x) => Number(x.trim()));
  if (xs.some((x) => !Number.isInteger(x) || x <= 0)) throw new Error(`not a list of positive integers: "${raw}"`);
  return xs;
}

const quick = opts.quick === true;
const memList = quick ? [16] : list(opts.mem, process.env.BENCH_MEM, [16, 256]);
const diffList = quick ? [1] : list(opts.diff, process.env.BENCH_DIFF, [1, 100]);
const reps = quick ? 1 : list(opts.reps, process.env.BENCH_REPS, [3])[0]!;
const largeMB = quick ? 100 : list(opts['large-mb'], process.env.BENCH_LARGE_MB, [300])[0]!;
const withLarge = opts['no-large'] !== true;
const withPodman = opts['no-podman'] !== true;
const withDb = opts['no-db'] !== true && !quick;
const MODES: FsMode[] = ['diff', 'full', 'none'];

const out = (s: string) => process.stdout.write(`${s}\n`);
const bench = benchProgress('bench:migration');
const progress = (s: string) => bench.phase(s);

async function firstLine(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, 30_000);
  return r.code === 0 ? (r.stdout.trim().split('\n')[0] ?? '') : `unavailable (${lastLines(r.stderr, 1)})`;
}

function fmt(s: Sample): string {
  if (s.error !== undefined) return `FAILED: ${s.error}`;
  const f = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(0));
  return `checkpoint ${f(s.checkpointMs)} transfer ${f(s.transferMs)} restore ${f(s.restoreMs)} downtime ${f(s.downtimeMs)} total ${f(s.totalMs)} ms, ${((s.bytes ?? 0) / MiB).toFixed(1)} MiB`;
}

const FLOOR = 'floor (runc dump+copy+restore)';

/**
 * The floor of a migration's downtime: `runc checkpoint` of the very container (Docker's
 * runc state, no containerd), one copy of its images over the lab's link (the bare path's
 * timed copy of the checkpoint alone), and a raw `runc restore` of the same workload.
 */
function floorOf(dump: Sample, bare: Sample, alone: Sample): Sample {
  const failed = [dump, bare, alone].find((s) => s.error !== undefined);
  if (failed !== undefined) return { error: `a part of the floor failed: ${failed.error}` };
  if (dump.checkpointMs === undefined || bare.imagesCopyMs === undefined || alone.restoreMs === undefined) return { error: 'a part of the floor was not measured' };
  const downtimeMs = dump.checkpointMs + bare.imagesCopyMs + alone.restoreMs;
  return { checkpointMs: dump.checkpointMs, transferMs: bare.imagesCopyMs, restoreMs: alone.restoreMs, downtimeMs, totalMs: downtimeMs, ...(dump.bytes === undefined ? {} : { bytes: dump.bytes }) };
}

async function main(): Promise<number> {
  const layout = labLayout({ hosts: 2, cpuCount: availableParallelism() });
  progress('bringing the lab up (bin/herd lab up)');
  const up = await herd(['lab', 'up'], { timeoutMs: 600_000 });
  if (up.code !== 0) {
    process.stderr.write(`bench: the lab cannot be brought up (\`bin/herd lab up\` exited ${up.code}); nothing measured.\n${up.stderr || up.stdout}\n`);
    return 2;
  }
  const hostsNow = await herd(['hosts', '--json']);
  const online = hostsNow.code === 0 ? (JSON.parse(hostsNow.stdout) as { hostId: string; state: string }[]).filter((h) => h.state === 'online').map((h) => h.hostId) : [];
  if (!online.includes('h1') || !online.includes('h2')) {
    process.stderr.write(`bench: the lab is up but hosts h1 and h2 are not both online (online: ${online.join(', ') || 'none'}): ${lastLines(hostsNow.stderr)}\n`);
    return 2;
  }

  // The control loop would move the benchmark's containers: paused for the run, resumed after if it ran.
  const resumeLoop = await pauseLoopFor('bench:migration runs');
  const h1 = hostOf(layout, 'h1');
  out('Herd migration benchmark (issues 3 and 15)');
  out(`machine: ${availableParallelism()} CPUs (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, kernel ${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}`);
  out(`CRIU: ${await firstLine('criu', ['--version'])}; runc: ${await firstLine('runc', ['--version'])}`);
  out(`Docker: daemon ${(await docker(h1, ['version', '-f', '{{.Server.Version}}'])).stdout.trim()} (one per lab host, h1 on CPU ${h1.cpus.join(',')}, h2 on CPU ${hostOf(layout, 'h2').cpus.join(',')}), client ${DOCKER_CLI} ${await firstLine(DOCKER_CLI, ['--version'])}`);
  out(`Podman: ${withPodman ? await firstLine('podman', ['--version']) : 'skipped (--no-podman)'}`);
  out(`runs: mem ${memList.join(',')} MiB x diff ${diffList.join(',')} MiB, ${reps} repetition(s), medians with [min-max]; large image ${withLarge ? `${largeMB} MB` : 'skipped'}`);
  out('Herd figures are the MigrationResult timings of `herd migrate --json` (measured by the source daemon); "CLI wall" is the whole command.');
  out(`herd rows restore as the lab's h2 is configured (${(JSON.parse(hostsNow.stdout) as { hostId: string; restoreWith?: string }[]).find((h) => h.hostId === 'h2')?.restoreWith ?? 'unreported'}); "herd diff, docker restore" asks for Docker's path (--restore-with docker).`);
  out(`floor = runc checkpoint of the container + the bare path's copy of its images alone + raw runc restore of the same workload ("runc alone": a plain runc container of herd/busybox, no Docker, no containerd).`);

  const tmpDir = mkdtempSync(`${tmpdir()}/herd-bench-`);
  const registry = new Registry(layout);
  registry.path(tmpDir);
  let interrupted = false;
  const onSignal = (sig: string) => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\nbench: ${sig}: removing what the benchmark made, then exiting\n`);
    void registry.cleanup().then((problems) => {
      for (const p of problems) process.stderr.write(`bench cleanup: ${p}\n`);
      process.exit(130);
    });
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  const ctx = makeContext(layout, registry, tmpDir);
  // The lab should be ours for the run: containers of others starting or vanishing meanwhile disturb the figures.
  const others = async () => {
    const names: string[] = [];
    for (const host of layout.hosts) {
      for (const n of (await docker(host, ['ps', '-a', '--format', '{{.Names}}'])).stdout.split('\n')) if (n !== '' && !n.startsWith(NAME_PREFIX)) names.push(`${host.id}/${n}`);
    }
    return names.sort().join(' ') || 'none';
  };
  const othersAtStart = await others();
  const results: WorkloadResult[] = [];
  let large: WorkloadResult | undefined;
  try {
    // Leftovers of an earlier, killed run carry our prefix: remove them first.
    for (const host of layout.hosts) {
      for (const id of (await docker(host, ['ps', '-aq', '--filter', `name=^${NAME_PREFIX}`])).stdout.split('\n').filter((x) => x !== '')) {
        progress(`removing ${host.id} container ${id} left by an earlier run`);
        await docker(host, ['rm', '-f', '-v', id]);
      }
    }
    if (withPodman) await ensurePodmanImage(ctx);

    const measure = async (w: Workload, modes: FsMode[], refs: boolean): Promise<WorkloadResult> => {
      const rows: Row[] = [...modes.map((m) => ({ method: `herd ${m}`, samples: [] as Sample[] }))];
      const dockerRestore: Row = { method: 'herd diff, docker restore', samples: [] };
      const bare: Row = { method: 'bare (docker by hand)', samples: [] };
      const runcAlone: Row = { method: 'runc alone (ref)', samples: [] };
      const floor: Row = { method: FLOOR, samples: [] };
      const pod: Row = { method: 'podman export/import', samples: [] };
      if (refs) rows.push(dockerRestore, bare, ...(withPodman ? [pod] : []), runcAlone, floor);
      const key = `m${w.memMiB}d${w.diffMiB}${w.image === LARGE_IMAGE ? 'L' : ''}`;
      for (let rep = 1; rep <= reps; rep++) {
        for (const [i, m] of modes.entries()) {
          if (interrupted) throw new Error('interrupted');
          const s = await herdMigration(ctx, w, m, `${key}-${m}-${rep}`);
          rows[i]!.samples.push(s);
          progress(`${workloadTitle(w)} rep ${rep}/${reps} herd ${m}: ${fmt(s)}`);
        }
        if (!refs) continue;
        const d = await herdMigration(ctx, w, 'diff', `${key}-dr-${rep}`, 'docker');
        dockerRestore.samples.push(d);
        progress(`${workloadTitle(w)} rep ${rep}/${reps} herd diff, docker restore: ${fmt(d)}`);
        const b = await bareMigration(ctx, w, `${key}-bare-${rep}`);
        bare.samples.push(b.bare);
        progress(`${workloadTitle(w)} rep ${rep}/${reps} bare: ${fmt(b.bare)}; runc dump ${fmt(b.runc)}`);
        const alone = await runcRoundTrip(ctx, w, `${key}-${rep}`);
        runcAlone.samples.push(alone);
        progress(`${workloadTitle(w)} rep ${rep}/${reps} runc alone: ${fmt(alone)}`);
        floor.samples.push(floorOf(b.runc, b.bare, alone));
        if (withPodman) {
          const p = await podmanMigration(ctx, w, `${key}-pod-${rep}`);
          pod.samples.push(p);
          progress(`${workloadTitle(w)} rep ${rep}/${reps} podman: ${fmt(p)}`);
        }
      }
      return { workload: w, rows };
    };

    for (const memMiB of memList) {
      for (const diffMiB of diffList) results.push(await measure({ label: '', memMiB, diffMiB, image: 'herd/busybox' }, MODES, true));
    }
    if (withLarge) {
      progress(`large image: ${LARGE_IMAGE}`);
      await ensureLargeImage(ctx.src, ctx.dst, largeMB, registry, tmpDir, opts.keep === true, progress);
      large = await measure({ label: '', memMiB: 16, diffMiB: 1, image: LARGE_IMAGE }, ['diff', 'full'], false);
    }
  } catch (err) {
    out(`\nBENCHMARK ABORTED: ${(err as Error).message}`);
  } finally {
    progress('cleaning up');
    const problems = await registry.cleanup();
    for (const p of problems) out(`cleanup: ${p}`);
  }

  // The MariaDB row: bench:db-migration's MariaDB part, run as it runs alone (its own lab use, after ours).
  let db: string[] = [];
  if (withDb && !interrupted) {
    progress('MariaDB under sysbench oltp_read_write: bench:db-migration --only mariadb --moves 2');
    const r = await run('npx', ['tsx', `${import.meta.dirname}/db-migration.bench.ts`, '--only', 'mariadb', '--moves', '2', '--gap', '15'], 30 * 60_000);
    db = r.stdout.trim().split('\n');
    if (r.code !== 0) db.push(`bench:db-migration exited ${r.code}: ${lastLines(r.stderr)}`);
  }

  const othersAtEnd = await others();
  await resumeLoop();
  out(`other (non-benchmark) containers on the lab: at start ${othersAtStart}; at end ${othersAtEnd}${othersAtStart === othersAtEnd ? '' : '  <- CHANGED during the run: someone else used the lab, figures may be disturbed'}`);
  for (const r of results) printWorkload(r, out);
  if (large !== undefined) {
    printWorkload(large, out);
    out(`   (${LARGE_IMAGE}: busybox + ${largeMB} MB of random files; full carries the whole filesystem, diff only the upper dir)`);
  }
  out('');
  out('== ratios (medians of total time; Herd totals from its MigrationResult)');
  const targets: string[] = [];
  const BARE = { text: '<= 1.25x', met: (x: number) => x <= 1.25 };
  const FLOOR_GOAL = { text: '<= 1.5x the floor', met: (x: number) => x <= 1.5 };
  const PODMAN = { text: '< 1x (faster than podman)', met: (x: number) => x < 1 };
  const DIFF = { text: '>= 5x (diff 5x faster than full)', met: (x: number) => x >= 5 };
  for (const r of results) {
    const t = workloadTitle(r.workload);
    out(`[${t}]`);
    const [herd, bare] = [medianOf(r, 'herd diff', 'totalMs'), medianOf(r, 'bare (docker by hand)', 'totalMs')];
    out(`  ${ratioLine('herd diff total / bare total', herd, bare, BARE)}`);
    targets.push(targetLine(`herd diff total / bare total [${t}]`, herd, bare, BARE));
    out(`  ${ratioLine('herd diff downtime / bare downtime', medianOf(r, 'herd diff', 'downtimeMs'), medianOf(r, 'bare (docker by hand)', 'downtimeMs'))}`);
    const [down, floorDown] = [medianOf(r, 'herd diff', 'downtimeMs'), medianOf(r, FLOOR, 'downtimeMs')];
    out(`  ${ratioLine('herd diff downtime / floor downtime', down, floorDown, FLOOR_GOAL)}`);
    targets.push(targetLine(`herd diff downtime / floor [${t}]`, down, floorDown, FLOOR_GOAL));
    out(`  ${ratioLine('herd diff restore: direct / docker', medianOf(r, 'herd diff', 'restoreMs'), medianOf(r, 'herd diff, docker restore', 'restoreMs'))}`);
    out(`  ${ratioLine('herd diff restore / runc alone restore', medianOf(r, 'herd diff', 'restoreMs'), medianOf(r, 'runc alone (ref)', 'restoreMs'))}`);
    if (withPodman) {
      const podman = medianOf(r, 'podman export/import', 'totalMs');
      out(`  ${ratioLine('herd diff total / podman total', herd, podman, PODMAN)}`);
      targets.push(targetLine(`herd diff total / podman total [${t}]`, herd, podman, PODMAN));
    }
  }
  if (large !== undefined) {
    out(`[${workloadTitle(large.workload)}]`);
    const [full, diff] = [medianOf(large, 'herd full', 'totalMs'), medianOf(large, 'herd diff', 'totalMs')];
    out(`  ${ratioLine('herd full total / herd diff total', full, diff, DIFF)}`);
    targets.push(targetLine(`herd full total / herd diff total [${workloadTitle(large.workload)}]`, full, diff, DIFF));
    out(`  ${ratioLine('herd full downtime / herd diff downtime', medianOf(large, 'herd full', 'downtimeMs'), medianOf(large, 'herd diff', 'downtimeMs'))}`);
  }
  if (db.length > 0) {
    out('');
    out('== MariaDB 10.11 under sysbench oltp_read_write (4 connections), diff mode, h1 -> h2 -> h1 (bench:db-migration)');
    for (const line of db.filter((l) => !l.startsWith('target '))) out(line);
    targets.push(...db.filter((l) => l.startsWith('target ')));
  }
  out('');
  for (const line of targets) out(line);
  const failed = [...results, ...(large ? [large] : [])].flatMap((r) => r.rows.flatMap((row) => row.samples.filter((s) => s.error !== undefined))).length;
  if (failed > 0) out(`\n${failed} measurement(s) FAILED: see the FAILED lines above.`);
  return interrupted ? 130 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
