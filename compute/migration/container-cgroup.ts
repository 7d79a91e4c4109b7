import { readFileSync } from 'node:fs';

/**
 * The cgroup directory of process `pid`: its cgroup v1 `controller`'s (`pids`, `memory`), else
 * its v2 unified one. Undefined when it has neither, or only the root cgroup (the view from a
 * cgroup namespace: that one holds every process). Throws when the process is gone.
 */
export function cgroupDirOf(pid: number, controller: string, procRoot = '/proc', cgroupRoot = '/sys/fs/cgroup'): { version: 1 | 2; dir: string } | undefined {
  const lines = readFileSync(`${procRoot}/${pid}/cgroup`, 'utf8').split('\n');
  // hierarchy-id:controllers:path (the path may hold colons itself)
  const fields = lines.map((l) => /^(\d+):([^:]*):(.*)$/.exec(l)).filter((m) => m !== null);
  const v1 = fields.find(([, id, controllers]) => id !== '0' && (controllers as string).split(',').includes(controller));
  const v2 = fields.find(([, id, controllers]) => id === '0' && controllers === '');
  const [version, path] = v1 !== undefined ? [1 as const, v1[3] as string] : v2 !== undefined ? [2 as const, v2[3] as string] : [undefined, ''];
  if (version === undefined || path === '/' || path === '') return undefined;
  return { version, dir: version === 1 ? `${cgroupRoot}/${controller}${path}` : `${cgroupRoot}${path}` };
}
