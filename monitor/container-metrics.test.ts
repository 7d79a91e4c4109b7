/** ContainerSampler: PCP's unit of cgroup.cpuacct.stat is checked against the cgroup file before it is trusted. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HerdError } from '../protocol/errors.ts';
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

/** A PCP client whose answers a test steers: down (throws as PcpClient does), or the container's CPU ticks. */
function steeredPcp(id: string) {
  const state = { down: false, has: true, ticks: 0, at: 1000, fetches: 0 };
  const client = {
    async fetch() {
      state.fetches++;
      if (state.down) throw new HerdError('PCP_UNAVAILABLE', 'pmproxy http://pcp fetch: no answer within 3000 ms');
      return { atSeconds: state.at, metrics: new Map(state.has ? [['cgroup.cpuacct.stat.user', new Map([[7, state.ticks]])], ['cgroup.cpuacct.stat.system', new Map([[7, 0]])]] : []) };
    },
    async instanceNames() {
      return new Map([[7, `/docker/${id}`]]);
    },
  } as unknown as PcpClient;
  return { state, client };
}

describe('ContainerSampler when PCP fails or lacks a value', () => {
  let root: string;
  const dir = () => join(root, 'cpuacct', 'docker', ID);
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'herd-sampler-'));
    mkdirSync(dir(), { recursive: true });
    mkdirSync(join(root, 'memory', 'docker', ID), { recursive: true });
    writeFileSync(join(root, 'memory', 'docker', ID, 'memory.usage_in_bytes'), '1000000\n');
  });
  afterEach(() => {
    vi.useRealTimers();
    rmSync(root, { recursive: true, force: true });
  });

  /** A sampler whose PCP is steered and whose clock (files' reads) moves with PCP's; `step` advances both and samples. */
  function setup() {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1000_000);
    const pcp = steeredPcp(ID);
    const sampler = new ContainerSampler(pcp.client, { hostId: 'h1', cgroup: { root, parent: 'docker', procRoot: join(root, 'proc') }, hostCpuCount: 4 }, new JsCgroupUsageReader());
    let usageNs = 0;
    const step = async (seconds: number, cores: number) => {
      pcp.state.at += seconds;
      pcp.state.ticks += cores * seconds * 100;
      usageNs += cores * seconds * 1e9;
      vi.setSystemTime(Date.now() + seconds * 1000);
      writeFileSync(join(dir(), 'cpuacct.stat'), `user ${pcp.state.ticks}\nsystem 0\n`);
      writeFileSync(join(dir(), 'cpuacct.usage'), `${usageNs}\n`);
      return (await sampler.sample([{ herdId: 'w', name: 'w', dockerId: ID, state: 'running' }]))[0]!;
    };
    return { pcp, sampler, step };
  }

  it('samples the containers without PCP when pmproxy is down (CPU from the cgroup files), and says why', async () => {
    const { pcp, sampler, step } = setup();
    await step(2, 1); // calibrates PCP's unit (ticks >= 200)
    await step(2, 1);
    expect((await step(2, 1)).cpuCores).toBe(1);
    pcp.state.down = true;
    const first = await step(2, 1);
    expect(first).toMatchObject({ state: 'running', memoryBytes: 1000000 });
    expect(sampler.pcpProblem).toMatch(/^PCP_UNAVAILABLE: .*no answer within 3000 ms/);
    expect((await step(2, 1)).cpuCores).toBe(1);
    pcp.state.down = false;
    // After two failures in a row one round goes without asking; the next asks and clears the problem.
    expect((await step(2, 1)).cpuCores).toBe(1);
    expect(sampler.pcpProblem).toBeDefined();
    await step(2, 1);
    expect(sampler.pcpProblem).toBeUndefined();
    sampler.close();
  });

  it('asks a failing pmproxy less and less often, so its timeouts do not slow every round', async () => {
    const { pcp, sampler, step } = setup();
    pcp.state.down = true;
    for (let i = 0; i < 40; i++) await step(2, 0);
    // Failures 1..6 are tried after 0, 1, 3, 7, 15, 31 skipped rounds: 6 fetches in 40 rounds (against 40).
    expect(pcp.state.fetches).toBe(6);
    sampler.close();
  });

  it('gives no CPU rate against the other source\'s old baseline when it switches between PCP and the files', async () => {
    const { pcp, sampler, step } = setup();
    pcp.state.has = false;
    await step(2, 0); // the files' baseline
    pcp.state.has = true;
    for (let i = 0; i < 3; i++) await step(2, 0);
    for (let i = 0; i < 300; i++) await step(2, 1); // ten minutes at one core, through PCP
    pcp.state.has = false; // PCP misses the container for a round: it idles now
    expect((await step(2, 0)).cpuCores).toBeUndefined(); // not the ten minutes' average against the files' baseline of ten minutes ago
    expect((await step(2, 0)).cpuCores).toBe(0);
    pcp.state.has = true;
    expect((await step(2, 0)).cpuCores).toBeUndefined(); // nor against PCP's baseline of two rounds ago
    expect((await step(2, 0.5)).cpuCores).toBe(0.5);
    sampler.close();
  });

  it('warns once per running container whose cgroup files cannot be read', async () => {
    const warnings: unknown[][] = [];
    const pcp = steeredPcp('e'.repeat(64));
    const sampler = new ContainerSampler(pcp.client, { hostId: 'h1', cgroup: { root, parent: 'wrong-parent', procRoot: join(root, 'proc') }, log: { warn: (...args: unknown[]) => warnings.push(args) } as never }, new JsCgroupUsageReader());
    const container = { herdId: 'w', name: 'web', dockerId: 'e'.repeat(64), state: 'running' };
    for (let i = 0; i < 3; i++) await sampler.sample([container]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.[0]).toMatchObject({ herdId: 'w', name: 'web', unreadable: expect.arrayContaining([join(root, 'memory', 'wrong-parent', 'e'.repeat(64), 'memory.usage_in_bytes')]) });
    sampler.close();
  });
});
