/**
 * One measurement of each way of moving a container h1 → h2 (or, for Podman, out and
 * back in on this machine): Herd's real path through the CLI, broker and compute
 * daemons; the bare Docker/CRIU primitives by hand; Podman's export/import; and a
 * runc-level dump as a floor for the checkpoint alone.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import type { LabHost, LabLayout } from '../../control/lab/layout.ts';
import type { MigrationResult } from '../../protocol/messages.ts';
import { MigrationStore } from '../../compute/migration/migration-store.ts';
import { herd } from '../support/herd-cli.ts';
import {
  DOCKER_CLI, MiB, NAME_PREFIX, Registry, docker, hostOf, lastLines, must, mustDocker, mustSh, readMemory, run, sq, waitReady, workloadCommand,
  type MemoryReading, type Workload,
} from './bench-support.ts';

export type FsMode = 'diff' | 'full' | 'none';

export interface Sample {
  checkpointMs?: number;
  transferMs?: number;
  restoreMs?: number;
  downtimeMs?: number;
  totalMs?: number;
  /** Bytes moved: checkpoint images plus filesystem (Podman: the export archive). */
  bytes?: number;
  /** Wall time of the whole `herd migrate` command (CLI start, broker, everything). */
  cliMs?: number;
  /** Bare path only: the SSH master connection and the target `docker create`, before the freeze. */
  connectMs?: number;
  createMs?: number;
  /** Bare path only: the copy of the checkpoint images alone (one copy over the link). */
  imagesCopyMs?: number;
  memory?: MemoryReading;
  /** A check after the move that failed (the container not running, the diff wrong). */
  warning?: string;
  error?: string;
}

export interface BenchContext {
  layout: LabLayout;
  registry: Registry;
  src: LabHost;
  dst: LabHost;
  tmpDir: string;
  podmanImage: string;
}

export function makeContext(layout: LabLayout, registry: Registry, tmpDir: string): BenchContext {
  return { layout, registry, src: hostOf(layout, 'h1'), dst: hostOf(layout, 'h2'), tmpDir, podmanImage: 'localhost/herd/busybox:latest' };
}

function readyProbe(host: LabHost, name: string) {
  return () => docker(host, ['exec', name, 'test', '-f', '/data/ready'], 30_000);
}

/** What the moved container must look like: running, with /data/diff.bin of the right size (or none after fs none). */
async function verifyMoved(exec: (cmd: string[]) => Promise<{ code: number; stdout: string; stderr: string }>, w: Workload, expectDiff: boolean): Promise<string | undefined> {
  const r = await exec(['sh', '-c', 'wc -c < /data/diff.bin 2>/dev/null || echo absent']);
  if (r.code !== 0) return `the moved container does not answer exec (exit ${r.code}: ${lastLines(r.stderr, 2)})`;
  const got = r.stdout.trim();
  const want = expectDiff ? String(w.diffMiB * MiB) : 'absent';
  return got === want ? undefined : `after the move /data/diff.bin is ${got}, expected ${want}`;
}

async function startDockerWorkload(ctx: BenchContext, name: string, w: Workload): Promise<{ pid: number; id: string; upperDir: string }> {
  await mustDocker('starting the workload', ctx.src, ['run', '-d', '--name', name, '--network', 'none', w.image, ...workloadCommand(w)]);
  await waitReady(`container ${name} on h1`, readyProbe(ctx.src, name));
  const info = await mustDocker('inspecting the workload', ctx.src, ['inspect', '-f', '{{.State.Pid}} {{.Id}} {{.GraphDriver.Data.UpperDir}}', name]);
  const [pid, id, upperDir] = info.stdout.trim().split(' ') as [string, string, string];
  return { pid: Number(pid), id, upperDir };
}

/** Herd: `herd run` on h1, then `herd migrate --json` to h2 through the broker and both compute daemons (restoring as h2 is configured, or as `restoreWith` says). */
export async function herdMigration(ctx: BenchContext, w: Workload, mode: FsMode, tag: string, restoreWith?: 'direct' | 'docker'): Promise<Sample> {
  const name = ctx.registry.dockerName(`${NAME_PREFIX}${tag}`);
  try {
    const started = await herd(['run', '--host', ctx.src.id, '--name', name, '--json', w.image, ...workloadCommand(w)], { timeoutMs: 120_000 });
    if (started.code !== 0) return { error: `herd run failed (exit ${started.code}): ${lastLines(started.stderr || started.stdout)}` };
    const { pid } = JSON.parse(started.stdout) as { pid: number };
    await waitReady(`container ${name} on h1`, readyProbe(ctx.src, name));
    const memory = readMemory(pid);
    const t0 = performance.now();
    const m = await herd(['migrate', name, '--to', ctx.dst.id, '--fs', mode, '--json', ...(restoreWith === undefined ? [] : ['--restore-with', restoreWith])], { timeoutMs: 15 * 60_000 });
    const cliMs = performance.now() - t0;
    if (m.code !== 0) {
      const why = lastLines(m.stderr.split('\n').filter((l) => /error|fail|rolled|\[/i.test(l)).join('\n') || m.stderr || m.stdout, 3);
      return { memory, cliMs, error: `herd migrate --fs ${mode} exited ${m.code}: ${why}` };
    }
    const result = JSON.parse(m.stdout) as MigrationResult;
    const t = result.timings;
    if (restoreWith !== undefined && result.restoreWith !== restoreWith) return { error: `asked to restore with ${restoreWith}, the target restored with ${result.restoreWith ?? 'an unreported path'}` };
    const warning = await verifyMoved((cmd) => docker(ctx.dst, ['exec', name, ...cmd]), w, mode !== 'none');
    return {
      checkpointMs: t.checkpointMs, transferMs: t.transferMs, restoreMs: t.restoreMs, downtimeMs: t.downtimeMs, totalMs: t.totalMs,
      bytes: t.checkpointBytes + t.filesystemBytes + (t.precopyBytes ?? 0), cliMs, memory, ...(warning === undefined ? {} : { warning }),
    };
  } catch (err) {
    return { error: (err as Error).message };
  } finally {
    await ctx.registry.removeDocker(name);
  }
}

/**
 * The bare primitives by hand, sequentially, as an operator would type them:
 * open one SSH master connection from h1's namespace (lab key, strict host key check),
 * `docker create` the target on h2 with the same image and command, then (frozen from
 * here) `docker checkpoint create` on h1, `tar` the upper dir into a remote `tar -x` in
 * the target's upper dir, `tar` the checkpoint into `<h2 data root>/containers/<id>/checkpoints/<cp>`,
 * `docker start --checkpoint` on h2 (running again), then `docker rm` the source.
 * Also returns, from the same container before the move, the time of a runc-level dump.
 */
export async function bareMigration(ctx: BenchContext, w: Workload, tag: string): Promise<{ bare: Sample; runc: Sample }> {
  const name = ctx.registry.dockerName(`${NAME_PREFIX}${tag}`);
  const cp = 'benchcp';
  const control = ctx.registry.path(`${ctx.tmpDir}/ssh-${tag}`);
  const targetGrants = new MigrationStore(ctx.dst.computeStateDir);
  const grantId = `bench-bare-${tag}`;
  let runcSample: Sample = {};
  try {
    const src = await startDockerWorkload(ctx, name, w);
    const memory = readMemory(src.pid);
    runcSample = await runcDump(ctx, src.id, tag);

    const sshBase = ['-i', ctx.src.sshKey, '-o', `UserKnownHostsFile=${ctx.layout.knownHosts}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes'];
    const remote = `root@${ctx.dst.ip}`;
    const sshCmd = `ssh -S ${sq(control)} ${sshBase.map(sq).join(' ')} ${remote}`;
    const t0 = performance.now();
    ctx.registry.sshMaster(control);
    await must('opening the SSH master connection', 'nsenter', [`--net=/var/run/netns/${ctx.src.netns}`, 'ssh', '-M', '-S', control, '-f', '-N', ...sshBase, remote], 30_000);
    const tConnected = performance.now();
    const created = await mustDocker('docker create on h2', ctx.dst, ['create', '--name', name, '--network', 'none', w.image, ...workloadCommand(w)]);
    const dstId = created.stdout.trim();
    const dstUpper = (await mustDocker('inspecting the target', ctx.dst, ['inspect', '-f', '{{.GraphDriver.Data.UpperDir}}', dstId])).stdout.trim();
    const srcCp = `${ctx.src.dockerDataRoot}/containers/${src.id}/checkpoints/${cp}`;
    const dstCp = `${ctx.dst.dockerDataRoot}/containers/${dstId}/checkpoints/${cp}`;
    // The transfer key writes only where the target granted it (as Herd's target does at prepare: compute/migration/transfer-grants.ts).
    targetGrants.grantTransfers(grantId, ctx.src.id, [dstUpper, dstCp]);
    const tCreated = performance.now();
    await mustDocker('docker checkpoint create', ctx.src, ['checkpoint', 'create', name, cp], 600_000);
    const tCheckpointed = performance.now();
    const x = `--numeric-owner --xattrs --xattrs-include='*'`;
    // Through the transfer key's forced command, as Herd does (bin/herd-ssh-command: directory on the first line, then the tar).
    await mustSh('copying the upper dir', `(printf '%s\\n' ${sq(dstUpper)}; tar -c ${x} -C ${sq(src.upperDir)} .) | ${sshCmd} 'herd-receive --xattrs'`, 600_000);
    const tUpperCopied = performance.now();
    await mustSh('copying the checkpoint', `(printf '%s\\n' ${sq(dstCp)}; tar -c -C ${sq(srcCp)} .) | ${sshCmd} herd-receive`, 600_000);
    const tCopied = performance.now();
    await mustDocker('docker start --checkpoint on h2', ctx.dst, ['start', '--checkpoint', cp, name], 600_000);
    const tRunning = performance.now();
    await mustDocker('removing the source', ctx.src, ['rm', '-f', name]);
    await run('ssh', ['-S', control, '-O', 'exit', remote], 10_000);
    const tEnd = performance.now();

    const bytes = Number((await mustSh('sizing what was sent', `{ tar -c ${x} -C ${sq(dstUpper)} . | wc -c; tar -c -C ${sq(dstCp)} . | wc -c; } | awk '{s+=$1} END {print s}'`)).stdout.trim());
    const warning = await verifyMoved((cmd) => docker(ctx.dst, ['exec', name, ...cmd]), w, true);
    const bare: Sample = {
      connectMs: tConnected - t0, createMs: tCreated - tConnected, checkpointMs: tCheckpointed - tCreated, transferMs: tCopied - tCheckpointed,
      restoreMs: tRunning - tCopied, downtimeMs: tRunning - tCreated, totalMs: tEnd - t0, bytes, memory, imagesCopyMs: tCopied - tUpperCopied, ...(warning === undefined ? {} : { warning }),
    };
    return { bare, runc: runcSample };
  } catch (err) {
    return { bare: { error: (err as Error).message }, runc: runcSample };
  } finally {
    await run('ssh', ['-S', control, '-O', 'exit', 'bench'], 10_000);
    targetGrants.revokeTransfers(grantId);
    await ctx.registry.removeDocker(name);
  }
}

/** `runc checkpoint --leave-running` straight on Docker's runc state: CRIU's dump without containerd in the way. */
async function runcDump(ctx: BenchContext, id: string, tag: string): Promise<Sample> {
  const dir = ctx.registry.path(`${ctx.tmpDir}/runc-${tag}`);
  const r = await run('runc', ['--root', `${ctx.src.dockerExecRoot}/runtime-runc/moby`, 'checkpoint', '--image-path', dir, '--work-path', dir, '--leave-running', id], 600_000);
  if (r.code !== 0) return { error: `runc checkpoint exited ${r.code}: ${lastLines(r.stderr)}` };
  const bytes = Number((await run('du', ['-sb', dir])).stdout.split(/\s/)[0]);
  await run('rm', ['-rf', dir]);
  return { checkpointMs: r.ms, bytes };
}

/**
 * The floor's restore half: CRIU through runc alone, with no Docker or containerd. The same
 * workload runs as a plain runc container (an OCI bundle made from herd/busybox's
 * filesystem, `runc spec` with its own namespaces), is dumped with `runc checkpoint`, and
 * restored with `runc restore --detach` from where the images are. Run from the root
 * namespace (not pinned to a lab host's CPU).
 */
export async function runcRoundTrip(ctx: BenchContext, w: Workload, tag: string): Promise<Sample> {
  const id = `${NAME_PREFIX}runc-${tag}`;
  const dir = ctx.registry.path(`${ctx.tmpDir}/runc-rt-${tag}`);
  const root = `${dir}/state`;
  const bundle = `${dir}/bundle`;
  const runcQuiet = (args: string[]) => mustSh(`runc ${args[0]}`, `runc --root ${sq(root)} ${args.map(sq).join(' ')} </dev/null >/dev/null 2>${sq(`${dir}/runc.err`)}`, 600_000);
  try {
    const exportName = ctx.registry.dockerName(`${NAME_PREFIX}export-${tag}`);
    await mustDocker('docker create (for its filesystem)', ctx.dst, ['create', '--name', exportName, w.image]);
    await mustSh('exporting herd/busybox into a bundle', `mkdir -p ${sq(`${bundle}/rootfs`)} && ${DOCKER_CLI} -H unix://${ctx.dst.dockerSocket} export ${exportName} | tar -x -C ${sq(`${bundle}/rootfs`)} && mkdir -p ${sq(`${bundle}/rootfs/data`)}`);
    await ctx.registry.removeDocker(exportName);
    await must('runc spec', 'runc', ['spec', '--bundle', bundle]);
    const specFile = `${bundle}/config.json`;
    const spec = JSON.parse(readFileSync(specFile, 'utf8')) as { process: { terminal: boolean; args: string[] }; root: { readonly: boolean } };
    spec.process.terminal = false;
    // Its stdio must be its own /dev/null: CRIU cannot dump a descriptor of a file outside the container's mounts.
    const [shell, flag, script] = workloadCommand(w) as [string, string, string];
    spec.process.args = [shell, flag, `exec </dev/null >/dev/null 2>&1; ${script}`];
    spec.root.readonly = false;
    writeFileSync(specFile, JSON.stringify(spec));
    await runcQuiet(['run', '--detach', '--bundle', bundle, id]);
    await waitReady(`runc container ${id}`, () => run('runc', ['--root', root, 'exec', id, 'test', '-f', '/data/ready'], 30_000));
    const images = `${dir}/images`;
    const dump = await runcQuiet(['checkpoint', '--image-path', images, '--work-path', `${dir}/dump-work`, id]);
    const bytes = Number((await run('du', ['-sb', images])).stdout.split(/\s/)[0]);
    await run('runc', ['--root', root, 'delete', '--force', id]);
    const restore = await runcQuiet(['restore', '--detach', '--image-path', images, '--work-path', `${dir}/restore-work`, '--bundle', bundle, id]);
    const state = JSON.parse((await must('runc state', 'runc', ['--root', root, 'state', id])).stdout) as { status: string };
    const warning = state.status === 'running' ? undefined : `after runc restore the container is ${state.status}`;
    return { checkpointMs: dump.ms, restoreMs: restore.ms, bytes, ...(warning === undefined ? {} : { warning }) };
  } catch (err) {
    const stderr = await run('cat', [`${dir}/runc.err`]);
    return { error: `${(err as Error).message}${stderr.stdout.trim() ? ` (runc: ${lastLines(stderr.stdout, 2)})` : ''}` };
  } finally {
    await run('runc', ['--root', root, 'kill', id, 'KILL']);
    await run('runc', ['--root', root, 'delete', '--force', id]);
    await run('rm', ['-rf', dir]);
  }
}

/** Loads herd/busybox into Podman's root storage from the lab's saved image, unless it is already there. */
export async function ensurePodmanImage(ctx: BenchContext): Promise<void> {
  if ((await run('podman', ['image', 'exists', ctx.podmanImage])).code === 0) return;
  const loaded = await must('podman load', 'podman', ['load', '-i', `${ctx.layout.imagesDir}/busybox.image.tar`]);
  const ref = /Loaded image(?:\(s\))?:\s*(\S+)/.exec(loaded.stdout)?.[1] ?? ctx.podmanImage;
  ctx.podmanImage = ref;
  ctx.registry.podmanImage(ref);
}

/**
 * Podman (Debian's 4.3, root, runc as the OCI runtime: Debian's crun is built without CRIU):
 * `podman container checkpoint --export f.tar.zst` (stops the container), then
 * `podman container restore --import f.tar.zst --name <new>` on the same machine, then
 * `podman rm` of the source. Nothing crosses a network: there is no transfer phase.
 */
export async function podmanMigration(ctx: BenchContext, w: Workload, tag: string): Promise<Sample> {
  const name = ctx.registry.podmanName(`${NAME_PREFIX}${tag}`);
  const restoredName = ctx.registry.podmanName(`${name}-r`);
  const archive = ctx.registry.path(`${ctx.tmpDir}/${tag}.tar.zst`);
  const podman = ['--runtime', 'runc'];
  try {
    await must('podman run', 'podman', [...podman, 'run', '-d', '--name', name, '--network', 'none', '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=20000:20000', ctx.podmanImage, ...workloadCommand(w)]);
    await waitReady(`podman container ${name}`, () => run('podman', ['exec', name, 'test', '-f', '/data/ready'], 30_000));
    const pid = Number((await must('podman inspect', 'podman', ['inspect', '-f', '{{.State.Pid}}', name])).stdout.trim());
    const memory = readMemory(pid);
    const c = await must('podman container checkpoint --export', 'podman', [...podman, 'container', 'checkpoint', '--export', archive, name], 600_000);
    const r = await must('podman container restore --import', 'podman', [...podman, 'container', 'restore', '--import', archive, '--name', restoredName], 600_000);
    const rm = await must('podman rm of the source', 'podman', ['rm', '-f', name], 60_000);
    const warning = await verifyMoved((cmd) => run('podman', ['exec', restoredName, ...cmd]), w, true);
    return {
      checkpointMs: c.ms, restoreMs: r.ms, downtimeMs: c.ms + r.ms, totalMs: c.ms + r.ms + rm.ms, bytes: statSync(archive).size, memory,
      ...(warning === undefined ? {} : { warning }),
    };
  } catch (err) {
    return { error: (err as Error).message };
  } finally {
    await ctx.registry.removePodman(name);
    await ctx.registry.removePodman(restoredName);
    await run('rm', ['-f', archive]);
  }
}
