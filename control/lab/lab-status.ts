/** `herd lab status`: what of the lab runs, host by host. */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename } from 'node:path';
import Docker from 'dockerode';
import { mountSource } from './host-disk.ts';
import { labLayout } from './layout.ts';
import { livePid, runCommand } from './shell.ts';
import { readLabState } from './state.ts';

export interface LabHostStatus {
  id: string;
  ip: string;
  cpus: number[];
  netns: boolean;
  dockerd: boolean;
  dockerVersion?: string;
  containers?: number;
  sshd: boolean;
  compute: boolean;
  /** The host's disk (control/lab/host-disk.ts): its device, e.g. "loop3"; absent when its data root is not mounted. */
  disk?: string;
}

export interface LabStatus {
  up: boolean;
  createdAt?: string;
  brokerUrl?: string;
  dashboardUrl?: string;
  control: boolean;
  monitor: boolean;
  pcp: boolean;
  /** Operations per second of each host's disk (`lab up --disk-iops`); absent: no limit. */
  diskIops?: number;
  hosts: LabHostStatus[];
}

export async function labStatus(): Promise<LabStatus> {
  const state = readLabState();
  if (state === undefined) return { up: false, control: false, monitor: false, pcp: false, hosts: [] };
  const layout = labLayout({ hosts: state.hosts, cpuCount: availableParallelism() });
  const hosts: LabHostStatus[] = [];
  for (const host of layout.hosts) {
    const status: LabHostStatus = {
      id: host.id,
      ip: host.ip,
      cpus: host.cpus,
      netns: existsSync(`/var/run/netns/${host.netns}`),
      dockerd: livePid(host.dockerPidFile, 'dockerd') !== undefined,
      sshd: livePid(host.sshdPidFile, 'sshd') !== undefined,
      compute: livePid(host.computePidFile, 'compute') !== undefined,
    };
    const disk = mountSource(host.dockerDataRoot);
    if (disk !== undefined) status.disk = basename(disk);
    if (status.dockerd) {
      const docker = new Docker({ socketPath: host.dockerSocket });
      try {
        status.dockerVersion = (await docker.version()).Version;
        status.containers = (await docker.listContainers({ all: true })).length;
      } catch {
        status.dockerd = false;
      }
    }
    hosts.push(status);
  }
  const pcp = (await runCommand('pgrep', ['-x', 'pmproxy'])).code === 0 && (await runCommand('pgrep', ['-x', 'pmcd'])).code === 0;
  return {
    up: true,
    createdAt: state.createdAt,
    brokerUrl: state.brokerUrl,
    dashboardUrl: layout.dashboardUrl,
    control: livePid(layout.controlPidFile, 'control') !== undefined,
    monitor: livePid(layout.monitorPidFile, 'monitor') !== undefined,
    pcp,
    ...(state.diskIops === undefined ? {} : { diskIops: state.diskIops }),
    hosts,
  };
}

export function formatLabStatus(s: LabStatus): string {
  if (!s.up) return 'lab: down (run "herd lab up")';
  const yes = (b: boolean) => (b ? 'up' : 'DOWN');
  const lines = [
    `lab: up since ${s.createdAt}; broker ${s.brokerUrl} (control daemon ${yes(s.control)}, dashboard ${s.dashboardUrl}); monitor ${yes(s.monitor)}; PCP ${yes(s.pcp)}; disks ${s.diskIops === undefined ? 'without an operations limit' : `of ${s.diskIops} operations/s`}`,
    'HOST  IP            CPUS  NETNS  DOCKERD  SSHD  COMPUTE  DISK     CONTAINERS',
  ];
  for (const h of s.hosts) {
    lines.push(
      `${h.id.padEnd(5)} ${h.ip.padEnd(13)} ${h.cpus.join(',').padEnd(5)} ${yes(h.netns).padEnd(6)} ${yes(h.dockerd).padEnd(8)} ${yes(h.sshd).padEnd(5)} ${yes(h.compute).padEnd(8)} ${(h.disk ?? 'DOWN').padEnd(8)} ${h.containers ?? '-'}`,
    );
  }
  return lines.join('\n');
}
