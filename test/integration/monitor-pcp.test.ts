/**
 * The monitor's samplers against the REAL pmcd/pmproxy of this machine (127.0.0.1:44322).
 * pmcd/pmproxy are started if they are not running, and then stopped again; a service
 * that was already running is left alone. The container sampler is checked on a real
 * cgroup that the test creates and puts a CPU-burning process into: PCP's cgroup PMDA
 * sees it like a Docker container's cgroup (same layout: <controller>/<parent>/<id>).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostMetricsSchema, containerMetricsSchema } from '../../protocol/messages.ts';
import { createCgroupUsageReader } from '../../monitor/cgroup-reader.ts';
import { ContainerSampler } from '../../monitor/container-metrics.ts';
import { HostSampler } from '../../monitor/host-metrics.ts';
import { PcpClient } from '../../monitor/pcp-client.ts';

const PMPROXY = 'http://127.0.0.1:44322';
const CGROUP_ROOT = '/sys/fs/cgroup';
const CONTROLLERS = ['cpu', 'cpuacct', 'memory', 'pids', 'blkio'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function answers(): Promise<boolean> {
  try {
    const res = await fetch(`${PMPROXY}/pmapi/fetch?names=hinv.ncpu`, { signal: AbortSignal.timeout(2000) });
    return res.ok;
  } catch {
    return false;
  }
}

const running = (name: string): boolean => {
  try {
    execFileSync('pgrep', ['-x', name], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

describe('monitor against the real pmcd/pmproxy', () => {
  const startedByUs: string[] = [];

  beforeAll(async () => {
    if (!existsSync('/usr/lib/pcp/bin/pmcd')) throw new Error('PCP not installed: run scripts/setup');
    for (const service of ['pmcd', 'pmproxy']) {
      if (running(service)) continue;
      execFileSync(`/etc/init.d/${service}`, ['start'], { stdio: 'ignore', timeout: 120_000 });
      startedByUs.push(service);
    }
    const giveUp = Date.now() + 60_000;
    while (!(await answers())) {
      if (Date.now() > giveUp) throw new Error(`pmproxy REST API does not answer on ${PMPROXY}`);
      await sleep(250);
    }
  });

  afterAll(() => {
    for (const service of startedByUs.reverse()) execFileSync(`/etc/init.d/${service}`, ['stop'], { stdio: 'ignore', timeout: 60_000 });
  });

  it('gives plausible host metrics, reusing one context', async () => {
    const client = new PcpClient({ url: PMPROXY, pollIntervalSeconds: 1 });
    const sampler = new HostSampler(client, { hostId: 'local' });
    const first = hostMetricsSchema.parse(await sampler.sample());
    const context = client.contextId;
    await sleep(1200);
    const second = hostMetricsSchema.parse(await sampler.sample());
    expect(client.contextId).toBe(context);
    expect(client.pollTimeoutSeconds).toBeGreaterThan(1);
    expect(first.cpuUtil).toBeUndefined(); // no interval yet
    expect(second.cpus).toHaveLength(cpus().length);
    expect(Object.keys(second.cpuUtilPerCpu ?? {})).toHaveLength(cpus().length);
    expect(second.cpuUtil).toBeGreaterThanOrEqual(0);
    expect(second.cpuUtil).toBeLessThanOrEqual(1);
    expect(second.memoryUsedBytes).toBeGreaterThan(0);
    expect(second.memoryAvailableBytes).toBeGreaterThan(0);
    expect(second.memoryTotalBytes).toBeGreaterThan(second.memoryUsedBytes ?? 0);
    expect(second.load1).toBeGreaterThanOrEqual(0);
    expect(second.diskOpsPerSec).toBeGreaterThanOrEqual(0);
    expect(second.diskActiveRatio).toBeGreaterThanOrEqual(0);
    expect(second.netInBytesPerSec).toBeGreaterThanOrEqual(0);
    // The interval is between pmcd's fetch timestamps, not our sleep: a first fetch on a fresh
    // context can be stamped late (seen: 0.42 s apart after a 1.2 s sleep on a loaded machine).
    expect(second.intervalSeconds).toBeGreaterThan(0);
    expect(second.intervalSeconds).toBeLessThan(30);
    // FACTS: this kernel has PSI and PCP reports it.
    expect(second.pressure?.cpuSomeAvg10sPct).toBeGreaterThanOrEqual(0);
  });

  it('restricts CPU utilisation to a cpuset', async () => {
    const sampler = new HostSampler(new PcpClient({ url: PMPROXY, pollIntervalSeconds: 1 }), { hostId: 'h1', cpus: [0] });
    await sampler.sample();
    await sleep(1100);
    const s = await sampler.sample();
    expect(s.cpus).toEqual([0]);
    expect(Object.keys(s.cpuUtilPerCpu ?? {})).toEqual(['0']);
  });

  describe('a CPU-burning process in its own cgroup', () => {
    const parent = `herd-monitor-test-${process.pid}`;
    const id = 'c'.repeat(64);
    let burner: ChildProcess | undefined;

    beforeAll(() => {
      const procs = CONTROLLERS.map((c) => {
        const dir = join(CGROUP_ROOT, c, parent, id);
        mkdirSync(dir, { recursive: true });
        return join(dir, 'cgroup.procs');
      });
      // The shell joins the cgroups first, then execs the loop: cgroup v1 charges memory
      // where it is allocated, so the loop's pages count for the new cgroup.
      burner = spawn('sh', ['-c', 'for f in "$@"; do echo $$ > "$f"; done; exec sh -c "while :; do :; done"', 'sh', ...procs], { stdio: 'ignore' });
    });

    afterAll(async () => {
      burner?.kill('SIGKILL');
      await sleep(200);
      for (const c of CONTROLLERS) {
        for (const dir of [join(CGROUP_ROOT, c, parent, id), join(CGROUP_ROOT, c, parent)]) {
          try {
            rmdirSync(dir);
          } catch {
            /* already gone */
          }
        }
      }
    });

    it('shows about one core from PCP, memory and counts from the cgroup files', async () => {
      const sampler = new ContainerSampler(new PcpClient({ url: PMPROXY, pollIntervalSeconds: 1 }), {
        hostId: 'local',
        cgroup: { root: CGROUP_ROOT, parent, procRoot: '/proc' },
        hostCpuCount: cpus().length,
      }, createCgroupUsageReader('native').reader);
      const container = { herdId: 'burner', name: 'burner', dockerId: id, state: 'running' };
      let s = (await sampler.sample([container]))[0];
      for (let i = 0; i < 5 && s?.cpuCores === undefined; i++) {
        await sleep(1000);
        s = (await sampler.sample([container]))[0];
      }
      await sleep(2000);
      s = containerMetricsSchema.parse((await sampler.sample([container]))[0]);
      expect(s.cpuCores, 'CPU of a busy loop (PCP cgroup.cpuacct.stat)').toBeGreaterThan(0.6);
      expect(s.cpuCores).toBeLessThan(1.2);
      expect(s.cpuLimitCores).toBe(cpus().length);
      expect(s.memoryBytes).toBeGreaterThan(0);
      expect(s.processCount).toBe(1);
      expect(s.threadCount).toBe(1);
      expect(s.netInBytes).toBeGreaterThanOrEqual(0); // the root namespace's interfaces, as the burner sees them
    });
  });
});
