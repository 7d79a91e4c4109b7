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
