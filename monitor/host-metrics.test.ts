/** HostSampler: which interfaces count, new interfaces, forgotten baselines, and warnings about configured CPUs and interfaces PCP does not know. */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HostSampler, type HostSamplerOptions } from './host-metrics.ts';
import type { PcpClient } from './pcp-client.ts';

/** A pmproxy whose interfaces (name → bytes in and out, per second) and CPUs a test sets per round; 5 s between rounds. */
function fakePcp() {
  const state = { round: 0, interfaces: new Map<string, number>(), cpus: [0, 1] };
  const totals = new Map<string, number>();
  const ids = new Map<string, number>();
  const idOf = (name: string) => {
    if (!ids.has(name)) ids.set(name, ids.size);
    return ids.get(name)!;
  };
  const client = {
    async fetch() {
      state.round++;
      const net = new Map<number | null, number>();
      for (const [name, perSecond] of state.interfaces) {
        const total = (totals.get(name) ?? 1_000_000) + perSecond * 5;
        totals.set(name, total);
        net.set(idOf(name), total);
      }
      const cpu = (share: number) => new Map<number | null, number>(state.cpus.map((c) => [c, state.round * 1000 * share]));
      return { atSeconds: 1000 + state.round * 5, metrics: new Map([['kernel.percpu.cpu.user', cpu(0.25)], ['kernel.percpu.cpu.idle', cpu(0.75)], ['network.interface.in.bytes', net], ['network.interface.out.bytes', new Map(net)]]) };
    },
    async instanceNames(metric: string) {
      if (metric.startsWith('kernel.percpu')) return new Map(state.cpus.map((c) => [c, `cpu${c}`]));
      return new Map([...ids].map(([name, id]) => [id, name]));
    },
  } as unknown as PcpClient;
  return { state, client };
}

describe('HostSampler network', () => {
  let sys: string;
  beforeEach(() => {
    sys = mkdtempSync(join(tmpdir(), 'herd-sysnet-'));
  });
  afterEach(() => rmSync(sys, { recursive: true, force: true }));
  const device = (...names: string[]) => names.forEach((n) => mkdirSync(join(sys, n, 'device'), { recursive: true }));
  const sampler = (client: PcpClient, options: Partial<HostSamplerOptions> = {}) => new HostSampler(client, { hostId: 'h1', sysClassNet: sys, ...options });

  it('counts only the physical interfaces by default: bridged container traffic is not counted on veth, docker0 and eth0 each', async () => {
    device('eth0');
    for (const n of ['lo', 'eth0', 'docker0', 'br-1a2b', 'veth9f', 'wg0']) mkdirSync(join(sys, n), { recursive: true });
    const pcp = fakePcp();
    pcp.state.interfaces = new Map([['lo', 1e6], ['eth0', 100], ['docker0', 100], ['br-1a2b', 100], ['veth9f', 100], ['wg0', 7]]);
    const s = sampler(pcp.client);
    await s.sample();
    expect(await s.sample()).toMatchObject({ netInBytesPerSec: 100, netOutBytesPerSec: 100 });
  });

  it('without a physical interface, counts all but lo, veth*, docker*, br-*', async () => {
    const pcp = fakePcp();
    pcp.state.interfaces = new Map([['lo', 1e6], ['eth0', 100], ['docker0', 100], ['br-1a2b', 100], ['veth9f', 100], ['wg0', 7]]);
    const s = sampler(pcp.client);
    await s.sample();
    expect((await s.sample()).netInBytesPerSec).toBe(107);
  });

  it('counts a new interface 0 in its first round instead of leaving the host without a figure', async () => {
    const pcp = fakePcp();
    pcp.state.interfaces = new Map([['eth0', 100]]);
    const s = sampler(pcp.client);
    expect((await s.sample()).netInBytesPerSec).toBeUndefined(); // the sampler's first round: no interval yet
    expect((await s.sample()).netInBytesPerSec).toBe(100);
    pcp.state.interfaces.set('eth1', 50);
    expect((await s.sample()).netInBytesPerSec).toBe(100);
    expect((await s.sample()).netInBytesPerSec).toBe(150);
  });

  it('forgets the baselines of interfaces that are gone (containers\' veths)', async () => {
    const pcp = fakePcp();
    const s = sampler(pcp.client, { interfaces: ['eth0', ...Array.from({ length: 50 }, (_, i) => `veth${i}`)] });
    for (let i = 0; i < 50; i++) {
      pcp.state.interfaces = new Map([['eth0', 1], [`veth${i}`, 1]]);
      await s.sample();
    }
    // Two CPUs × two states and eth0 and the last veth, in and out: not the 50 veths seen.
    expect((s as unknown as { rates: { size: number } }).rates.size).toBe(4 + 4);
  });
});

describe('HostSampler config checks', () => {
  it('warns once, after the first fetch, about configured CPUs and interfaces the host does not have', async () => {
    const warnings: Array<[Record<string, unknown>, string]> = [];
    const log = { warn: (fields: Record<string, unknown>, message: string) => warnings.push([fields, message]) };
    const pcp = fakePcp();
    pcp.state.interfaces = new Map([['eth0', 1]]);
    const s = new HostSampler(pcp.client, { hostId: 'h1', cpus: [1, 7], interfaces: ['eht0', 'eth0'], log: log as never });
    for (let i = 0; i < 3; i++) await s.sample();
    expect(warnings).toHaveLength(2);
    expect(warnings[0]?.[0]).toMatchObject({ hostId: 'h1', missingCpus: [7], cpus: [0, 1] });
    expect(warnings[1]?.[0]).toMatchObject({ hostId: 'h1', missingInterfaces: ['eht0'], interfaces: ['eth0'] });
  });

  it('says nothing when the config names what the host has', async () => {
    const warnings: unknown[] = [];
    const pcp = fakePcp();
    pcp.state.interfaces = new Map([['eth0', 1]]);
    const s = new HostSampler(pcp.client, { hostId: 'h1', cpus: [0], interfaces: ['eth0'], log: { warn: (...a: unknown[]) => warnings.push(a) } as never });
    await s.sample();
    await s.sample();
    expect(warnings).toEqual([]);
  });
});
