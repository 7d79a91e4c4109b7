/** ContainerSampler: PCP's unit of cgroup.cpuacct.stat is checked against the cgroup file before it is trusted. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JsCgroupUsageReader } from './cgroup-reader.ts';
import { ContainerSampler } from './container-metrics.ts';
import type { PcpClient } from './pcp-client.ts';

const ID = 'c'.repeat(64);

describe('ContainerSampler CPU from PCP', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'herd-sampler-'));
    mkdirSync(join(root, 'cpuacct', 'docker', ID), { recursive: true });
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  /** One container burning one core: the file in ticks (100/s), PCP in `pcpPerSecond` units. */
  async function coresSeen(pcpPerSecond: number): Promise<Array<number | undefined>> {
    let t = 1000;
    const pcp = {
      async fetch() {
        return { atSeconds: t, metrics: new Map([['cgroup.cpuacct.stat.user', new Map([[7, t * pcpPerSecond]])], ['cgroup.cpuacct.stat.system', new Map([[7, 0]])]]) };
      },
      async instanceNames() {
        return new Map([[7, `/docker/${ID}`]]);
      },
    } as unknown as PcpClient;
    const sampler = new ContainerSampler(pcp, { hostId: 'h1', cgroup: { root, parent: 'docker', procRoot: join(root, 'proc') }, hostCpuCount: 4 }, new JsCgroupUsageReader());
    const seen: Array<number | undefined> = [];
    for (let i = 0; i < 4; i++) {
      t += 2;
      writeFileSync(join(root, 'cpuacct', 'docker', ID, 'cpuacct.stat'), `user ${t * 100}\nsystem 0\n`);
      writeFileSync(join(root, 'cpuacct', 'docker', ID, 'cpuacct.usage'), `${t * 1e9}\n`);
      seen.push((await sampler.sample([{ herdId: 'w', name: 'w', dockerId: ID, state: 'running' }]))[0]?.cpuCores);
    }
    sampler.close();
    return seen;
  }

  it('reads PCP values that are really USER_HZ ticks (PCP 6.0.3) as ticks', async () => {
    expect((await coresSeen(100)).slice(1)).toEqual([1, 1, 1]);
  });

  it('reads PCP values in milliseconds as milliseconds', async () => {
    expect((await coresSeen(1000)).slice(1)).toEqual([1, 1, 1]);
  });
});

describe('ContainerSampler limits', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'herd-sampler-'));
    mkdirSync(join(root, 'memory', 'docker', ID), { recursive: true });
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('reads limits when a container is first seen and again only after Docker reported a change (docker update)', async () => {
    const pcp = {
      async fetch() {
        return { atSeconds: Date.now() / 1000, metrics: new Map() };
      },
      async instanceNames() {
        return new Map();
      },
    } as unknown as PcpClient;
    const setLimit = (bytes: number) => writeFileSync(join(root, 'memory', 'docker', ID, 'memory.limit_in_bytes'), `${bytes}\n`);
    const sampler = new ContainerSampler(pcp, { hostId: 'h1', cgroup: { root, parent: 'docker', procRoot: join(root, 'proc') } }, new JsCgroupUsageReader());
    const container = { herdId: 'w', name: 'w', dockerId: ID, state: 'running', changedAtMs: Date.now() };
    const limitSeen = async () => (await sampler.sample([container]))[0]?.memoryLimitBytes;
    setLimit(1 << 20);
    expect(await limitSeen()).toBe(1 << 20);
    setLimit(2 << 20);
    expect(await limitSeen()).toBe(1 << 20); // no news from Docker: not read again
    await new Promise((r) => setTimeout(r, 5));
    container.changedAtMs = Date.now(); // the lister saw an `update` event
    expect(await limitSeen()).toBe(2 << 20);
    sampler.close();
  });
});
