/**
 * The lab end to end: two hosts come up, each runs a container through its own Docker
 * daemon on its own disk, the hosts reach each other over the lab network and SSH, PCP
 * answers over REST, `up` twice is harmless, and `down` leaves nothing behind.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labLeftovers } from '../../control/lab/lab-down.ts';
import { mountSource } from '../../control/lab/host-disk.ts';
import type { LabHost, LabLayout } from '../../control/lab/layout.ts';
import { existsSync, rmSync } from 'node:fs';
import { execIn } from '../support/containers.ts';
import { MigrationStore } from '../../compute/migration/migration-store.ts';
import { runCommand } from '../../control/lab/shell.ts';
import { HERD_BIN, herd, herdOk } from '../support/herd-cli.ts';
import { dockerOf, freshLab, inHost } from '../support/lab.ts';

describe('lab (2 hosts, real Docker, sshd, PCP)', () => {
  let layout: LabLayout;
  beforeAll(async () => {
    layout = await freshLab(2);
  });
  afterAll(async () => {
    await herd(['lab', 'down'], { timeoutMs: 120_000 });
  });

  it('reports every part up', async () => {
    const status = JSON.parse(await herdOk(['lab', 'status', '--json'])) as { up: boolean; control: boolean; pcp: boolean; hosts: { id: string; netns: boolean; dockerd: boolean; sshd: boolean; compute: boolean; cpus: number[]; disk?: string }[] };
    expect(status.up).toBe(true);
    expect(status.control).toBe(true);
    expect(status.pcp).toBe(true);
    expect(status.hosts.map((h) => h.id)).toEqual(['h1', 'h2']);
    for (const h of status.hosts) expect(h).toMatchObject({ netns: true, dockerd: true, sshd: true, compute: true, disk: expect.stringMatching(/^loop\d+$/) });
    const hosts = JSON.parse(await herdOk(['hosts', '--json'])) as { hostId: string; state: string; criuVersion?: string }[];
    expect(hosts.map((h) => [h.hostId, h.state])).toEqual([['h1', 'online'], ['h2', 'online']]);
    expect(hosts[0]?.criuVersion).toMatch(/^4\./);
  });

  it('runs a container on each host through that host\'s own Docker daemon, confined to the host\'s CPU set', async () => {
    await herdOk(['run', '--host', 'h1', '--name', 'lab-a', 'herd/busybox', 'sleep', '3600']);
    await herdOk(['run', '--host', 'h2', '--name', 'lab-b', 'herd/sysbench', 'sleep', '3600']);
    const onH1 = await dockerOf(layout, 'h1').listContainers();
    const onH2 = await dockerOf(layout, 'h2').listContainers();
    expect(onH1.map((c) => c.Names[0])).toEqual(['/lab-a']);
    expect(onH2.map((c) => c.Names[0])).toEqual(['/lab-b']);
    for (const [hostId, name] of [['h1', 'lab-a'], ['h2', 'lab-b']] as const) {
      const host = layout.hosts.find((h) => h.id === hostId)!;
      const info = await dockerOf(layout, hostId).getContainer(name).inspect();
      const out = await execIn(dockerOf(layout, hostId), name, ['grep', 'Cpus_allowed_list', '/proc/1/status']);
      expect(info.State.Running).toBe(true);
      expect(out).toContain(`Cpus_allowed_list:\t${host.cpus.join(',')}`);
    }
    const list = JSON.parse(await herdOk(['containers', '--json'])) as { name: string; hostId: string }[];
    expect(list.map((c) => [c.name, c.hostId])).toEqual([['lab-a', 'h1'], ['lab-b', 'h2']]);
    const out = await execIn(dockerOf(layout, 'h2'), 'lab-b', ['sysbench', '--version']);
    expect(out).toContain('sysbench 1.');
  });

  it('hosts reach each other over the lab network and over SSH with verified host keys; the transfer key runs only the receiver, into directories the peer granted under its data roots', async () => {
    const ping = await inHost(layout, 'h1', 'busybox', ['ping', '-c', '1', '-W', '2', layout.hosts[1]!.ip]);
    expect(ping.code, ping.stderr).toBe(0);
    const [h1, h2] = layout.hosts as [LabHost, LabHost];
    const ssh = `ssh -i ${h2.sshKey} -o UserKnownHostsFile=${layout.knownHosts} -o StrictHostKeyChecking=yes -o BatchMode=yes root@${h1.ip}`;
    const shell = await inHost(layout, 'h2', 'sh', ['-c', `${ssh} 'id; cat /etc/shadow'`]);
    expect(shell.code).toBe(126);
    expect(shell.stderr).toMatch(/refused: this key runs only Herd's receivers, pruner and fence/);
    const into = `${h1.dockerDataRoot}/lab-test-receive`;
    const send = () => inHost(layout, 'h2', 'sh', ['-c', `(printf '%s\\n' ${into}; tar -c -C /etc hostname) | ${ssh} herd-receive`]);
    // Under h1's data root, but no migration to h1 was prepared with it.
    const refused = await send();
    expect(refused.code).toBe(126);
    expect(refused.stderr).toMatch(/is in no directory a migration to this host is prepared with \(no grant\)/);
    expect(existsSync(into)).toBe(false);
    // Granted to another source (h3): refused to h2.
    const migrations = new MigrationStore(h1.computeStateDir);
    migrations.grantTransfers('lab-test', 'h3', [into]);
    const notItsOwn = await send();
    expect(notItsOwn.code).toBe(126);
    expect(notItsOwn.stderr).toMatch(/is granted to a migration from h3, not from h2/);
    // Granted to h2, as h1's compute daemon grants a prepared migration's directories to its source.
    migrations.grantTransfers('lab-test', 'h2', [into]);
    try {
      const received = await send();
      expect(received.code, received.stderr).toBe(0);
      expect(existsSync(`${into}/hostname`)).toBe(true);
    } finally {
      migrations.revokeTransfers('lab-test');
      rmSync(into, { recursive: true, force: true });
    }
    const escape = await inHost(layout, 'h2', 'sh', ['-c', `(printf '%s\\n' /root/.ssh; tar -c -C /etc hostname) | ${ssh} herd-receive`]);
    expect(escape.code).toBe(126);
    expect(escape.stderr).toMatch(/not under this host's data roots/);
  });

  it('PCP answers over REST from inside a host', async () => {
    const r = await inHost(layout, 'h1', 'busybox', ['wget', '-q', '-O', '-', `http://${layout.gateway}:44322/pmapi/fetch?names=hinv.ncpu,kernel.all.load`]);
    expect(r.code, r.stderr).toBe(0);
    const body = JSON.parse(r.stdout) as { values: { name: string; instances: { value: number }[] }[] };
    const ncpu = body.values.find((v) => v.name === 'hinv.ncpu');
    expect(ncpu?.instances[0]?.value).toBeGreaterThan(0);
  });

  it('gives each host a disk of its own: its Docker data root is on its own loop device, and a disk-heavy container shows on its host only', async () => {
    const devices = layout.hosts.map((h) => mountSource(h.dockerDataRoot));
    for (const d of devices) expect(d).toMatch(/^\/dev\/loop\d+$/);
    expect(new Set(devices).size).toBe(layout.hosts.length);
    // Direct writes (never merged in a page cache) on h1's disk, for longer than the loop's 12 s window.
    await herdOk(['run', '--host', 'h1', '--name', 'lab-disk', 'herd/busybox', 'sh', '-c', 'while :; do dd if=/dev/zero of=/w bs=4k count=2000 oflag=direct 2>/dev/null; done']);
    type Host = { hostId: string; diskOpsPerSec?: number; diskActiveRatio?: number };
    type Container = { name: string; diskOpsPerSec?: number };
    let hosts: Host[] = [];
    let containers: Container[] = [];
    for (let i = 0; i < 40; i++) {
      const s = JSON.parse(await herdOk(['status', '--json'])) as { snapshot: { hosts: Host[]; containers: Container[] } };
      hosts = s.snapshot.hosts;
      containers = s.snapshot.containers;
      if ((hosts.find((h) => h.hostId === 'h1')?.diskOpsPerSec ?? 0) > 200 && (containers.find((c) => c.name === 'lab-disk')?.diskOpsPerSec ?? 0) > 200) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    await herdOk(['rm', 'lab-disk', '--force']);
    const h1 = hosts.find((h) => h.hostId === 'h1');
    const h2 = hosts.find((h) => h.hostId === 'h2');
    expect(h1?.diskOpsPerSec, JSON.stringify(hosts)).toBeGreaterThan(200);
    expect(h1?.diskActiveRatio).toBeGreaterThan(0);
    // h2's disk sees only its own Docker's occasional writes.
    expect(h2?.diskOpsPerSec ?? 0, JSON.stringify(hosts)).toBeLessThan((h1?.diskOpsPerSec ?? 0) / 10);
    expect(containers.find((c) => c.name === 'lab-disk')?.diskOpsPerSec, JSON.stringify(containers)).toBeGreaterThan(200);
  });

  it('herd status --watch refreshes: redrawn on a terminal, dated blocks in a pipe, one JSON object per refresh with --json', async () => {
    const json = await herdOk(['status', '--watch', '0.5', '--count', '2', '--json']);
    const lines = json.trim().split('\n').map((l) => JSON.parse(l) as { at: string; control: { nodeId: string }; snapshot: { hosts: unknown[] } });
    expect(lines.map((l) => [l.control.nodeId, l.snapshot.hosts.length])).toEqual([['lab', 2], ['lab', 2]]);
    const piped = await herdOk(['status', '--watch', '0.5', '--count', '2']);
    expect(piped.match(/^--- \d{4}-\d\d-\d\dT/gm)).toHaveLength(2);
    expect(piped).not.toContain('\x1b[');
    // A terminal (script(1) gives the command a pty): the screen is cleared and redrawn.
    const tty = await runCommand('script', ['-qec', `${HERD_BIN} status --watch 0.5 --count 2`, '/dev/null'], { timeoutMs: 60_000 });
    expect(tty.code, tty.stderr).toBe(0);
    expect(tty.stdout.split('\x1b[H\x1b[2J')).toHaveLength(3);
    expect(tty.stdout).toContain('(every 0.5 s; Ctrl-C to stop)');
  });

  it('"lab up" a second time is harmless', async () => {
    await herdOk(['lab', 'up', '--hosts', '2'], { timeoutMs: 300_000 });
    const list = JSON.parse(await herdOk(['containers', '--json'])) as { name: string; state: string }[];
    expect(list.map((c) => [c.name, c.state])).toEqual([['lab-a', 'running'], ['lab-b', 'running']]);
    const other = await herd(['lab', 'up', '--hosts', '3']);
    expect(other.code).toBe(1);
    expect(other.stderr).toContain('already up');
  });

  it('"lab down" leaves nothing behind', async () => {
    await herdOk(['lab', 'down'], { timeoutMs: 120_000 });
    expect(await labLeftovers()).toEqual([]);
  });
});
