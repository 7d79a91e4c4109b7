/** Real containers for the monitor benchmark: busybox sleepers on the lab's hosts, removed afterwards. */
import Docker from 'dockerode';
import type { LabLayout } from '../../control/lab/layout.ts';

const BENCH_LABEL = 'io.herd.bench';
/** Says a line every 10 s, like the synthetic containers' log streams. */
const SLEEPER = ['sh', '-c', 'while true; do echo tick; sleep 10; done'];

export interface RealContainer {
  hostId: string;
  dockerId: string;
  cgroupParent: string;
}

/** Makes `count` sleepers run, spread over the lab's hosts; keeps the ones already there. */
export async function ensureSleepers(layout: LabLayout, count: number, existing: RealContainer[]): Promise<RealContainer[]> {
  const out = [...existing];
  const jobs: Array<() => Promise<void>> = [];
  for (let i = existing.length; i < count; i++) {
    const host = layout.hosts[i % layout.hosts.length]!;
    jobs.push(async () => {
      const docker = new Docker({ socketPath: host.dockerSocket });
      const c = await docker.createContainer({
        name: `bench-mon-${i}`,
        Image: 'herd/busybox',
        Cmd: SLEEPER,
        Labels: { 'io.herd.id': `bench-r${i}`, [BENCH_LABEL]: 'monitor' },
        HostConfig: { NetworkMode: 'none' },
      });
      await c.start();
      out.push({ hostId: host.id, dockerId: c.id, cgroupParent: host.cgroupName });
    });
  }
  // A few at a time: dockerd in the lab is not fast at creating containers.
  for (let i = 0; i < jobs.length; i += 6) await Promise.all(jobs.slice(i, i + 6).map((j) => j()));
  return out;
}

/** Herd-managed containers on the lab that the benchmark did not create (the monitor samples them too). */
export async function otherManaged(layout: LabLayout): Promise<number> {
  let n = 0;
  for (const host of layout.hosts) {
    const docker = new Docker({ socketPath: host.dockerSocket });
    const rows = await docker.listContainers({ all: true, filters: { label: ['io.herd.id'] } }).catch(() => []);
    n += rows.filter((r) => r.Labels[BENCH_LABEL] !== 'monitor').length;
  }
  return n;
}

/** Removes every container the benchmark created (also ones left by an interrupted run). */
export async function removeSleepers(layout: LabLayout): Promise<number> {
  let removed = 0;
  for (const host of layout.hosts) {
    const docker = new Docker({ socketPath: host.dockerSocket });
    const rows = await docker.listContainers({ all: true, filters: { label: [`${BENCH_LABEL}=monitor`] } }).catch(() => []);
    for (let i = 0; i < rows.length; i += 8) {
      await Promise.all(rows.slice(i, i + 8).map((r) => docker.getContainer(r.Id).remove({ force: true }).then(() => removed++, () => undefined)));
    }
  }
  return removed;
}
