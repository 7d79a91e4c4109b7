/**
 * A container's cgroup v1 files and /proc/<pid>/net/dev as regular files under a temp
 * root, laid out as the monitor reads them (`<root>/cgroup/<controller>/<parent>/<id>/…`,
 * `<root>/proc/<pid>/net/dev`): for tests and the benchmark's synthetic rows.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** /proc/<pid>/net/dev with lo (100 B in and out, left out by the monitor) and eth0 (4000 B in, 2000 B out). */
export const NET_DEV =
  'Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    4000      10    0    0    0     0          0         0     2000       5    0    0    0     0       0          0\n';

/** Writes `files` ("controller/file" → text) for container `dockerId` under cgroup parent `parent`, and its net/dev. */
export function writeContainerCgroup(root: string, parent: string, dockerId: string, pid: number, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) {
    const [controller, file] = name.split('/') as [string, string];
    const dir = join(root, 'cgroup', controller, parent, dockerId);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, file), text);
  }
  mkdirSync(join(root, 'proc', String(pid), 'net'), { recursive: true });
  writeFileSync(join(root, 'proc', String(pid), 'net', 'dev'), NET_DEV);
}
