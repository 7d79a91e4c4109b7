/**
 * The migration state machine, table-driven, with a fake runtime and a fake peer
 * (testing/fake-cluster.ts): every phase a source can be interrupted in × what the target
 * did × how the link behaves → what the reconcilers make of it. The invariant checked in
 * every case: never two running copies, and the source resumes only when the target's copy
 * cannot run. The lab's fault-injection round (test/e2e/exactly-once.test.ts) checks the
 * same with real daemons, Docker and CRIU.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HERD_MIGRATION_LABEL } from '../runtime/container-runtime.ts';
import type { SourcePhase, SourceRecord, TargetRecord } from './migration-store.ts';
import { reconcileOnce } from './reconciler.ts';
import { SourceMigration } from './source-side.ts';
import { grantFile } from './transfer-grants.ts';
import { abortTarget, checkTarget, commitTarget, migrationStatus, prepareTarget, restoreTarget } from './target-side.ts';
import { FakeCluster, type LinkMode } from './testing/fake-cluster.ts';
import { withOperatorClaim } from './container-claims.ts';
import { HerdError } from '../../protocol/errors.ts';

const MID = 'm-20261126T120000-abcdef';
const CP = `herd-${MID}`;
const HERD_ID = 'c0ffee000001';

type TargetSetup = 'none' | 'prepared' | 'running' | 'crashed-restoring-running' | 'crashed-restoring-stopped';
type SourceContainer = 'running' | 'exited-with-checkpoint' | 'gone';

interface Case {
  name: string;
  phase: SourcePhase;
  source: SourceContainer;
  target: TargetSetup;
  link: LinkMode;
  fence?: 'real' | 'fails';
  /** Expected after the source's reconciler pass. */
  expect: { running: string[]; sourceOutcome: string };
}

async function setup(c: Case): Promise<FakeCluster> {
  const cluster = new FakeCluster(['h1', 'h2']);
  const src = cluster.runtime('h1');
  const tgt = cluster.runtime('h2');
  const now = new Date().toISOString();
  const sourceContainer =
    c.source === 'gone'
      ? { dockerId: 'gone00000000' }
      : src.add({ name: 'counter', herdId: HERD_ID, state: c.source === 'running' ? 'running' : 'exited', checkpoints: c.source === 'exited-with-checkpoint' ? [CP] : [] });
  const base = { migrationId: MID, herdId: HERD_ID, container: 'counter', sourceHost: 'h1', targetHost: 'h2', fsMode: 'diff' as const, checkpointId: CP, startedAt: now, updatedAt: now };
  const record: SourceRecord = { ...base, role: 'source', phase: c.phase, sourceDockerId: sourceContainer.dockerId };
  await cluster.ctx('h1').store.save(record);
  if (c.target !== 'none') {
    const copy = tgt.add({ name: 'counter', herdId: HERD_ID, state: c.target === 'running' || c.target === 'crashed-restoring-running' ? 'running' : 'created', labels: { [HERD_MIGRATION_LABEL]: MID } });
    const phase: TargetRecord['phase'] = c.target === 'prepared' ? 'prepared' : c.target === 'running' ? 'running' : 'restoring';
    await cluster.ctx('h2').store.save({ ...base, role: 'target', phase, targetDockerId: copy.dockerId, checkpointDir: `${tgt.root}/${copy.dockerId}/checkpoints/${CP}`, upperDir: `${tgt.root}/${copy.dockerId}/upper` });
  }
  cluster.links.set('h2', c.link);
  cluster.fences.set('h2', c.fence ?? 'real');
  return cluster;
}

const CASES: Case[] = [
  // Before the restore request: the target's copy cannot run, whatever the link does.
  { name: 'accepted, nothing frozen yet', phase: 'accepted', source: 'running', target: 'none', link: 'ok', expect: { running: ['h1'], sourceOutcome: 'rolled-back' } },
  { name: 'checkpointed, target prepared', phase: 'checkpointed', source: 'exited-with-checkpoint', target: 'prepared', link: 'ok', expect: { running: ['h1'], sourceOutcome: 'rolled-back' } },
  { name: 'transferring, target offline', phase: 'transferring', source: 'exited-with-checkpoint', target: 'prepared', link: 'offline', fence: 'fails', expect: { running: ['h1'], sourceOutcome: 'rolled-back' } },
  { name: 'transferring, replies lost', phase: 'transferring', source: 'exited-with-checkpoint', target: 'prepared', link: 'lost-replies', expect: { running: ['h1'], sourceOutcome: 'rolled-back' } },
  { name: 'checkpointing, the dump never finished (no checkpoint): restarted', phase: 'checkpointing', source: 'exited-with-checkpoint', target: 'prepared', link: 'ok', expect: { running: ['h1'], sourceOutcome: 'restarted' } },
  // Restore requested: in doubt until the target answers or is fenced.
  { name: 'restoring, the request never arrived', phase: 'restoring', source: 'exited-with-checkpoint', target: 'prepared', link: 'ok', expect: { running: ['h1'], sourceOutcome: 'rolled-back' } },
  { name: 'restoring, the target restored (reply lost)', phase: 'restoring', source: 'exited-with-checkpoint', target: 'running', link: 'ok', expect: { running: ['h2'], sourceOutcome: 'done' } },
  { name: 'restoring, target restored, its daemon unreachable: fenced → runs', phase: 'restoring', source: 'exited-with-checkpoint', target: 'running', link: 'offline', expect: { running: ['h2'], sourceOutcome: 'done' } },
  { name: 'restoring, target prepared, its daemon unreachable: fenced → removed', phase: 'restoring', source: 'exited-with-checkpoint', target: 'prepared', link: 'offline', expect: { running: ['h1'], sourceOutcome: 'rolled-back' } },
  { name: 'restoring, target unreachable and no fence: in doubt, frozen', phase: 'restoring', source: 'exited-with-checkpoint', target: 'running', link: 'offline', fence: 'fails', expect: { running: ['h2'], sourceOutcome: 'in-doubt' } },
  { name: 'restoring, target prepared, unreachable and no fence: in doubt, frozen (down, not twice)', phase: 'restoring', source: 'exited-with-checkpoint', target: 'prepared', link: 'offline', fence: 'fails', expect: { running: [], sourceOutcome: 'in-doubt' } },
  { name: 'restoring, abort replies lost: fenced', phase: 'restoring', source: 'exited-with-checkpoint', target: 'running', link: 'lost-replies', expect: { running: ['h2'], sourceOutcome: 'done' } },
  { name: 'restoring, target daemon died mid-restore, Docker finished it', phase: 'restoring', source: 'exited-with-checkpoint', target: 'crashed-restoring-running', link: 'ok', expect: { running: ['h2'], sourceOutcome: 'done' } },
  { name: 'restoring, target daemon died mid-restore, the copy never started', phase: 'restoring', source: 'exited-with-checkpoint', target: 'crashed-restoring-stopped', link: 'ok', expect: { running: ['h1'], sourceOutcome: 'rolled-back' } },
  // Restored: only forward.
  { name: 'restored, the source not yet removed', phase: 'restored', source: 'exited-with-checkpoint', target: 'running', link: 'ok', expect: { running: ['h2'], sourceOutcome: 'done' } },
  { name: 'restored, target unreachable', phase: 'restored', source: 'exited-with-checkpoint', target: 'running', link: 'offline', fence: 'fails', expect: { running: ['h2'], sourceOutcome: 'done' } },
  { name: 'rolling back after a confirmed abort', phase: 'rolling-back', source: 'exited-with-checkpoint', target: 'none', link: 'ok', expect: { running: ['h1'], sourceOutcome: 'rolled-back' } },
  { name: 'source container removed outside Herd', phase: 'checkpointed', source: 'gone', target: 'prepared', link: 'ok', expect: { running: [], sourceOutcome: 'lost' } },
];

describe('exactly once: interrupted migrations settle (fake runtime, fake peer)', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const cluster = await setup(c);
    if (c.name.startsWith('checkpointing, the dump never finished')) cluster.runtime('h1').containers.forEach((x) => x.checkpoints.clear());
    await reconcileOnce(cluster.ctx('h1'));
    expect(cluster.runningCopies(HERD_ID).sort()).toEqual(c.expect.running);
    const src = cluster.ctx('h1').store;
    const outcome = src.get('source', MID) !== undefined ? 'in-doubt' : src.tombstone('source', MID)?.outcome;
    expect(outcome).toBe(c.expect.sourceOutcome);
    // Settled: its final event says so, as a live migration's would (the control loop and CLIs follow them).
    const last = cluster.events.get('h1')?.filter((e) => e.migrationId === MID).at(-1);
    const terminal = last === undefined || (last.phase !== 'done' && last.phase !== 'failed') ? undefined : `${last.phase} ${last.error?.code ?? ''}`.trim();
    // A source container removed outside Herd meanwhile: CONFLICT, as the live migration says it.
    const expected = c.source === 'gone' ? 'failed CONFLICT' : { done: 'done', 'rolled-back': 'failed ROLLED_BACK', restarted: 'failed RESTORE_FAILED', 'in-doubt': undefined }[c.expect.sourceOutcome];
    expect(terminal).toBe(expected);
    // The link comes back; both reconcilers pass: everything ends, still exactly once.
    cluster.links.set('h2', 'ok');
    await reconcileOnce(cluster.ctx('h1'));
    await reconcileOnce(cluster.ctx('h2'));
    const running = cluster.runningCopies(HERD_ID);
    expect(running.length).toBeLessThanOrEqual(1);
    if (c.source !== 'gone') expect(running).toHaveLength(1);
    expect(cluster.ctx('h1').store.list()).toEqual([]);
    expect(cluster.ctx('h2').store.list()).toEqual([]);
    const sourceEnd = cluster.ctx('h1').store.tombstone('source', MID)?.outcome;
    const targetEnd = cluster.ctx('h2').store.tombstone('target', MID)?.outcome;
    if (sourceEnd === 'done') {
      expect(running).toEqual(['h2']);
      expect(targetEnd).toBe('committed');
    } else {
      expect(targetEnd === undefined || targetEnd === 'aborted').toBe(true);
      expect([...cluster.runtime('h2').containers.values()].filter((x) => x.herdId === HERD_ID)).toEqual([]);
    }
    // No checkpoint is left on the source's copy.
    for (const x of cluster.runtime('h1').containers.values()) expect([...x.checkpoints]).toEqual([]);
  });

  it('the reconciler removes images staged for a direct restore by a migration that ended, and keeps those of one in flight', async () => {
    const cluster = new FakeCluster(['h1', 'h2']);
    const rt = cluster.runtime('h2');
    const copy = rt.add({ name: 'counter', herdId: HERD_ID, state: 'running' });
    const ended = rt.stagedImagesPath(copy.dockerId, 'herd-m-ended');
    const inFlight = rt.stagedImagesPath(copy.dockerId, CP);
    for (const dir of [ended, inFlight]) {
      mkdirSync(dir, { recursive: true });
      writeFileSync(`${dir}/inventory.img`, 'x');
    }
    const now = new Date().toISOString();
    await cluster.ctx('h2').store.save({ role: 'target', phase: 'prepared', migrationId: MID, herdId: HERD_ID, container: 'counter', sourceHost: 'h1', targetHost: 'h2', fsMode: 'diff', checkpointId: CP, startedAt: now, updatedAt: now, targetDockerId: 'elsewhere000', checkpointDir: inFlight, restoreWith: 'direct' });
    await cluster.ctx('h2').locks.run(MID, async () => reconcileOnce(cluster.ctx('h2'))); // held: the record is not settled meanwhile
    expect(existsSync(ended)).toBe(false);
    expect(existsSync(inFlight)).toBe(true);
  });

  it('a source that cannot reach Docker decides nothing; the next pass settles it', async () => {
    const cluster = await setup({ name: '', phase: 'checkpointed', source: 'exited-with-checkpoint', target: 'prepared', link: 'ok', expect: { running: [], sourceOutcome: '' } });
    cluster.runtime('h1').down = true;
    await reconcileOnce(cluster.ctx('h1'));
    expect(cluster.ctx('h1').store.get('source', MID)?.phase).toBe('rolling-back');
    expect(cluster.runningCopies(HERD_ID)).toEqual([]);
    cluster.runtime('h1').down = false;
    await reconcileOnce(cluster.ctx('h1'));
    expect(cluster.runningCopies(HERD_ID)).toEqual(['h1']);
    expect(cluster.ctx('h1').store.tombstone('source', MID)?.outcome).toBe('rolled-back');
  });

  it('a migration that published done but could not remove its source is finished by the reconciler without a second done', async () => {
    const cluster = await setup({ name: '', phase: 'restoring', source: 'exited-with-checkpoint', target: 'running', link: 'ok', expect: { running: [], sourceOutcome: '' } });
    const ctx = cluster.ctx('h1');
    const record = ctx.store.get('source', MID) as SourceRecord;
    // The live migration's last step, with Docker refusing the removal.
    const migration = new SourceMigration(ctx, { migrationId: MID, container: 'counter', targetHost: 'h2', fsMode: 'diff' }) as unknown as { record: SourceRecord; finishForward(result: object): Promise<void> };
    migration.record = record;
    cluster.runtime('h1').down = true;
    await migration.finishForward({});
    expect(ctx.store.get('source', MID)).toMatchObject({ phase: 'restored', doneAnnounced: true });
    cluster.runtime('h1').down = false;
    const before = (cluster.events.get('h1') ?? []).length;
    await reconcileOnce(ctx);
    expect(ctx.store.tombstone('source', MID)?.outcome).toBe('done');
    expect(cluster.runningCopies(HERD_ID)).toEqual(['h2']);
    const published = (cluster.events.get('h1') ?? []).slice(before).filter((e) => e.migrationId === MID);
    expect(published.map((e) => `${e.phase} ${e.status}`)).toEqual(['cleanup started', 'cleanup finished']);
  });

  it('a restored migration that published nothing gets its done from the reconciler', async () => {
    const cluster = await setup({ name: '', phase: 'restored', source: 'exited-with-checkpoint', target: 'running', link: 'ok', expect: { running: [], sourceOutcome: '' } });
    await reconcileOnce(cluster.ctx('h1'));
    const published = (cluster.events.get('h1') ?? []).filter((e) => e.migrationId === MID);
    expect(published.filter((e) => e.phase === 'done')).toHaveLength(1);
  });

  it('a failed local restore restarts the container (state lost) and says so', async () => {
    const cluster = await setup({ name: '', phase: 'transferring', source: 'exited-with-checkpoint', target: 'prepared', link: 'ok', expect: { running: [], sourceOutcome: '' } });
    cluster.runtime('h1').restore = 'fail';
    await reconcileOnce(cluster.ctx('h1'));
    expect(cluster.runningCopies(HERD_ID)).toEqual(['h1']);
    expect(cluster.ctx('h1').store.tombstone('source', MID)?.outcome).toBe('restarted');
  });
});

describe('the source records a migration before anything can freeze', () => {
  it('a migration the target refuses leaves a "refused" tombstone with the error; the container runs on', async () => {
    const cluster = new FakeCluster(['h1', 'h2']);
    cluster.runtime('h1').add({ name: 'counter', herdId: HERD_ID, state: 'running' });
    cluster.runtime('h2').add({ name: 'counter', herdId: 'other0000001', state: 'running' });
    const ctx = cluster.ctx('h1');
    Object.assign(ctx, { ssh: { peer: () => ({ exec: () => Promise.reject(new Error('no sessions in this test')) }), connect: async () => undefined } });
    await expect(new SourceMigration(ctx, { migrationId: MID, container: 'counter', targetHost: 'h2', fsMode: 'diff' }).run()).rejects.toMatchObject({ code: 'CONFLICT' });
    expect(ctx.store.list()).toEqual([]);
    expect(ctx.store.tombstone('source', MID)).toMatchObject({ outcome: 'refused', error: { code: 'CONFLICT' }, detail: 'refused before anything was frozen' });
    expect(migrationStatus(ctx, MID)).toMatchObject({ role: 'source', state: 'refused', error: { code: 'CONFLICT', message: expect.stringContaining('already has a container named "counter"') } });
    expect(cluster.runningCopies(HERD_ID)).toEqual(['h1']);
  });

  it('a migration claimed but not yet recorded is in flight, not unknown', () => {
    const cluster = new FakeCluster(['h1', 'h2']);
    const ctx = cluster.ctx('h1');
    expect(migrationStatus(ctx, MID).state).toBe('unknown');
    ctx.inFlight.set(HERD_ID, MID);
    expect(migrationStatus(ctx, MID)).toMatchObject({ role: 'source', state: 'in-flight', phase: 'accepted' });
  });
});

describe('target handlers: idempotent per migration, late commands do nothing', () => {
  const spec = { herdId: HERD_ID, name: 'counter', image: 'busybox' };
  const prepare = (cluster: FakeCluster) => prepareTarget(cluster.ctx('h2'), { migrationId: MID, sourceHost: 'h1', spec, fsMode: 'none', checkpointId: CP });
  const giveImages = (cluster: FakeCluster, dockerId: string) => cluster.runtime('h2').containers.get(dockerId)!.checkpoints.add(CP);
  const grantOf = (cluster: FakeCluster) => {
    const file = grantFile(cluster.ctx('h2').store.dir, MID);
    return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n') : undefined;
  };

  it('prepare twice gives the same container; a prepare after an abort is refused', async () => {
    const cluster = new FakeCluster(['h1', 'h2']);
    const a = await prepare(cluster);
    const b = await prepare(cluster);
    expect(b).toEqual(a);
    // Its source may write into its images and upper dir with the transfer key while it is prepared (transfer-grants.ts).
    expect(grantOf(cluster)).toEqual(['source h1', a.checkpointDir, a.upperDir]);
    expect(await abortTarget(cluster.ctx('h2'), { migrationId: MID })).toEqual({ state: 'aborted' });
    expect(grantOf(cluster)).toBeUndefined();
    expect(cluster.runtime('h2').containers.size).toBe(0);
    await expect(prepare(cluster)).rejects.toThrow(/already ended .*aborted/);
    await expect(restoreTarget(cluster.ctx('h2'), { migrationId: MID })).rejects.toMatchObject({ code: 'RESTORE_FAILED' });
    expect(cluster.runtime('h2').containers.size).toBe(0);
  });

  it('direct restore: the copy runs under herd-runc, images land outside Docker\'s checkpoint dir, which only names them at restore; nothing stays', async () => {
    const cluster = new FakeCluster(['h1', 'h2']);
    Object.assign(cluster.ctx('h2'), { restorePath: 'direct' });
    const p = await prepare(cluster);
    const tgt = cluster.runtime('h2');
    expect(p.restoreWith).toBe('direct');
    expect(tgt.containers.get(p.targetDockerId)?.runtime).toBe('herd-runc');
    expect(p.checkpointDir).toBe(tgt.stagedImagesPath(p.targetDockerId, CP));
    writeFileSync(`${p.checkpointDir}/inventory.img`, 'images');
    giveImages(cluster, p.targetDockerId);
    await restoreTarget(cluster.ctx('h2'), { migrationId: MID });
    expect(readFileSync(`${tgt.checkpointPath(p.targetDockerId, CP)}/herd-images`, 'utf8')).toBe(p.checkpointDir);
    // The images go right after the reply, on the migration's lock (before a commit could run).
    expect(await cluster.ctx('h2').locks.idle(5000)).toBe(true);
    expect(existsSync(p.checkpointDir)).toBe(false);
    expect(cluster.runningCopies(HERD_ID)).toEqual(['h2']);
  });

  it('a direct restore asked of a host that restores through Docker is refused at prepare, leaving nothing', async () => {
    const cluster = new FakeCluster(['h1', 'h2']);
    await expect(prepareTarget(cluster.ctx('h2'), { migrationId: MID, sourceHost: 'h1', spec, fsMode: 'none', checkpointId: CP, restoreWith: 'direct' })).rejects.toMatchObject({ code: 'MISSING_DEPENDENCY', message: expect.stringContaining('host h2 restores through Docker') });
    expect(cluster.runtime('h2').containers.size).toBe(0);
    expect(cluster.ctx('h2').store.list()).toEqual([]);
    expect(cluster.ctx('h2').store.tombstone('target', MID)?.outcome).toBe('aborted');
  });

  it('restore twice runs once; abort of a running copy refuses and says running; commit ends it; abort after commit says committed', async () => {
    const cluster = new FakeCluster(['h1', 'h2']);
    const p = await prepare(cluster);
    giveImages(cluster, p.targetDockerId);
    expect(grantOf(cluster)).toHaveLength(3);
    const first = await restoreTarget(cluster.ctx('h2'), { migrationId: MID });
    expect(grantOf(cluster)).toBeUndefined(); // from the restore on, nothing more is written into the copy
    const again = await restoreTarget(cluster.ctx('h2'), { migrationId: MID });
    expect(again.restoreMs).toBe(first.restoreMs);
    expect(await abortTarget(cluster.ctx('h2'), { migrationId: MID })).toEqual({ state: 'running' });
    expect(cluster.runtime('h2').running()).toHaveLength(1);
    expect(await commitTarget(cluster.ctx('h2'), { migrationId: MID })).toEqual({ committed: true });
    expect(await commitTarget(cluster.ctx('h2'), { migrationId: MID })).toEqual({ committed: true });
    expect(await abortTarget(cluster.ctx('h2'), { migrationId: MID })).toEqual({ state: 'committed' });
    expect(cluster.runtime('h2').running()).toHaveLength(1);
    expect(cluster.ctx('h2').store.list()).toEqual([]);
  });

  it('a failed restore removes the copy before it answers (the answer is definite)', async () => {
    const cluster = new FakeCluster(['h1', 'h2']);
    const p = await prepare(cluster);
    giveImages(cluster, p.targetDockerId);
    cluster.runtime('h2').restore = 'fail';
    await expect(restoreTarget(cluster.ctx('h2'), { migrationId: MID })).rejects.toMatchObject({ code: 'RESTORE_FAILED' });
    expect(cluster.runtime('h2').containers.size).toBe(0);
    expect(cluster.ctx('h2').store.tombstone('target', MID)?.outcome).toBe('aborted');
  });

  it('a restore whose call failed although Docker ran it counts as restored', async () => {
    const cluster = new FakeCluster(['h1', 'h2']);
    const p = await prepare(cluster);
    giveImages(cluster, p.targetDockerId);
    cluster.runtime('h2').restore = 'fail-but-runs';
    await restoreTarget(cluster.ctx('h2'), { migrationId: MID });
    expect(cluster.ctx('h2').store.get('target', MID)?.phase).toBe('running');
  });

  it('a restore failing while Docker cannot say whether the copy runs answers IN_DOUBT, not a failure', async () => {
    const cluster = new FakeCluster(['h1', 'h2']);
    const p = await prepare(cluster);
    giveImages(cluster, p.targetDockerId);
    const rt = cluster.runtime('h2');
    const original = rt.startFromCheckpoint.bind(rt);
    rt.startFromCheckpoint = async (id, cp) => {
      rt.down = true;
      return original(id, cp);
    };
    await expect(restoreTarget(cluster.ctx('h2'), { migrationId: MID })).rejects.toMatchObject({ code: 'IN_DOUBT' });
    expect(cluster.ctx('h2').store.get('target', MID)?.phase).toBe('restoring');
  });

  it('a fence marker stops a restore that has not begun', async () => {
    const cluster = new FakeCluster(['h1', 'h2']);
    const p = await prepare(cluster);
    giveImages(cluster, p.targetDockerId);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(cluster.ctx('h2').store.fenceFile(MID), '');
    await expect(restoreTarget(cluster.ctx('h2'), { migrationId: MID })).rejects.toThrow(/fenced/);
    expect(cluster.runtime('h2').running()).toEqual([]);
  });

  it('concurrent abort and restore take turns: the abort sees the restore through and answers running', async () => {
    const cluster = new FakeCluster(['h1', 'h2']);
    const p = await prepare(cluster);
    giveImages(cluster, p.targetDockerId);
    const restore = restoreTarget(cluster.ctx('h2'), { migrationId: MID });
    const abort = abortTarget(cluster.ctx('h2'), { migrationId: MID });
    await restore;
    expect(await abort).toEqual({ state: 'running' });
  });
});

describe('one container, one thing at a time (a second migration or a stop would undo the first)', () => {
  const OTHER = 'm-20261126T130000-fedcba';
  const start = (cluster: FakeCluster, migrationId = OTHER) => new SourceMigration(cluster.ctx('h1'), { migrationId, container: 'counter', targetHost: 'h2', fsMode: 'diff' }).run();

  it('a migration is refused while an earlier one of the same container is recorded and unsettled here (a restarted daemon, a rollback still to finish)', async () => {
    const cluster = await setup({ name: '', phase: 'rolling-back', source: 'running', target: 'none', link: 'ok', expect: { running: [], sourceOutcome: '' } });
    await expect(start(cluster)).rejects.toMatchObject({ code: 'ALREADY_MIGRATING', message: expect.stringContaining(MID) });
    // Refused before recording anything: no tombstone of the second, the first still to settle.
    expect(cluster.ctx('h1').store.tombstone('source', OTHER)).toBeUndefined();
    await reconcileOnce(cluster.ctx('h1'));
    expect(cluster.ctx('h1').store.tombstone('source', MID)?.outcome).toBe('rolled-back');
    expect(cluster.runningCopies(HERD_ID)).toEqual(['h1']);
  });

  it('a host does not migrate away a copy it received until that migration committed', async () => {
    const cluster = await setup({ name: '', phase: 'restoring', source: 'exited-with-checkpoint', target: 'running', link: 'ok', expect: { running: [], sourceOutcome: '' } });
    const ctx = cluster.ctx('h2');
    await expect(new SourceMigration(ctx, { migrationId: OTHER, container: 'counter', targetHost: 'h1', fsMode: 'diff' }).run()).rejects.toMatchObject({ code: 'ALREADY_MIGRATING' });
  });

  it('a migration is refused while an operator command runs on the container, and the reverse', async () => {
    const cluster = new FakeCluster(['h1', 'h2']);
    cluster.runtime('h1').add({ name: 'counter', herdId: HERD_ID, state: 'running' });
    const ctx = cluster.ctx('h1');
    let release!: () => void;
    const stopping = withOperatorClaim(ctx, HERD_ID, 'counter', 'stopped', () => new Promise<void>((r) => (release = r)));
    await expect(start(cluster)).rejects.toMatchObject({ code: 'CONFLICT', message: expect.stringContaining('"counter" is being stopped') });
    await expect(withOperatorClaim(ctx, HERD_ID, 'counter', 'removed', async () => undefined)).rejects.toMatchObject({ code: 'CONFLICT' });
    release();
    await stopping;
    ctx.inFlight.set(HERD_ID, OTHER);
    await expect(withOperatorClaim(ctx, HERD_ID, 'counter', 'stopped', async () => undefined)).rejects.toMatchObject({ code: 'ALREADY_MIGRATING', message: expect.stringContaining(OTHER) });
  });
});

describe('a copy that started is the container', () => {
  it("the target's reconciler keeps a restored copy whose process exited after its source finished (it is not an interrupted restore's leftover)", async () => {
    const cluster = await setup({ name: '', phase: 'restoring', source: 'exited-with-checkpoint', target: 'crashed-restoring-running', link: 'ok', expect: { running: [], sourceOutcome: '' } });
    await reconcileOnce(cluster.ctx('h1')); // the target's daemon is down: its copy runs, the source rolls forward
    expect(cluster.ctx('h1').store.tombstone('source', MID)?.outcome).toBe('done');
    const copy = [...cluster.runtime('h2').containers.values()][0]!;
    copy.state = 'exited'; // the application ended before the target's daemon came back
    await reconcileOnce(cluster.ctx('h2'));
    expect(cluster.runtime('h2').containers.get(copy.dockerId)).toBeDefined();
    expect(cluster.ctx('h2').store.tombstone('target', MID)?.outcome).toBe('committed');
  });

  it('the fence answers running for a copy its host recorded running, even when it has moved on (no labelled container)', async () => {
    const cluster = await setup({ name: '', phase: 'restoring', source: 'exited-with-checkpoint', target: 'running', link: 'offline', expect: { running: [], sourceOutcome: '' } });
    for (const c of [...cluster.runtime('h2').containers.values()]) cluster.runtime('h2').containers.delete(c.dockerId);
    expect(await cluster.ctx('h1').fence('h2', MID)).toBe('running');
  });

  it('a target running a copy whose source rolled back settles it, so that the cluster check can see and repair the duplicate', async () => {
    const cluster = await setup({ name: '', phase: 'rolling-back', source: 'exited-with-checkpoint', target: 'running', link: 'ok', expect: { running: [], sourceOutcome: '' } });
    // The source settles as if its target had said aborted (a fault the protocol should never let through).
    const { rollBackSource } = await import('./source-settle.ts');
    await rollBackSource(cluster.ctx('h1'), cluster.ctx('h1').store.get('source', MID) as SourceRecord);
    expect(cluster.runningCopies(HERD_ID).sort()).toEqual(['h1', 'h2']);
    await reconcileOnce(cluster.ctx('h2'));
    expect(cluster.ctx('h2').store.list()).toEqual([]);
    expect(cluster.ctx('h2').store.tombstone('target', MID)).toMatchObject({ outcome: 'committed', detail: expect.stringContaining('duplicate') });
  });

  it('prepare records the volumes Docker creates with the copy before it creates it', async () => {
    const cluster = new FakeCluster(['h1', 'h2']);
    const ctx = cluster.ctx('h2');
    const rt = cluster.runtime('h2');
    rt.create = async () => {
      expect(ctx.store.get('target', MID)?.volumes).toEqual(['data']);
      throw new HerdError('DOCKER_FAILED', 'the daemon dies here (fake)');
    };
    await expect(prepareTarget(ctx, { migrationId: MID, sourceHost: 'h1', spec: { herdId: HERD_ID, name: 'counter', image: 'busybox', volumes: [{ name: 'data', target: '/data' }] }, fsMode: 'diff', checkpointId: CP })).rejects.toMatchObject({ code: 'DOCKER_FAILED' });
  });
});

describe('a peer drives only its own migrations, with what a migration carries', () => {
  const spec = { herdId: HERD_ID, name: 'counter', image: 'busybox' };
  const H1 = 'herd-compute-h1';
  const H3 = 'herd-compute-h3';

  it('prepare, restore, abort and commit from a compute host that is not the source are refused; the source, control and operators pass', async () => {
    const cluster = new FakeCluster(['h1', 'h2']);
    const ctx = cluster.ctx('h2');
    await expect(prepareTarget(ctx, { migrationId: MID, sourceHost: 'h1', spec, fsMode: 'none', checkpointId: CP }, H3)).rejects.toMatchObject({ code: 'NOT_AUTHORIZED' });
    // Naming itself the source does not help once the migration is recorded with another.
    const p = await prepareTarget(ctx, { migrationId: MID, sourceHost: 'h1', spec, fsMode: 'none', checkpointId: CP }, H1);
    await expect(prepareTarget(ctx, { migrationId: MID, sourceHost: 'h3', spec, fsMode: 'none', checkpointId: CP }, H3)).rejects.toMatchObject({ code: 'NOT_AUTHORIZED' });
    cluster.runtime('h2').containers.get(p.targetDockerId)!.checkpoints.add(CP);
    for (const call of [() => restoreTarget(ctx, { migrationId: MID }, H3), () => abortTarget(ctx, { migrationId: MID }, H3), () => commitTarget(ctx, { migrationId: MID }, H3)]) {
      await expect(call()).rejects.toMatchObject({ code: 'NOT_AUTHORIZED', message: expect.stringContaining('has source h1') });
    }
    expect(ctx.store.get('target', MID)?.phase).toBe('prepared');
    await restoreTarget(ctx, { migrationId: MID }, H1);
    await commitTarget(ctx, { migrationId: MID }, 'operator-herd-cli-vm'); // an operator (or a control daemon) may settle any
    expect(cluster.runningCopies(HERD_ID)).toEqual(['h2']);
  });

  it('a container whose binds lie outside the target host\'s shared paths is refused at check and prepare, before anything is created', async () => {
    const cluster = new FakeCluster(['h1', 'h2']);
    const ctx = cluster.ctx('h2');
    Object.assign(ctx, { sharedPaths: ['/srv/shared'] });
    const evil = { ...spec, binds: [{ source: '/', target: '/host' }] };
    await expect(checkTarget(ctx, { migrationId: MID, spec: evil, requiredBytes: 0 })).rejects.toMatchObject({ code: 'NOT_MIGRATABLE', message: expect.stringContaining('bind mount / at /host') });
    await expect(prepareTarget(ctx, { migrationId: MID, sourceHost: 'h1', spec: { ...spec, binds: [{ source: '/srv/shared/../../etc', target: '/e' }] }, fsMode: 'none', checkpointId: CP }, H1)).rejects.toMatchObject({ code: 'NOT_MIGRATABLE' });
    expect(cluster.runtime('h2').containers.size).toBe(0);
    await prepareTarget(ctx, { migrationId: MID, sourceHost: 'h1', spec: { ...spec, binds: [{ source: '/srv/shared/data', target: '/data' }] }, fsMode: 'none', checkpointId: CP }, H1);
    expect(cluster.runtime('h2').containers.size).toBe(1);
  });

  it('a container that adds a capability reaching beyond it, or loosens its security profile, is refused by the target whoever asks', async () => {
    const cluster = new FakeCluster(['h1', 'h2']);
    const ctx = cluster.ctx('h2');
    await expect(checkTarget(ctx, { migrationId: MID, spec: { ...spec, capAdd: ['SYS_ADMIN'] }, requiredBytes: 0 })).rejects.toMatchObject({ code: 'NOT_MIGRATABLE', message: expect.stringContaining('adds capabilities SYS_ADMIN') });
    await expect(prepareTarget(ctx, { migrationId: MID, sourceHost: 'h1', spec: { ...spec, securityOpt: ['seccomp=unconfined'] }, fsMode: 'none', checkpointId: CP }, H1)).rejects.toMatchObject({ code: 'NOT_MIGRATABLE', message: expect.stringContaining('security options seccomp=unconfined') });
    expect(cluster.runtime('h2').containers.size).toBe(0);
    await prepareTarget(ctx, { migrationId: MID, sourceHost: 'h1', spec: { ...spec, capAdd: ['NET_BIND_SERVICE'], securityOpt: ['no-new-privileges'] }, fsMode: 'none', checkpointId: CP }, H1);
    expect(cluster.runtime('h2').containers.size).toBe(1);
  });
});
