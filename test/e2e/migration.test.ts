/**
 * Live migration end to end on the lab, real Docker and CRIU: a counter that also
 * writes files moves A→B→A in each filesystem mode and keeps counting; four
 * migrations run at once; bad requests fail before anything is frozen.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { beforeAll, describe, expect, it } from 'vitest';
import type { LabLayout } from '../../control/lab/layout.ts';
import { COUNTER, count, execIn, leftovers, placements } from '../support/containers.ts';
import { HERD_BIN, REPO_ROOT, herd, herdOk } from '../support/herd-cli.ts';
import { dockerOf, readyLab, setFaults } from '../support/lab.ts';
import { runCommand } from '../../control/lab/shell.ts';
import { restoreTempDirs } from '../faults/fault-round.ts';
import { SshPool } from '../../compute/migration/ssh-pool.ts';


async function runOn(hostId: string, name: string, image = 'herd/busybox', cmd = COUNTER): Promise<void> {
  await herdOk(['run', '--host', hostId, '--name', name, image, ...cmd]);
}

async function waitForCount(layout: LabLayout, hostId: string, name: string, atLeast: number): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const n = await count(layout, hostId, name).catch(() => 0);
    if (n >= atLeast) return n;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${name} on ${hostId} never counted to ${atLeast}`);
}

async function expectRunsOnceOn(layout: LabLayout, name: string, hostId: string): Promise<void> {
  const where = await placements(layout, name);
  expect(where.map((p) => [p.hostId, p.running])).toEqual([[hostId, true]]);
}

/** test/support/mmap-writer.c, built static (it runs in herd/busybox); gcc and libc6-dev come with scripts/setup. */
function compiledMmapWriter(): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'herd-mmap-writer-'));
  try {
    execFileSync('gcc', ['-static', '-O2', '-o', join(dir, 'mmap-writer'), join(REPO_ROOT, 'test/support/mmap-writer.c')], { stdio: ['ignore', 'ignore', 'pipe'] });
    return readFileSync(join(dir, 'mmap-writer'));
  } catch (err) {
    throw new Error(`cannot build test/support/mmap-writer.c statically (gcc and libc6-dev come with scripts/setup): ${String((err as { stderr?: unknown }).stderr ?? err)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Writes one file into a running container's root (Docker's archive API, as `docker cp` does). */
async function putFile(docker: Docker, container: string, content: Buffer, name: string, mode: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'herd-put-'));
  try {
    writeFileSync(join(dir, name), content, { mode });
    await docker.getContainer(container).putArchive(execFileSync('tar', ['-c', '-C', dir, name]), { path: '/' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('live migration (lab, real Docker + CRIU)', () => {
  let layout: LabLayout;
  beforeAll(async () => {
    layout = await readyLab(2);
  });

  for (const fs of ['diff', 'full', 'none'] as const) {
    it(`moves a counter h1→h2→h1 with --fs ${fs}; it keeps counting and files follow the mode`, async () => {
      const name = `counter-${fs}`;
      await runOn('h1', name);
      await waitForCount(layout, 'h1', name, 10);
      // A file written before the move, and a file of the image deleted (a whiteout in the diff).
      await execIn(dockerOf(layout, 'h1'), name, ['sh', '-c', 'mkdir -p /data/deep/er && echo written-before > /data/deep/er/marker && rm /etc/group && rm -r /sbin && touch /data/bind-low-port']);
      // A file capability (setcap cap_net_bind_service+ep), set from the host (busybox has no setcap).
      const capability = '0100000200040000000000000000000000000000';
      const upperOf = async (hostId: string) => ((await dockerOf(layout, hostId).getContainer(name).inspect()).GraphDriver.Data as unknown as { UpperDir: string }).UpperDir;
      const xattr = (file: string, value?: string) => execFileSync('python3', ['-c', 'import os, sys\nif len(sys.argv) > 2: os.setxattr(sys.argv[1], "security.capability", bytes.fromhex(sys.argv[2]))\ntry: print(os.getxattr(sys.argv[1], "security.capability").hex())\nexcept OSError as e: print(e.strerror)', file, ...(value === undefined ? [] : [value])]).toString().trim();
      expect(xattr(`${await upperOf('h1')}/data/bind-low-port`, capability)).toBe(capability);
      const herdId = (JSON.parse(await herdOk(['containers', '--json'])) as { name: string; herdId: string }[]).find((c) => c.name === name)?.herdId;

      for (const [from, to] of [['h1', 'h2'], ['h2', 'h1']] as const) {
        const before = await count(layout, from, name);
        const result = await herd(['migrate', name, '--to', to, '--fs', fs, '--json']);
        expect(result.code, result.stderr).toBe(0);
        const timings = (JSON.parse(result.stdout) as { timings: { downtimeMs: number; checkpointBytes: number; filesystemBytes: number } }).timings;
        expect(timings.checkpointBytes).toBeGreaterThan(0);
        if (fs === 'none') expect(timings.filesystemBytes).toBe(0);
        else expect(timings.filesystemBytes).toBeGreaterThan(0);
        expect(result.stderr).toMatch(/checkpoint +finished[\s\S]*transfer +finished[\s\S]*restore +finished[\s\S]*done/);
        await expectRunsOnceOn(layout, name, to);
        // No restart: the count continues from where it was, it does not start over at 1.
        const after = await waitForCount(layout, to, name, before + 1);
        expect(after).toBeGreaterThan(before);
        const marker = await execIn(dockerOf(layout, to), name, ['sh', '-c', 'cat /data/deep/er/marker 2>/dev/null || echo absent; [ -e /etc/group ] && echo group-present || echo group-absent; [ -e /sbin ] && echo sbin-present || echo sbin-absent']);
        if (fs === 'none') {
          expect(marker).toContain('absent');
        } else {
          expect(marker).toContain('written-before');
          // Deleted in the container, present in the image: deleted on the target too (full mode whites them out).
          expect(marker).toContain('group-absent');
          expect(marker).toContain('sbin-absent');
          expect(xattr(`${await upperOf(to)}/data/bind-low-port`), 'the file capability came along').toBe(capability);
        }
      }
      // The hosts' retained lists: h2's without it follows its removal there.
      const listed = async () => (JSON.parse(await herdOk(['containers', '--json'])) as { name: string; herdId: string; hostId: string }[]).filter((c) => c.name === name);
      await expect.poll(listed, { timeout: 15_000 }).toEqual([expect.objectContaining({ name, herdId, hostId: 'h1' })]);
      expect(await leftovers(layout)).toEqual([]);
    });
  }

  it('diff mode copies the filesystem before the freeze and only the changes after it: a writer that creates, appends, deletes and rewrites a large file in place through the move finds its files as it left them', async () => {
    const name = 'precopy-writer';
    // 20 MiB written before the move (goes in the pre-copy, by blocks), then per step: a file, the three latest kept, a log
    // line, and 4 KiB of the large file rewritten in place (step j writes block j mod 5120 with its number, 512 times).
    const writer = [
      'sh',
      '-c',
      'mkdir -p /data/w && yes herd | head -c 20971520 > /data/big; i=0; while true; do if [ -e /data/stop ]; then sleep 1; continue; fi; i=$((i+1)); echo $i >> /data/w/log; echo $i > /data/w/f$i; rm -f /data/w/f$((i-3)); yes $(printf %07d $i) | head -c 4096 | dd of=/data/big bs=4096 seek=$((i % 5120)) conv=notrunc 2>/dev/null; echo $i > /data/w/last; done',
    ];
    /** What /data/big holds after step n. */
    const expectedBig = (n: number) => {
      const big = Buffer.from('herd\n'.repeat(20971520 / 5));
      for (let j = Math.max(1, n - 5119); j <= n; j++) big.write(`${String(j).padStart(7, '0')}\n`.repeat(512), (j % 5120) * 4096);
      return createHash('md5').update(big).digest('hex');
    };
    await runOn('h1', name, 'herd/busybox', writer);
    for (let i = 0; i < 100 && !/^\d+/.test(await execIn(dockerOf(layout, 'h1'), name, ['cat', '/data/w/last']).catch(() => '')); i++) await new Promise((r) => setTimeout(r, 200));
    await new Promise((r) => setTimeout(r, 1000));
    const result = await herd(['migrate', name, '--to', 'h2', '--json']);
    expect(result.code, result.stderr).toBe(0);
    const t = (JSON.parse(result.stdout) as { timings: { precopyBytes?: number; filesystemBytes: number; downtimeMs: number } }).timings;
    expect(result.stderr).toMatch(/precopy +finished[\s\S]*checkpoint +finished/);
    expect(t.precopyBytes).toBeGreaterThan(20 * 2 ** 20);
    // After the freeze only what the writer changed since went: the rewritten blocks of the big file, not the file.
    expect(t.filesystemBytes).toBeLessThan(5 * 2 ** 20);
    await expectRunsOnceOn(layout, name, 'h2');
    await new Promise((r) => setTimeout(r, 1000));
    await execIn(dockerOf(layout, 'h2'), name, ['touch', '/data/stop']);
    await new Promise((r) => setTimeout(r, 1500));
    const check = await execIn(dockerOf(layout, 'h2'), name, [
      'sh',
      '-c',
      [
        'n=$(cat /data/w/last)',
        'awk -v n="$n" \'$1 != NR { bad = 1 } END { print (bad || NR != n) ? "LOG-BAD " NR " " n : "LOG-OK " NR }\' /data/w/log',
        'echo "files $(ls /data/w | grep -c "^f")"',
        'for i in $((n - 2)) $((n - 1)) $n; do [ "$(cat /data/w/f$i 2>/dev/null)" = "$i" ] || echo "MISSING-OR-BAD f$i"; done',
        'echo "last $n"',
      ].join('; '),
    ]);
    expect(check).toMatch(/LOG-OK \d+/);
    expect(check).toContain('files 3');
    expect(check).not.toContain('MISSING-OR-BAD');
    const last = Number(/last (\d+)/.exec(check)?.[1]);
    expect((await execIn(dockerOf(layout, 'h2'), name, ['md5sum', '/data/big'])).split(' ')[0]).toBe(expectedBig(last));
    await herdOk(['rm', name, '--force']);
    expect(await leftovers(layout)).toEqual([]);
  });


  it('diff mode pre-copies an upper dir of many small files although its bytes are few (each entry costs time to archive and extract while frozen): they arrive intact', async () => {
    const name = 'precopy-small-files';
    // 6,000 files of a few bytes in 60 directories: ~40 KB of data, ~12 MB of tar, well over a second while frozen if not pre-copied.
    await runOn('h1', name, 'herd/busybox', ['sh', '-c', 'for d in $(seq 1 60); do mkdir -p /data/d$d; for f in $(seq 1 100); do echo $d-$f > /data/d$d/f$f; done; done; echo ready > /data/ready; sleep 100000']);
    for (let i = 0; i < 150 && (await execIn(dockerOf(layout, 'h1'), name, ['cat', '/data/ready']).catch(() => '')).trim() !== 'ready'; i++) await new Promise((r) => setTimeout(r, 200));
    const listing = ['sh', '-c', 'cd /data && find . | sort | md5sum && cat d*/f* | md5sum'];
    const before = await execIn(dockerOf(layout, 'h1'), name, listing);
    const result = await herd(['migrate', name, '--to', 'h2', '--json']);
    expect(result.code, result.stderr).toBe(0);
    const t = (JSON.parse(result.stdout) as { timings: { precopyBytes?: number; filesystemBytes: number } }).timings;
    expect(result.stderr).toMatch(/precopy +finished[\s\S]*checkpoint +finished/);
    expect(t.precopyBytes).toBeGreaterThan(6000 * 512);
    expect(t.filesystemBytes).toBeLessThan(6000 * 512);
    await expectRunsOnceOn(layout, name, 'h2');
    expect(await execIn(dockerOf(layout, 'h2'), name, listing)).toBe(before);
    await herdOk(['rm', name, '--force']);
    expect(await leftovers(layout)).toEqual([]);
  });
  it('diff mode carries files written only through shared maps (as SQLite writes its -shm, LMDB its data file), whose ctime such writes leave as it was, in the upper dir and in a named volume: a writer checks every page against its own count after each move', async () => {
    const name = 'precopy-mmap-writer';
    const writer = compiledMmapWriter();
    // Per tree (upper dir, volume): a file of 8 or 6 MiB (pre-copied by blocks) and one of 64 KiB (by tar), written through shared maps from before the move until the checks.
    const files = ['/data/big:8388608', '/data/db-shm:65536', '/vol/table:6291456', '/vol/table-shm:65536'];
    await herdOk(['run', '--host', 'h1', '--name', name, '--volume', 'herd-e2e-mmap:/vol', 'herd/busybox', 'sh', '-c', `until [ -e /ready ]; do sleep 0.1; done; exec /mmap-writer /data/stop /data/verdict ${files.join(' ')}`]);
    await putFile(dockerOf(layout, 'h1'), name, writer, 'mmap-writer', 0o755);
    await putFile(dockerOf(layout, 'h1'), name, Buffer.from('go'), 'ready', 0o644);
    const verdict = async (hostId: string) => {
      await execIn(dockerOf(layout, hostId), name, ['touch', '/data/stop']);
      let text = '';
      for (let i = 0; i < 100 && text === ''; i++, await new Promise((r) => setTimeout(r, 100))) text = (await execIn(dockerOf(layout, hostId), name, ['cat', '/data/verdict']).catch(() => '')).trim();
      await execIn(dockerOf(layout, hostId), name, ['rm', '-f', '/data/stop', '/data/verdict']);
      return text;
    };
    await new Promise((r) => setTimeout(r, 1500));
    expect(await verdict('h1')).toMatch(/^OK \d+$/);
    for (const [from, to] of [['h1', 'h2'], ['h2', 'h1']] as const) {
      await new Promise((r) => setTimeout(r, 1000));
      const result = await herd(['migrate', name, '--to', to, '--json']);
      expect(result.code, result.stderr).toBe(0);
      const t = (JSON.parse(result.stdout) as { timings: { precopyBytes?: number } }).timings;
      expect(t.precopyBytes, `${from}→${to}: the upper dir and the volume went before the freeze`).toBeGreaterThan(14 * 2 ** 20);
      await expectRunsOnceOn(layout, name, to);
      expect(await verdict(to), `${from}→${to}: the files as the writer left them at the freeze`).toMatch(/^OK \d+$/);
    }
    await herdOk(['rm', name, '--force']);
    await dockerOf(layout, 'h1').getVolume('herd-e2e-mmap').remove();
    expect(await leftovers(layout)).toEqual([]);
  });

  it('diff mode pre-copies an upper dir holding names that are not valid UTF-8 (Latin-1) and carries their changes after the freeze, byte for byte', async () => {
    const name = 'precopy-latin1-name';
    // A directory, a 6 MB file (by blocks, in the pre-copy) and a file appended to through the move, all named in Latin-1 (caf\xe9, gro\xdf, men\xfc).
    const latin1 = (path: string) => `"/data/$(printf '${path}')"`;
    const writer = `mkdir -p ${latin1('caf\\351')} && head -c 6000000 /dev/urandom > ${latin1('gro\\337')} && echo ready > /data/ready; i=0; while true; do i=$((i+1)); echo $i >> ${latin1('caf\\351/men\\374')}; sleep 0.05; done`;
    await runOn('h1', name, 'herd/busybox', ['sh', '-c', writer]);
    for (let i = 0; i < 100 && (await execIn(dockerOf(layout, 'h1'), name, ['cat', '/data/ready']).catch(() => '')).trim() !== 'ready'; i++) await new Promise((r) => setTimeout(r, 200));
    const names = ['sh', '-c', 'cd /data && find . | sort | od -c | md5sum'];
    const big = ['sh', '-c', `md5sum ${latin1('gro\\337')}`];
    const appended = ['sh', '-c', `cat ${latin1('caf\\351/men\\374')}`];
    const [namesBefore, bigBefore, countBefore] = [await execIn(dockerOf(layout, 'h1'), name, names), await execIn(dockerOf(layout, 'h1'), name, big), (await execIn(dockerOf(layout, 'h1'), name, appended)).trim().split('\n').length];
    const result = await herd(['migrate', name, '--to', 'h2', '--json']);
    expect(result.code, result.stderr).toBe(0);
    // Pre-copied (the 6 MB went while it ran), the appended file again after the freeze.
    const t = (JSON.parse(result.stdout) as { timings: { precopyBytes?: number; filesystemBytes: number } }).timings;
    expect(t.precopyBytes ?? 0).toBeGreaterThan(6_000_000);
    expect(t.filesystemBytes).toBeLessThan(1_000_000);
    await expectRunsOnceOn(layout, name, 'h2');
    expect(await execIn(dockerOf(layout, 'h2'), name, names)).toBe(namesBefore);
    expect(await execIn(dockerOf(layout, 'h2'), name, big)).toBe(bigBefore);
    // Every line the writer appended before the freeze is there, in order, and it goes on appending.
    const lines = async () => (await execIn(dockerOf(layout, 'h2'), name, appended)).trim().split('\n').map(Number);
    const after = await lines();
    expect(after.length).toBeGreaterThan(countBefore);
    expect(after).toEqual(after.map((_, i) => i + 1));
    await new Promise((r) => setTimeout(r, 500));
    expect((await lines()).length).toBeGreaterThan(after.length);
    await herdOk(['rm', name, '--force']);
    expect(await leftovers(layout)).toEqual([]);
  });

  it('restores directly from the received images (herd-runc) while Docker owns the container: ps, logs, inspect, stop work, it migrates again, nothing is left', async () => {
    const name = `direct-${Date.now().toString(36)}`;
    const hosts = JSON.parse(await herdOk(['hosts', '--json'])) as { hostId: string; restoreWith?: string }[];
    expect(hosts.filter((h) => h.hostId === 'h1' || h.hostId === 'h2').map((h) => h.restoreWith)).toEqual(['direct', 'direct']);
    await runOn('h1', name, 'herd/busybox', ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo "tick $i"; echo $i > /data/count; sleep 0.1; done']);
    await waitForCount(layout, 'h1', name, 5);
    const result = await herd(['migrate', name, '--to', 'h2', '--json']);
    expect(result.code, result.stderr).toBe(0);
    const docker = dockerOf(layout, 'h2');
    const copy = docker.getContainer(name);
    const inspected = await copy.inspect();
    expect(inspected.HostConfig.Runtime).toBe('herd-runc');
    expect(inspected.State.Running).toBe(true);
    expect((await docker.listContainers({ filters: { name: [name] } })).map((c) => c.State)).toEqual(['running']);
    const before = await waitForCount(layout, 'h2', name, 1);
    const after = await waitForCount(layout, 'h2', name, before + 3);
    expect(after).toBeGreaterThan(before);
    // docker logs: the lines from before the move (h1's log file did not move) are not expected; new ticks are.
    await new Promise((r) => setTimeout(r, 500));
    const logs = (await copy.logs({ stdout: true, tail: 5 })).toString('latin1');
    expect(logs).toMatch(/tick \d+/);
    // A second migration of the directly restored container, back to h1.
    const back = await herd(['migrate', name, '--to', 'h1', '--json']);
    expect(back.code, back.stderr).toBe(0);
    await expectRunsOnceOn(layout, name, 'h1');
    expect(await waitForCount(layout, 'h1', name, after + 1)).toBeGreaterThan(after);
    expect(await leftovers(layout)).toEqual([]);
    // containerd's unpacked copies of the checkpoint dir (a marker file each) are swept after the restores.
    for (let i = 0; i < 40 && restoreTempDirs().length > 0; i++) await new Promise((r) => setTimeout(r, 250));
    expect(restoreTempDirs()).toEqual([]);
    // Docker stops it like any container.
    await dockerOf(layout, 'h1').getContainer(name).stop({ t: 1 });
    expect((await dockerOf(layout, 'h1').getContainer(name).inspect()).State.Running).toBe(false);
    await herdOk(['rm', name, '--force']);
  });

  it('copies the memory before the freeze: 48 MB of random data held in a shell variable arrive intact (the process hashes it itself after each move), while frozen only the pages that changed move; direct and Docker restore', async () => {
    const name = `memory-${Date.now().toString(36)}`;
    // The variable's digest at the start (sum0); on request (/data/ask) the running shell hashes its memory again (sum).
    const program = [
      'x=$(head -c 36000000 /dev/urandom | base64 | tr -d "\\n")',
      'echo -n "$x" | md5sum > /data/sum0',
      'i=0; while true; do i=$((i+1)); echo $i > /data/count',
      'if [ -f /data/ask ]; then echo -n "$x" | md5sum > /data/sum.new; mv /data/sum.new /data/sum; rm /data/ask; fi',
      'sleep 0.1; done',
    ].join('\n');
    await runOn('h1', name, 'herd/busybox', ['sh', '-c', program]);
    await waitForCount(layout, 'h1', name, 5);
    const sumOf = async (hostId: string): Promise<string> => {
      const docker = dockerOf(layout, hostId);
      await execIn(docker, name, ['touch', '/data/ask']);
      for (let i = 0; i < 100; i++) {
        const sum = await execIn(docker, name, ['sh', '-c', '[ -f /data/ask ] || cat /data/sum']);
        if (/^[0-9a-f]{32}/.test(sum)) {
          await execIn(docker, name, ['rm', '/data/sum']);
          return sum.split(' ')[0] as string;
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`${name} on ${hostId} never hashed its memory`);
    };
    const original = (await execIn(dockerOf(layout, 'h1'), name, ['cat', '/data/sum0'])).split(' ')[0];
    expect(original).toMatch(/^[0-9a-f]{32}$/);
    expect(await sumOf('h1')).toBe(original);
    for (const [to, restoreWith] of [['h2', 'direct'], ['h1', 'docker']] as const) {
      const result = await herd(['migrate', name, '--to', to, '--restore-with', restoreWith, '--json']);
      expect(result.code, result.stderr).toBe(0);
      const { timings } = JSON.parse(result.stdout) as { timings: { precopyBytes?: number; checkpointBytes: number } };
      // The 48 MB went before the freeze; after it, the changed pages, the images' metadata and no zeros.
      expect(timings.precopyBytes ?? 0).toBeGreaterThan(48e6);
      expect(timings.checkpointBytes).toBeLessThan(16 * 2 ** 20);
      await expectRunsOnceOn(layout, name, to);
      expect(await sumOf(to)).toBe(original);
    }
    expect(await leftovers(layout)).toEqual([]);
    await herdOk(['rm', name, '--force']);
  });

  it("falls back to Docker's own restore (--restore-with docker): the copy runs under runc, keeps counting, migrates back, nothing is left", async () => {
    const name = `docker-restore-${Date.now().toString(36)}`;
    await runOn('h1', name);
    await waitForCount(layout, 'h1', name, 5);
    for (const [from, to] of [['h1', 'h2'], ['h2', 'h1']] as const) {
      const before = await count(layout, from, name);
      const result = await herd(['migrate', name, '--to', to, '--restore-with', 'docker', '--json']);
      expect(result.code, result.stderr).toBe(0);
      expect(JSON.parse(result.stdout)).toMatchObject({ restoreWith: 'docker' });
      await expectRunsOnceOn(layout, name, to);
      expect((await dockerOf(layout, to).getContainer(name).inspect()).HostConfig.Runtime).toBe('runc');
      expect(await waitForCount(layout, to, name, before + 1)).toBeGreaterThan(before);
    }
    expect(await leftovers(layout)).toEqual([]);
    for (let i = 0; i < 40 && restoreTempDirs().length > 0; i++) await new Promise((r) => setTimeout(r, 250));
    expect(restoreTempDirs()).toEqual([]);
    await herdOk(['rm', name, '--force']);
  });

  it("SSH pool against the lab's real sshd: sessions it refuses as one too many (OpenSSH's own reason code) go on other connections", async () => {
    // The pool assumes 12 sessions per connection; the lab's sshd allows 10 (its default), and
    // refuses the rest as OpenSSH 9.2 does (SSH_OPEN_CONNECT_FAILED, "open failed").
    const [h1, h2] = layout.hosts as [LabLayout['hosts'][number], LabLayout['hosts'][number]];
    const pool = new SshPool({ user: 'root', privateKeyPath: h1.sshKey, knownHostsPath: layout.knownHosts }, 12);
    try {
      // All 25 open at once (none ends before every one is open), then each runs to its end.
      const channels = await Promise.all(Array.from({ length: 25 }, () => pool.peer(h2.ip, 22).exec('herd-prune')));
      const outcomes = await Promise.all(
        channels.map(
          (channel) =>
            new Promise<{ code: number | null; stderr: string }>((resolve) => {
              let stderr = '';
              channel.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
              channel.resume();
              // OpenSSH sends the exit status when it reaps the command, which can be before it has
              // forwarded the last of its stderr: the outcome is whole only at 'close'.
              let code: number | null = null;
              channel.on('exit', (c: number | null) => (code = c));
              channel.on('close', () => resolve({ code, stderr }));
              channel.end(); // no target directory on stdin: the forced command refuses, as it must
            }),
        ),
      );
      // Each session reached the real forced command (bin/herd-ssh-command) on h2's sshd.
      for (const o of outcomes) expect(o).toEqual({ code: 126, stderr: expect.stringContaining('refused: no target directory') });
    } finally {
      pool.close();
    }
  });

  it("runs four migrations between two hosts at once, each pre-copying a filesystem: more SSH sessions to a host than sshd's default MaxSessions allows on one connection", async () => {
    const names = ['par-1', 'par-2', 'par-3', 'par-4'];
    const from = (i: number) => (i % 2 === 0 ? 'h1' : 'h2');
    const to = (i: number) => (i % 2 === 0 ? 'h2' : 'h1');
    await Promise.all(names.map((n, i) => runOn(from(i), n)));
    const sums = new Map<string, string>();
    for (const [i, n] of names.entries()) {
      await waitForCount(layout, from(i), n, 5);
      // Over preCopyFilesystemMinBytes and BLOCK_FILE_MIN_BYTES: archive, blocks, delta and pruner sessions, 6 per migration with the checkpoint's and the tree's.
      sums.set(n, (await execIn(dockerOf(layout, from(i)), n, ['sh', '-c', 'head -c 6000000 /dev/urandom > /data/big && md5sum /data/big'])).trim());
    }
    const results = await Promise.all(names.map((n, i) => herd(['migrate', n, '--to', to(i)])));
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    for (const [i, n] of names.entries()) {
      await expectRunsOnceOn(layout, n, to(i));
      expect(await waitForCount(layout, to(i), n, 6)).toBeGreaterThan(5);
      expect((await execIn(dockerOf(layout, to(i)), n, ['md5sum', '/data/big'])).trim()).toBe(sums.get(n));
    }
    expect(await leftovers(layout)).toEqual([]);
  });

  it('refuses a container that is already migrating', async () => {
    await runOn('h1', 'busy');
    await execIn(dockerOf(layout, 'h1'), 'busy', ['sh', '-c', 'head -c 8000000 /dev/urandom > /data/big']);
    // Two requests at once: whichever reaches the daemon second is refused; the container moves once.
    await setFaults(layout, 'h1', ['slow-transfer']); // 1 MiB/s: the first migration is surely still running
    const first = herd(['migrate', 'busy', '--to', 'h2']);
    await new Promise((r) => setTimeout(r, 300));
    const results = await Promise.all([first, herd(['migrate', 'busy', '--to', 'h2'])]);
    const ok = results.filter((r) => r.code === 0);
    const refused = results.filter((r) => r.code !== 0);
    const said = results.map((r) => `exit ${r.code}\n${r.stdout}\n${r.stderr}`).join('\n---\n');
    expect(ok, said).toHaveLength(1);
    expect(refused, said).toHaveLength(1);
    expect(refused[0]!.stderr).toMatch(/ALREADY_MIGRATING/);
    await setFaults(layout, 'h1', []);
    await expectRunsOnceOn(layout, 'busy', 'h2');
  });

  it('shows the transfer as a bar on a terminal (herd migrate under script(1)); in a pipe only the phase lines', async () => {
    await runOn('h1', 'shown');
    await execIn(dockerOf(layout, 'h1'), 'shown', ['sh', '-c', 'head -c 6000000 /dev/urandom > /data/big']);
    await setFaults(layout, 'h1', ['slow-transfer']); // 1 MiB/s: a few seconds of transfer, reported twice a second
    try {
      const tty = await runCommand('script', ['-qec', `${HERD_BIN} migrate shown --to h2`, '/dev/null'], { timeoutMs: 120_000 });
      expect(tty.code, tty.stdout).toBe(0);
      // The 6 MB file (over preCopyFilesystemMinBytes) goes in the pre-copy (diff mode), before the freeze: its bar, then the transfer's lines.
      expect(tty.stdout).toMatch(/\r\x1b\[2Kprecopy +\[[#.]{30}\] \d+\.\d \/ \d+\.\d MiB +\d+ %/);
      expect(tty.stdout).toMatch(/transfer +finished/);
      const piped = await herd(['migrate', 'shown', '--to', 'h1'], { timeoutMs: 120_000 });
      expect(piped.code, piped.stderr).toBe(0);
      expect(piped.stdout).toMatch(/transfer +finished/);
      expect(piped.stdout).not.toMatch(/[\r\x1b]|progress/);
    } finally {
      await setFaults(layout, 'h1', []);
    }
    await expectRunsOnceOn(layout, 'shown', 'h1');
  });

  it('refuses, before freezing, a container whose processes run as another user when root lacks CAP_SYS_RESOURCE (this machine)', async () => {
    const { hasSysResource } = await import('../../protocol/capabilities.ts');
    expect(hasSysResource(), 'this test expects a machine whose root lacks CAP_SYS_RESOURCE (see FACTS.md); on a normal host the migration would go ahead').toBe(false);
    await herdOk(['run', '--host', 'h1', '--name', 'nonroot', '--user', '1000:1000', 'herd/busybox', 'sleep', '3600']);
    const started = (await placements(layout, 'nonroot'))[0]?.startedAt;
    const r = await herd(['migrate', 'nonroot', '--to', 'h2']);
    expect(r.code, r.stdout).toBe(1);
    expect(r.stderr).toContain('[NOT_MIGRATABLE]');
    expect(r.stderr).toMatch(/non-root user \(sleep \(pid \d+, uid 1000\)\).*CAP_SYS_RESOURCE/);
    expect(r.stdout).not.toContain('checkpoint');
    // Never frozen, never restarted: the same process still runs on h1, and nothing is left on h2.
    expect(await placements(layout, 'nonroot')).toEqual([expect.objectContaining({ hostId: 'h1', running: true, startedAt: started })]);
    expect(await leftovers(layout)).toEqual([]);
    await herdOk(['rm', 'nonroot', '--force']);
  });

  it('refuses, before freezing, a container with state it would not carry: a bind mount outside the shared paths', async () => {
    const h1 = layout.hosts[0]!;
    const docker = (args: string[]) => runCommand('/usr/bin/docker', ['-H', `unix://${h1.dockerSocket}`, ...args], { timeoutMs: 60_000 });
    const created = await docker(['run', '-d', '--name', 'withbind', '--network', 'none', '--label', 'io.herd.id=withbind0000', '-v', '/tmp:/hostdir', 'herd/busybox', 'sleep', '3600']);
    expect(created.code, created.stderr).toBe(0);
    // Created outside Herd: wait until the retained container list has it (Docker's events reach the daemon).
    for (let i = 0; i < 75 && !(await herd(['containers', '--json'])).stdout.includes('"withbind"'); i++) await new Promise((r) => setTimeout(r, 200));
    const started = (await placements(layout, 'withbind'))[0]?.startedAt;
    const r = await herd(['migrate', 'withbind', '--to', 'h2']);
    expect(r.code, r.stdout).toBe(1);
    expect(r.stderr).toContain('[NOT_MIGRATABLE]');
    expect(r.stderr).toMatch(/bind mount \/tmp at \/hostdir: not under a path shared by all hosts/);
    expect(await placements(layout, 'withbind')).toEqual([expect.objectContaining({ hostId: 'h1', running: true, startedAt: started })]);
    expect(await leftovers(layout)).toEqual([]);
    await docker(['rm', '-f', 'withbind']);
  });

  it("carries a container's Docker settings (host name, entrypoint, capabilities, tmpfs and its contents, read-only root, init, ulimits, stop signal and timeout, health check, published ports, limits): docker inspect on the target says what it said on the source, and back; one sharing the host's IPC namespace is refused before freezing", async () => {
    const docker = (hostId: string, args: string[]) => runCommand('/usr/bin/docker', ['-H', `unix://${layout.hosts.find((h) => h.id === hostId)!.dockerSocket}`, ...args], { timeoutMs: 60_000 });
    const settings = ['--hostname', 'myhost', '--cap-drop', 'NET_RAW', '--cap-add', 'NET_BIND_SERVICE', '--security-opt', 'no-new-privileges', '--tmpfs', '/run/t:size=8m', '--read-only', '--init', '--ulimit', 'nofile=1024:4096', '--stop-signal', 'SIGUSR1', '--stop-timeout', '7', '--shm-size', '32m', '--add-host', 'db:10.0.0.5', '--dns', '10.0.0.2', '--pids-limit', '100', '--cpu-shares', '512', '--memory-reservation', '64m', '--health-cmd', 'true', '--health-interval', '2s', '-p', '8080:80', '--entrypoint', '/bin/sh'];
    const created = await docker('h1', ['run', '-d', '--name', 'settings', '--label', 'io.herd.id=settings0000', ...settings, 'herd/busybox', '-c', 'echo kept > /run/t/x; while :; do sleep 0.1; done']);
    expect(created.code, created.stderr).toBe(0);
    for (let i = 0; i < 75 && !(await herd(['containers', '--json'])).stdout.includes('"settings"'); i++) await new Promise((r) => setTimeout(r, 200));
    const format = '{{.Config.Hostname}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}|{{.HostConfig.CapAdd}}|{{.HostConfig.CapDrop}}|{{.HostConfig.SecurityOpt}}|{{json .HostConfig.Tmpfs}}|{{.HostConfig.ReadonlyRootfs}}|{{.HostConfig.Init}}|{{json .HostConfig.Ulimits}}|{{.Config.StopSignal}}|{{.Config.StopTimeout}}|{{.HostConfig.ShmSize}}|{{.HostConfig.ExtraHosts}}|{{.HostConfig.Dns}}|{{.HostConfig.PidsLimit}}|{{.HostConfig.CpuShares}}|{{.HostConfig.MemoryReservation}}|{{json .Config.Healthcheck}}|{{json .HostConfig.PortBindings}}';
    const inspect = async (hostId: string) => {
      const r = await docker(hostId, ['inspect', 'settings', '--format', format]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.trim();
    };
    const before = await inspect('h1');
    expect(before).toContain('myhost|["/bin/sh"]');
    await herdOk(['migrate', 'settings', '--to', 'h2']);
    await expectRunsOnceOn(layout, 'settings', 'h2');
    expect(await inspect('h2')).toBe(before);
    expect(await execIn(dockerOf(layout, 'h2'), 'settings', ['sh', '-c', 'cat /run/t/x; hostname; ulimit -n'])).toBe('kept\nmyhost\n1024\n');
    await herdOk(['migrate', 'settings', '--to', 'h1']);
    expect(await inspect('h1')).toBe(before);
    await docker('h1', ['rm', '-f', 'settings']);

    const hostIpc = await docker('h1', ['run', '-d', '--name', 'hostipc', '--label', 'io.herd.id=hostipc0000', '--ipc', 'host', 'herd/busybox', 'sleep', '3600']);
    expect(hostIpc.code, hostIpc.stderr).toBe(0);
    for (let i = 0; i < 75 && !(await herd(['containers', '--json'])).stdout.includes('"hostipc"'); i++) await new Promise((r) => setTimeout(r, 200));
    const r = await herd(['migrate', 'hostipc', '--to', 'h2']);
    expect(r.code, r.stdout).toBe(1);
    expect(r.stderr).toMatch(/\[NOT_MIGRATABLE\].*not carried to another host: .*the IPC namespace of host/);
    expect(await placements(layout, 'hostipc')).toEqual([expect.objectContaining({ hostId: 'h1', running: true })]);
    expect(await leftovers(layout)).toEqual([]);
    await docker('h1', ['rm', '-f', 'hostipc']);
  });

  it("keeps a container on the host's network there: Docker's record on the target says host, and it serves on the target host's address", async () => {
    await herdOk(['run', '--host', 'h1', '--name', 'hostnet', '--network', 'host', 'herd/busybox', 'httpd', '-f', '-p', '8099', '-h', '/']);
    const fetchOn = (hostId: string) => runCommand('ip', ['netns', 'exec', layout.hosts.find((h) => h.id === hostId)!.netns, 'wget', '-qO-', 'http://127.0.0.1:8099/etc/hostname'], { timeoutMs: 10_000 });
    for (let i = 0; i < 50 && (await fetchOn('h1')).code !== 0; i++) await new Promise((r) => setTimeout(r, 100));
    await herdOk(['migrate', 'hostnet', '--to', 'h2']);
    await expectRunsOnceOn(layout, 'hostnet', 'h2');
    const mode = await runCommand('/usr/bin/docker', ['-H', `unix://${layout.hosts.find((h) => h.id === 'h2')!.dockerSocket}`, 'inspect', 'hostnet', '--format', '{{.HostConfig.NetworkMode}}'], { timeoutMs: 30_000 });
    expect(mode.stdout.trim()).toBe('host');
    const served = await fetchOn('h2');
    expect(served.code, served.stderr).toBe(0);
    await herdOk(['rm', 'hostnet', '--force']);
    expect(await leftovers(layout)).toEqual([]);
  });

  it('carries a named volume (its contents) and the restart policy; the source is never restarted by Docker', async () => {
    const inspect = async (hostId: string, name: string) => dockerOf(layout, hostId).getContainer(name).inspect();
    await herdOk(['run', '--host', 'h1', '--name', 'withvol', '--volume', 'herd-e2e-vol:/vol', '--restart', 'always', 'herd/busybox', ...COUNTER]);
    await waitForCount(layout, 'h1', 'withvol', 5);
    // 6 MB: over preCopyFilesystemMinBytes, so the volume goes before the freeze, then its changes (the new sum file).
    await execIn(dockerOf(layout, 'h1'), 'withvol', ['sh', '-c', 'mkdir -p /vol/db && head -c 6000000 /dev/urandom > /vol/db/table && md5sum /vol/db/table > /vol/sum']);
    const sum = (await execIn(dockerOf(layout, 'h1'), 'withvol', ['cat', '/vol/sum'])).trim();
    for (const [from, to] of [['h1', 'h2'], ['h2', 'h1']] as const) {
      const before = await count(layout, from, 'withvol');
      // The way back goes lz4-compressed (herd migrate --compress): the receiver decompresses before extracting.
      const lz4 = to === 'h1';
      const r = await herd(['migrate', 'withvol', '--to', to, '--json', ...(lz4 ? ['--compress', 'lz4'] : [])]);
      expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
      const result = JSON.parse(r.stdout) as { compression?: string; timings: { precopyBytes?: number; checkpointBytes: number; filesystemBytes: number; wireBytes?: number } };
      const t = result.timings;
      expect(t.precopyBytes, r.stdout).toBeGreaterThan(6_000_000);
      expect(t.filesystemBytes, r.stdout).toBeLessThan(1_000_000);
      expect(result.compression).toBe(lz4 ? 'lz4' : 'none');
      const carried = t.checkpointBytes + t.filesystemBytes + (t.precopyBytes ?? 0);
      // Uncompressed, the network carried the streams as they are; with lz4, the memory images (mostly a shell's zero pages) shrink.
      if (lz4) expect(t.wireBytes, r.stdout).toBeLessThan(carried);
      else expect(t.wireBytes, r.stdout).toBe(carried);
      await expectRunsOnceOn(layout, 'withvol', to);
      expect(await waitForCount(layout, to, 'withvol', before + 1)).toBeGreaterThan(before);
      // The volume's contents came along, byte for byte; the source's copy of the volume is gone.
      expect((await execIn(dockerOf(layout, to), 'withvol', ['sh', '-c', 'md5sum /vol/db/table'])).trim()).toBe(sum.trim());
      expect((await inspect(to, 'withvol')).HostConfig.RestartPolicy?.Name).toBe('always');
      const volumes = await dockerOf(layout, from).listVolumes();
      expect((volumes.Volumes ?? []).map((v) => v.Name)).not.toContain('herd-e2e-vol');
    }
    expect(await leftovers(layout)).toEqual([]);
    await herdOk(['rm', 'withvol', '--force']);
    await dockerOf(layout, 'h1').getVolume('herd-e2e-vol').remove();
  });

  it('rejects bad requests with a clear error before freezing anything', async () => {
    await runOn('h1', 'steady');
    const started = (await placements(layout, 'steady'))[0]?.startedAt;
    const cases: [string[], string, RegExp][] = [
      [['migrate', 'no-such-container', '--to', 'h2'], 'UNKNOWN_CONTAINER', /no-such-container/],
      [['migrate', 'steady', '--to', 'h9'], 'UNKNOWN_HOST', /h9/],
      [['migrate', 'steady', '--to', 'h1'], 'CONFLICT', /already runs on h1/],
      [['migrate', 'steady', '--to', 'h2', '--fs', 'half'], '', /Allowed choices are diff, full, none/],
    ];
    for (const [args, code, message] of cases) {
      const r = await herd(args);
      expect(r.code, r.stdout).not.toBe(0);
      if (code !== '') expect(r.stderr).toContain(code);
      expect(r.stderr).toMatch(message);
    }
    // A paused container: Docker calls it running, but a restore would resume it.
    await dockerOf(layout, 'h1').getContainer('steady').pause();
    const paused = await herd(['migrate', 'steady', '--to', 'h2']);
    expect(paused.code, paused.stdout).not.toBe(0);
    expect(paused.stderr).toMatch(/CONFLICT.*"steady" is paused/);
    expect((await dockerOf(layout, 'h1').getContainer('steady').inspect()).State.Paused).toBe(true);
    await dockerOf(layout, 'h1').getContainer('steady').unpause();
    // An image missing on the target: known in advance, so the source is never frozen.
    await runOn('h1', 'bench-sb', 'herd/sysbench', ['sleep', '3600']);
    await dockerOf(layout, 'h2').getImage('herd/sysbench:latest').remove({ force: true });
    const missing = await herd(['migrate', 'bench-sb', '--to', 'h2']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('IMAGE_MISSING');
    await expectRunsOnceOn(layout, 'bench-sb', 'h1');
    const sb = await new Docker({ socketPath: layout.hosts[0]!.dockerSocket }).getImage('herd/sysbench:latest').get();
    await dockerOf(layout, 'h2').loadImage(sb).then((s) => new Promise((r) => { s.on('end', r); s.resume(); }));
    // A host that is offline.
    const h2 = layout.hosts[1]!;
    const { readFileSync } = await import('node:fs');
    process.kill(Number(readFileSync(h2.computePidFile, 'utf8')), 'SIGTERM');
    let offline = await herd(['migrate', 'steady', '--to', 'h2']);
    for (let i = 0; i < 20 && !offline.stderr.includes('HOST_OFFLINE'); i++) {
      await new Promise((r) => setTimeout(r, 250));
      offline = await herd(['migrate', 'steady', '--to', 'h2']);
    }
    expect(offline.stderr).toContain('HOST_OFFLINE');
    await herdOk(['lab', 'up']);
    expect((await placements(layout, 'steady'))[0]?.startedAt).toBe(started);
    expect(await leftovers(layout)).toEqual([]);
  });
});
