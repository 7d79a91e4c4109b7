import { readFileSync } from 'node:fs';

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
    const lines = readFileSync(`${procRoot}/${pid}/cgroup`, 'utf8').split('\n');
    const v1 = lines.find((l) => /^\d+:memory:/.test(l));
    const v2 = lines.find((l) => l.startsWith('0::'));
    const dir = v1 !== undefined ? `${cgroupRoot}/memory${v1.split(':')[2]}` : v2 !== undefined ? `${cgroupRoot}${v2.slice(3)}` : undefined;
    if (dir === undefined) return none;
    const stat = new Map(readFileSync(`${dir}/memory.stat`, 'utf8').split('\n').map((l) => l.split(' ') as [string, string]));
    const num = (key: string) => Number(stat.get(key)) || 0;
    const usageBytes = Number(readFileSync(`${dir}/${v1 !== undefined ? 'memory.usage_in_bytes' : 'memory.current'}`, 'utf8').trim()) || 0;
    return { usageBytes, residentBytes: v1 !== undefined ? num('total_rss') + num('total_shmem') : num('anon') + num('shmem') };
  } catch {
    return none;
  }
}
