/**
 * Host metrics from PCP: one fetch per sample covers everything. Counters (CPU time,
 * disk operations, disk active time, network bytes) become rates over the interval
 * between pmproxy's timestamps; levels (load, memory, PSI averages) are taken as they are.
 */
import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import type { HostMetrics } from '../protocol/messages.ts';
import { PROTOCOL_VERSION } from '../protocol/messages.ts';
import type { InstanceValues, PcpClient } from './pcp-client.ts';
import { readDiskCounters } from './disk-stats.ts';
import { RateTracker, sumRates } from './rates.ts';

/** Interfaces left out by default when the machine has no physical one: loopback, containers' veths, Docker's bridges. */
const VIRTUAL_INTERFACE = /^(lo$|veth|docker|br-)/;

const CPU_STATES = ['user', 'nice', 'sys', 'idle', 'wait.total', 'intr', 'steal'] as const;
const IDLE_STATES = new Set(['idle', 'wait.total']);

export const HOST_METRIC_NAMES = [
  ...CPU_STATES.map((s) => `kernel.percpu.cpu.${s}`),
  'hinv.ncpu',
  'kernel.all.load',
  'mem.physmem',
  'mem.util.used',
  'mem.util.available',
  'disk.all.total',
  'disk.all.read',
  'disk.all.write',
  'disk.all.avactive',
  'hinv.ndisk',
  'network.interface.in.bytes',
  'network.interface.out.bytes',
  'kernel.all.pressure.cpu.some.avg',
  'kernel.all.pressure.memory.some.avg',
  'kernel.all.pressure.io.some.avg',
] as const;

export interface HostSamplerOptions {
  hostId: string;
  /** Count only these CPUs (the host's cpuset); all CPUs when absent. */
  cpus?: readonly number[];
  /**
   * Count only these interfaces. When absent, the physical ones (with `<sysClassNet>/<name>/device`),
   * or when there is none, every one but lo, veth*, docker*, br-*: traffic between containers
   * and out of them crosses a veth, a bridge and the uplink, and would be counted on each.
   */
  interfaces?: readonly string[];
  /** Where the kernel lists network interfaces (/sys/class/net). */
  sysClassNet?: string;
  /** Where the sampler warns, once, about configured CPUs or interfaces that PCP does not know. */
  log?: Pick<Logger, 'warn'>;
  /**
   * Swap in and out: for an interface seen from the other end (the lab's root-side veth
   * of a host namespace receives what the host sends).
   */
  swapNetworkDirection?: boolean;
  /**
   * This host's own disks (names in /sys/block): disk figures count only these, read from
   * the kernel's counters (monitor/disk-stats.ts); every disk of the machine (PCP's
   * disk.all) when absent.
   */
  disks?: readonly string[];
  sysBlock?: string;
  /** The clock of the own disks' readings (seconds); Date.now by default. */
  nowSeconds?: () => number;
}

const single = (values: InstanceValues | undefined): number | undefined => (values === undefined ? undefined : values.get(null));

export class HostSampler {
  private readonly rates = new RateTracker();
  /** Counter keys read in the current sample: the others' baselines are dropped after it (gone CPUs, interfaces). */
  private readonly seen = new Set<string>();
  private lastAt: number | undefined;
  /** Whether network rates were computed before (from then on, an interface read for the first time counts 0). */
  private netBefore = false;
  /** Interface name → whether it is physical (has a device), for the default choice. */
  private readonly physical = new Map<string, boolean>();
  private cpusChecked = false;
  private interfacesChecked = false;

  constructor(private readonly client: PcpClient, private readonly options: HostSamplerOptions) {}

  /** A counter's rate; its key is kept for the next sample. */
  private rate(key: string, value: number, at: number): number | undefined {
    this.seen.add(key);
    return this.rates.rate(key, value, at);
  }

  async sample(): Promise<HostMetrics> {
    const f = await this.client.fetch(HOST_METRIC_NAMES);
    this.seen.clear();
    const out = await this.sampleOf(f);
    this.rates.retain((key) => this.seen.has(key));
    return out;
  }

  private async sampleOf(f: { atSeconds: number; metrics: Map<string, InstanceValues> }): Promise<HostMetrics> {
    const m = f.metrics;
    const at = f.atSeconds;
    const intervalSeconds = this.lastAt === undefined ? undefined : at - this.lastAt;
    this.lastAt = at;
    const out: HostMetrics = { v: PROTOCOL_VERSION, hostId: this.options.hostId, at: new Date(at * 1000).toISOString(), stale: false };
    if (intervalSeconds !== undefined && intervalSeconds > 0) out.intervalSeconds = round(intervalSeconds, 3);

    // CPU: per-CPU busy share = 1 - (idle + iowait) / all states, from the counters' rates.
    const cpuIds = [...(m.get('kernel.percpu.cpu.idle')?.keys() ?? [])].filter((i): i is number => i !== null);
    const cpuNames = await this.client.instanceNames('kernel.percpu.cpu.idle', cpuIds);
    const wanted = new Set(this.options.cpus ?? []);
    const perCpu: Record<string, number> = {};
    let busyAll = 0;
    let totalAll = 0;
    let complete = true;
    const counted: number[] = [];
    const known: number[] = [];
    for (const id of cpuIds) {
      const cpu = Number(/^cpu(\d+)$/.exec(cpuNames.get(id) ?? '')?.[1] ?? id);
      known.push(cpu);
      if (this.options.cpus !== undefined && !wanted.has(cpu)) continue;
      counted.push(cpu);
      let busy = 0;
      let total = 0;
      let ok = true;
      for (const state of CPU_STATES) {
        const value = m.get(`kernel.percpu.cpu.${state}`)?.get(id);
        if (value === undefined) continue;
        const r = this.rate(`cpu|${state}|${cpu}`, value, at);
        if (r === undefined) ok = false;
        else {
          total += r;
          if (!IDLE_STATES.has(state)) busy += r;
        }
      }
      if (ok && total > 0) {
        perCpu[String(cpu)] = clamp01(busy / total);
        busyAll += busy;
        totalAll += total;
      } else complete = false;
    }
    counted.sort((a, b) => a - b);
    if (counted.length > 0) out.cpus = counted;
    if (!this.cpusChecked && cpuIds.length > 0) {
      this.cpusChecked = true;
      const missing = this.options.cpus?.filter((c) => !known.includes(c)) ?? [];
      if (missing.length > 0) this.options.log?.warn({ hostId: this.options.hostId, missingCpus: missing, cpus: known.sort((a, b) => a - b) }, 'configured CPUs (hosts[].cpus) that this host does not have: they are not counted, and without any the host has no CPU figures');
    }
    if (complete && totalAll > 0) {
      out.cpuUtil = round(clamp01(busyAll / totalAll), 4);
      out.cpuUtilPerCpu = Object.fromEntries(Object.entries(perCpu).map(([k, v]) => [k, round(v, 4)]));
    }

    const load = m.get('kernel.all.load');
    if (load !== undefined) {
      setIf(out, 'load1', load.get(1), 2);
      setIf(out, 'load5', load.get(5), 2);
      setIf(out, 'load15', load.get(15), 2);
    }
    const kib = (v: number | undefined) => (v === undefined ? undefined : v * 1024);
    setIf(out, 'memoryUsedBytes', kib(single(m.get('mem.util.used'))));
    setIf(out, 'memoryAvailableBytes', kib(single(m.get('mem.util.available'))));
    setIf(out, 'memoryTotalBytes', kib(single(m.get('mem.physmem'))));

    const counter = (key: string, name: string) => {
      const v = single(m.get(name));
      return v === undefined ? undefined : this.rate(key, v, at);
    };
    if (this.options.disks === undefined) {
      setIf(out, 'diskOpsPerSec', counter('disk.total', 'disk.all.total'), 2);
      setIf(out, 'diskReadOpsPerSec', counter('disk.read', 'disk.all.read'), 2);
      setIf(out, 'diskWriteOpsPerSec', counter('disk.write', 'disk.all.write'), 2);
      // disk.all.avactive is ms of busy time summed over disks: divide by 1000 and the disk count.
      const activeMsPerSec = counter('disk.avactive', 'disk.all.avactive');
      const ndisk = Math.max(1, single(m.get('hinv.ndisk')) ?? 1);
      setIf(out, 'diskActiveRatio', activeMsPerSec === undefined ? undefined : activeMsPerSec / 1000 / ndisk, 4);
    } else this.ownDisks(out, this.options.disks);

    const net = await this.networkRates(m, at);
    setIf(out, 'netInBytesPerSec', net.in, 1);
    setIf(out, 'netOutBytesPerSec', net.out, 1);

    const psi = (name: string) => m.get(`kernel.all.pressure.${name}.some.avg`)?.get(10);
    const psiPct = (name: string) => {
      const v = psi(name);
      return v === undefined ? undefined : Math.min(100, v);
    };
    const pressure: NonNullable<HostMetrics['pressure']> = {};
    setIf(pressure, 'cpuSomeAvg10sPct', psiPct('cpu'), 2);
    setIf(pressure, 'memorySomeAvg10sPct', psiPct('memory'), 2);
    setIf(pressure, 'ioSomeAvg10sPct', psiPct('io'), 2);
    if (Object.keys(pressure).length > 0) out.pressure = pressure;
    return out;
  }

  /** Disk figures of the host's own disks, from the kernel's counters read now. */
  private ownDisks(out: HostMetrics, disks: readonly string[]): void {
    const c = readDiskCounters(disks, this.options.sysBlock);
    const now = this.options.nowSeconds?.() ?? Date.now() / 1000;
    const reads = this.rate('own.read', c.reads, now);
    const writes = this.rate('own.write', c.writes, now);
    setIf(out, 'diskOpsPerSec', reads === undefined || writes === undefined ? undefined : reads + writes, 2);
    setIf(out, 'diskReadOpsPerSec', reads, 2);
    setIf(out, 'diskWriteOpsPerSec', writes, 2);
    const activeMsPerSec = this.rate('own.active', c.activeMs, now);
    setIf(out, 'diskActiveRatio', activeMsPerSec === undefined ? undefined : clamp01(activeMsPerSec / 1000 / disks.length), 4);
  }

  private async networkRates(m: Map<string, InstanceValues>, at: number): Promise<{ in?: number; out?: number }> {
    const inBytes = m.get('network.interface.in.bytes');
    const outBytes = m.get('network.interface.out.bytes');
    if (inBytes === undefined || outBytes === undefined) return {};
    const names = await this.client.instanceNames('network.interface.in.bytes', [...inBytes.keys(), ...outBytes.keys()]);
    const present: string[] = [];
    for (const id of inBytes.keys()) {
      const name = id === null ? undefined : names.get(id);
      if (name !== undefined) present.push(name);
    }
    const counted = new Set(this.countedInterfaces(present));
    // After the first round, an interface read for the first time (just created) counts 0 for
    // this round rather than leave the host without a figure; from its second reading on, its rate.
    const rateOf = (key: string, value: number): number | undefined => {
      this.seen.add(key);
      const r = this.rates.observe(key, value, at);
      return r.kind === 'rate' ? r.perSecond : r.kind === 'first' && this.netBefore ? 0 : undefined;
    };
    const rx: Array<number | undefined> = [];
    const tx: Array<number | undefined> = [];
    for (const [id, value] of inBytes) {
      const name = id === null ? undefined : names.get(id);
      if (name === undefined || !counted.has(name)) continue;
      rx.push(rateOf(`net.in|${name}`, value));
      const o = outBytes.get(id);
      if (o !== undefined) tx.push(rateOf(`net.out|${name}`, o));
    }
    this.netBefore = true;
    const result: { in?: number; out?: number } = {};
    const a = sumRates(rx);
    const b = sumRates(tx);
    const [inRate, outRate] = this.options.swapNetworkDirection === true ? [b, a] : [a, b];
    if (inRate !== undefined) result.in = inRate;
    if (outRate !== undefined) result.out = outRate;
    return result;
  }

  /** The interfaces that count, of those PCP reports now (see HostSamplerOptions.interfaces). */
  private countedInterfaces(present: readonly string[]): readonly string[] {
    const configured = this.options.interfaces;
    if (configured !== undefined) {
      if (!this.interfacesChecked && present.length > 0) {
        this.interfacesChecked = true;
        const missing = configured.filter((n) => !present.includes(n));
        if (missing.length > 0) this.options.log?.warn({ hostId: this.options.hostId, missingInterfaces: missing, interfaces: [...present].sort() }, 'configured interfaces (hosts[].interfaces) that this host does not have: they are not counted, and without any the host has no network figures');
      }
      return configured;
    }
    const root = this.options.sysClassNet ?? '/sys/class/net';
    // Forget interfaces that are gone (veths come and go with containers).
    if (this.physical.size > present.length) {
      const now = new Set(present);
      for (const n of this.physical.keys()) if (!now.has(n)) this.physical.delete(n);
    }
    const physical = present.filter((n) => {
      let known = this.physical.get(n);
      if (known === undefined) {
        known = existsSync(`${root}/${n}/device`);
        this.physical.set(n, known);
      }
      return known;
    });
    return physical.length > 0 ? physical : present.filter((n) => !VIRTUAL_INTERFACE.test(n));
  }
}

function clamp01(x: number): number {
  return Math.min(1, Math.max(0, x));
}

export function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function setIf<T extends object, K extends keyof T>(target: T, key: K, value: number | undefined, digits?: number): void {
  if (value === undefined || !Number.isFinite(value)) return;
  (target as Record<K, number>)[key] = digits === undefined ? value : round(value, digits);
}
