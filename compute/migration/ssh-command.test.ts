/**
 * bin/herd-ssh-command, the forced command of Herd's transfer key, run as sshd runs it
 * (SSH_ORIGINAL_COMMAND, the receiver config): the receiver extracts only under the host's
 * data roots, and nothing else (a shell, another command) runs.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HERD_MIGRATION_LABEL } from '../runtime/container-runtime.ts';
import { FENCE_COMMAND, LZ4_OPTION, RECEIVE_COMMAND } from './ssh-transfer.ts';
import { MigrationStore } from './migration-store.ts';

const SCRIPT = resolve(import.meta.dirname, '../../bin/herd-ssh-command');
const dir = mkdtempSync(join(tmpdir(), 'herd-ssh-command-'));
const root = join(dir, 'data');
const outside = join(dir, 'outside');
mkdirSync(root);
mkdirSync(outside);
symlinkSync(outside, join(root, 'escape'));
const conf = join(dir, 'receiver.conf');
writeFileSync(conf, `root ${root}\nstate ${join(dir, 'state')}\ndocker /nonexistent.sock\n`);

/** A tar stream of one file `hello.txt`. */
const src = join(dir, 'src');
mkdirSync(src);
writeFileSync(join(src, 'hello.txt'), 'hi\n');
const tarball = spawnSync('tar', ['-c', '-C', src, 'hello.txt']).stdout;
const lz4Tarball = spawnSync('lz4', ['-1', '-q', '-c'], { input: tarball }).stdout;

function run(command: string | undefined, stdin: Buffer | string = '') {
  const r = spawnSync(SCRIPT, [conf], { input: stdin, env: { ...(command === undefined ? {} : { SSH_ORIGINAL_COMMAND: command }), PATH: process.env.PATH ?? '' } });
  return { code: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

describe('herd-ssh-command (the transfer key may run only the receiver and the fence)', () => {
  it('extracts into a directory under a data root, with and without xattrs, plain or lz4-compressed', () => {
    expect(lz4Tarball.length, 'lz4 must be installed (apt-get install lz4)').toBeGreaterThan(0);
    const commands = [RECEIVE_COMMAND.plain, RECEIVE_COMMAND.xattrs, RECEIVE_COMMAND.over].flatMap((c) => [c, `${c} ${LZ4_OPTION}`]);
    for (const [i, command] of commands.entries()) {
      const target = join(root, 'containers', String(i), 'checkpoints', 'cp');
      const r = run(command, Buffer.concat([Buffer.from(`${target}\n`), command.endsWith(LZ4_OPTION) ? lz4Tarball : tarball]));
      expect(r, command).toMatchObject({ code: 0 });
      expect(readFileSync(join(target, 'hello.txt'), 'utf8')).toBe('hi\n');
    }
  });

  it.each([
    ['outside every root', '/root/.ssh', /not under this host's data roots/],
    ['the root itself', `${root}`, /not under this host's data roots/],
    ['climbing out with ..', `${root}/../outside/x`, /\. or \.\. or empty segments/],
    ['through a symlink', `${root}/escape/x`, /not under this host's data roots/],
    ['relative', 'data/x', /must be absolute/],
  ])('refuses a target directory %s', (_what, target, message) => {
    const r = run(RECEIVE_COMMAND.plain, Buffer.concat([Buffer.from(`${target}\n`), tarball]));
    expect(r.code).toBe(126);
    expect(r.stderr).toMatch(message);
    expect(existsSync(join(outside, 'x'))).toBe(false);
  });

  it.each([[undefined], ['id'], ['sh -c id'], ['tar -x -C /root/.ssh'], [`${RECEIVE_COMMAND.plain} extra`], [`${RECEIVE_COMMAND.plain} ${LZ4_OPTION} --xattrs`], [`${RECEIVE_COMMAND.xattrs} ${LZ4_OPTION} extra`], ['herd-fence ../../etc'], ['herd-fence']])('refuses %s', (command) => {
    const r = run(command);
    expect(r.code).toBe(126);
    expect(r.stderr).toMatch(/refused/);
  });

  it.each([[RECEIVE_COMMAND.plain], [RECEIVE_COMMAND.over]])('%s: a symlink an earlier transfer left in the directory leads no later member out of it', (command) => {
    const target = join(root, 'containers', 'jail', command.includes('over') ? 'over' : 'plain');
    const planted = join(dir, `planted-${command.includes('over') ? 'over' : 'plain'}`);
    mkdirSync(join(planted, 'real'), { recursive: true });
    symlinkSync(outside, join(planted, 'esc')); // absolute, to a directory outside every root
    writeFileSync(join(planted, 'real', 'pwned'), 'x');
    // Session 1: a tree with the symlink (legitimate content of a container's upper dir).
    expect(run(command, Buffer.concat([Buffer.from(`${target}\n`), spawnSync('tar', ['-c', '-C', planted, 'esc']).stdout]))).toMatchObject({ code: 0 });
    // Session 2: a member through it, without the directory's own entry.
    const through = spawnSync('tar', ['-c', '-C', planted, '--transform', 's,^real/,esc/,', 'real/pwned']).stdout;
    run(command, Buffer.concat([Buffer.from(`${target}\n`), through]));
    expect(existsSync(join(outside, 'pwned'))).toBe(false);
  });

  it('fences with the host own state dir and Docker socket, never paths from the peer', () => {
    const r = run(FENCE_COMMAND('m-1'));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`no migration state dir ${join(dir, 'state')}/migrations`);
    expect(readFileSync(SCRIPT, 'utf8')).toContain(`label=${HERD_MIGRATION_LABEL}=`);
  });

  it("answers RUNNING, touching nothing, for a migration whose copy the host's daemon recorded running (the copy may have moved on since)", async () => {
    const store = new MigrationStore(join(dir, 'state'));
    const now = new Date().toISOString();
    const base = { role: 'target', herdId: 'c0ffee000001', container: 'c', sourceHost: 'h1', targetHost: 'h2', fsMode: 'diff', checkpointId: 'herd-x', startedAt: now, updatedAt: now } as const;
    await store.save({ ...base, migrationId: 'm-running', phase: 'running', targetDockerId: 'd1' });
    await store.save({ ...base, migrationId: 'm-prepared', phase: 'prepared', targetDockerId: 'd2' });
    expect(run(FENCE_COMMAND('m-running'))).toMatchObject({ code: 0, stdout: 'RUNNING\n' });
    expect(existsSync(store.fenceFile('m-running'))).toBe(false);
    // A copy not yet running is fenced: the marker first, then Docker (absent here).
    expect(run(FENCE_COMMAND('m-prepared')).code).toBe(4);
    expect(existsSync(store.fenceFile('m-prepared'))).toBe(true);
  });
});

describe("herd-ssh-command with 'grants required': only into the directories of a migration prepared here", () => {
  const base = mkdtempSync(join(tmpdir(), 'herd-ssh-grants-'));
  const data = join(base, 'data');
  const state = join(base, 'state');
  mkdirSync(join(data, 'containers'), { recursive: true });
  symlinkSync(join(data, 'containers'), join(data, 'linked'));
  const grantsConf = join(base, 'receiver.conf');
  writeFileSync(grantsConf, `root ${data}\nstate ${state}\ndocker /nonexistent.sock\ngrants required\n`);
  const store = new MigrationStore(state);
  /** A session of peer h1 (its key's line in authorized_keys names it), or of `peer`. */
  const runGranted = (command: string, target: string, config = grantsConf, peer = 'h1') => {
    const r = spawnSync(SCRIPT, [config, peer], { input: Buffer.concat([Buffer.from(`${target}\n`), tarball]), env: { SSH_ORIGINAL_COMMAND: command, PATH: process.env.PATH ?? '' } });
    return { code: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
  };
  const granted = join(data, 'containers', 'c1', 'upper');
  const images = join(data, 'containers', 'c1', 'checkpoints', 'herd-m-1');

  it('refuses every directory under the data root while no migration granted one', () => {
    const r = runGranted(RECEIVE_COMMAND.xattrs, granted);
    expect(r.code).toBe(126);
    expect(r.stderr).toMatch(/is in no directory a migration to this host is prepared with \(no grant\)/);
    expect(existsSync(join(granted, 'hello.txt'))).toBe(false);
  });

  it('receives into a granted directory and below it (also named through a symlink), and nowhere else under the root', () => {
    store.grantTransfers('m-1', 'h1', [granted, join(data, 'linked', 'c1', 'checkpoints', 'herd-m-1')]); // the second made later, by the receiver
    expect(runGranted(RECEIVE_COMMAND.xattrs, granted)).toMatchObject({ code: 0 });
    expect(readFileSync(join(granted, 'hello.txt'), 'utf8')).toBe('hi\n');
    expect(runGranted(RECEIVE_COMMAND.plain, join(granted, 'sub'))).toMatchObject({ code: 0 });
    expect(runGranted(RECEIVE_COMMAND.plain, images)).toMatchObject({ code: 0 });
    expect(runGranted(RECEIVE_COMMAND.plain, join(data, 'linked', 'c1', 'upper'))).toMatchObject({ code: 0 });
    for (const other of [join(data, 'containers', 'c1'), `${granted}2`, join(data, 'containers', 'c2', 'upper'), data]) {
      const r = runGranted(RECEIVE_COMMAND.plain, other);
      expect(r.code, other).toBe(126);
      expect(existsSync(join(other, 'hello.txt')), other).toBe(false);
    }
    // The pruner and the block and page tools check the same way.
    for (const command of ['herd-prune', 'herd-blocks', 'herd-pages']) expect(runGranted(command, join(data, 'containers', 'c2', 'upper')).stderr, command).toMatch(/no grant/);
  });

  it("refuses a peer other than the migration's source, into its directories and as its fence; a key line without a peer may use any grant", async () => {
    store.grantTransfers('m-5', 'h1', [join(data, 'containers', 'c6')]);
    const r = runGranted(RECEIVE_COMMAND.plain, join(data, 'containers', 'c6'), grantsConf, 'h3');
    expect(r.code).toBe(126);
    expect(r.stderr).toMatch(/is granted to a migration from h1, not from h3/);
    expect(existsSync(join(data, 'containers', 'c6', 'hello.txt'))).toBe(false);
    expect(runGranted(RECEIVE_COMMAND.plain, join(data, 'containers', 'c6'), grantsConf, '')).toMatchObject({ code: 0 });
    expect(runGranted(RECEIVE_COMMAND.plain, join(data, 'containers', 'c6'), grantsConf, '../h1').stderr).toMatch(/invalid peer host id/);
    const now = new Date().toISOString();
    await store.save({ role: 'target', migrationId: 'm-5', phase: 'prepared', herdId: 'c0ffee000001', container: 'c', sourceHost: 'h1', targetHost: 'h2', fsMode: 'diff', checkpointId: 'herd-m-5', startedAt: now, updatedAt: now });
    const fence = runGranted(FENCE_COMMAND('m-5'), '', grantsConf, 'h3');
    expect(fence.code).toBe(126);
    expect(fence.stderr).toMatch(/migration m-5 on this host has another source than h3/);
    expect(store.fenced('m-5')).toBe(false);
    expect(runGranted(FENCE_COMMAND('m-5'), '', grantsConf, 'h1').code).toBe(4); // its source fences: the marker, then Docker (absent here)
    expect(store.fenced('m-5')).toBe(true);
  });

  it('refuses again once the grant is revoked (the restore began) or the migration ended; a stale grant goes with the garbage', async () => {
    store.grantTransfers('m-2', 'h1', [join(data, 'containers', 'c3')]);
    expect(runGranted(RECEIVE_COMMAND.plain, join(data, 'containers', 'c3'))).toMatchObject({ code: 0 });
    store.revokeTransfers('m-2');
    expect(runGranted(RECEIVE_COMMAND.plain, join(data, 'containers', 'c3')).code).toBe(126);
    store.grantTransfers('m-3', 'h1', [join(data, 'containers', 'c4')]);
    await store.finish('target', 'm-3', { outcome: 'aborted' });
    expect(runGranted(RECEIVE_COMMAND.plain, join(data, 'containers', 'c4')).code).toBe(126);
    // m-1 has no prepared record here: the garbage collection takes its grant, once 10 minutes old.
    const now = new Date().toISOString();
    await store.save({ role: 'target', migrationId: 'm-4', phase: 'prepared', herdId: 'c0ffee000001', container: 'c', sourceHost: 'h1', targetHost: 'h2', fsMode: 'diff', checkpointId: 'herd-m-4', startedAt: now, updatedAt: now });
    store.grantTransfers('m-4', 'h1', [join(data, 'containers', 'c5')]);
    store.collectGarbage();
    expect(runGranted(RECEIVE_COMMAND.plain, granted)).toMatchObject({ code: 0 }); // 10 minutes' grace (a grant written by hand)
    store.collectGarbage(Date.now() + 11 * 60_000);
    expect(runGranted(RECEIVE_COMMAND.plain, granted).code).toBe(126);
    expect(runGranted(RECEIVE_COMMAND.plain, join(data, 'containers', 'c5'))).toMatchObject({ code: 0 });
  });

  it('refuses to run on a config that requires grants without a state dir, or says something else', () => {
    for (const [text, message] of [
      [`root ${data}\ngrants required\n`, /grants required but names no state dir/],
      [`root ${data}\nstate ${state}\ngrants maybe\n`, /grants must be 'required', not: maybe/],
    ] as const) {
      const bad = join(base, 'bad.conf');
      writeFileSync(bad, text);
      const r = runGranted(RECEIVE_COMMAND.plain, join(data, 'containers', 'c5'), bad);
      expect(r.code).toBe(126);
      expect(r.stderr).toMatch(message);
    }
  });
});
