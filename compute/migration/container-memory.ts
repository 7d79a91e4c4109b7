import { readFileSync } from 'node:fs';
import { cgroupDirOf } from './container-cgroup.ts';

/**
 * The container's memory from its cgroup (v1 or v2): all it is charged for, page cache included
 * (for the target's disk estimate), and what a checkpoint would hold, its anonymous and shared
 * memory (for the memory pre-copy's threshold: a container that wrote 100 MiB of files is
 * charged for their cache, which no dump holds). Zeros when unknown.
 */
export function containerMemory(pid: number | undefined, procRoot = '/proc', cgroupRoot = '/sys/fs/cgroup'): { usageBytes: number; residentBytes: number } {
  const none = { usageBytes: 0, residentBytes: 0 };
  if (pid === undefined) return none;
  try {
    const cgroup = cgroupDirOf(pid, 'memory', procRoot, cgroupRoot);
    if (cgroup === undefined) return none;
    const { version, dir } = cgroup;
    const stat = new Map(readFileSync(`${dir}/memory.stat`, 'utf8').split('\n').map((l) => l.split(' ') as [string, string]));
    const num = (key: string) => Number(stat.get(key)) || 0;
    const usageBytes = Number(readFileSync(`${dir}/${version === 1 ? 'memory.usage_in_bytes' : 'memory.current'}`, 'utf8').trim()) || 0;
    return { usageBytes, residentBytes: version === 1 ? num('total_rss') + num('total_shmem') : num('anon') + num('shmem') };
  } catch {
    return none;
  }
}
