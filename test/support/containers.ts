/** Looking at lab hosts' containers directly through each host's Docker daemon (the ground truth for "runs exactly once"). */
import { existsSync, readdirSync } from 'node:fs';
import Docker from 'dockerode';
import type { LabLayout } from '../../control/lab/layout.ts';

export async function execIn(docker: Docker, container: string, cmd: string[]): Promise<string> {
  const exec = await docker.getContainer(container).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({});
  const raw = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (d: Buffer) => chunks.push(d));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
  return demuxDockerStream(raw);
}

/** The text of a Docker attach/logs stream (frames with an 8-byte header: stream, 0, 0, 0, size). */
export function demuxDockerStream(raw: Buffer): string {
  let out = '';
  for (let i = 0; i + 8 <= raw.length; ) {
    const size = raw.readUInt32BE(i + 4);
    out += raw.subarray(i + 8, i + 8 + size).toString('utf8');
    i += 8 + size;
  }
  return out;
}

export interface Placement {
  hostId: string;
  dockerId: string;
  running: boolean;
  startedAt: string;
}

/** Every container of that name on every lab host. */
export async function placements(layout: LabLayout, name: string): Promise<Placement[]> {
  const found: Placement[] = [];
  for (const host of layout.hosts) {
    const docker = new Docker({ socketPath: host.dockerSocket });
    for (const c of await docker.listContainers({ all: true, filters: { name: [`^/${name}$`] } })) {
      const info = await docker.getContainer(c.Id).inspect();
      found.push({ hostId: host.id, dockerId: c.Id, running: info.State.Running, startedAt: info.State.StartedAt });
    }
  }
  return found;
}

/** What a migration may leave behind on a host: checkpoint dirs, images staged for a direct restore, migration records, containers created by migrations that are not running. */
export async function leftovers(layout: LabLayout): Promise<string[]> {
  const left: string[] = [];
  for (const host of layout.hosts) {
    // Tombstones (<id>.<role>.done.json) are how finished migrations are remembered: not leftovers.
    const records = existsSync(`${host.computeStateDir}/migrations`) ? readdirSync(`${host.computeStateDir}/migrations`).filter((n) => !n.endsWith('.done.json')) : [];
    if (records.length > 0) left.push(`${host.id}: migration records ${records.join(', ')}`);
    const containersDir = `${host.dockerDataRoot}/containers`;
    for (const id of existsSync(containersDir) ? readdirSync(containersDir) : []) {
      const cps = existsSync(`${containersDir}/${id}/checkpoints`) ? readdirSync(`${containersDir}/${id}/checkpoints`) : [];
      if (cps.length > 0) left.push(`${host.id}: checkpoints ${cps.join(', ')} of ${id.slice(0, 12)}`);
      const staged = existsSync(`${containersDir}/${id}/herd-images`) ? readdirSync(`${containersDir}/${id}/herd-images`) : [];
      if (staged.length > 0) left.push(`${host.id}: staged checkpoint images ${staged.join(', ')} of ${id.slice(0, 12)}`);
    }
    const docker = new Docker({ socketPath: host.dockerSocket });
    for (const c of await docker.listContainers({ all: true, filters: { label: ['io.herd.id'] } })) {
      if (c.State !== 'running') left.push(`${host.id}: ${c.State} container ${c.Names[0]}`);
    }
  }
  return left;
}

/** A container command that counts up every 0.1 s into /data/count: the count continues after a live migration and restarts at 1 after a restart. */
export const COUNTER = ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo $i > /data/count; sleep 0.1; done'];

/** The counter's current value in a container on a lab host. */
export async function count(layout: LabLayout, hostId: string, name: string): Promise<number> {
  const host = layout.hosts.find((h) => h.id === hostId);
  if (host === undefined) throw new Error(`no lab host ${hostId}`);
  const docker = new Docker({ socketPath: host.dockerSocket });
  // `echo $i > /data/count` truncates before it writes: a read in between (or a checkpoint
  // taken there and restored) sees an empty file, which is not a count. Read again then.
  for (let attempt = 0; ; attempt++) {
    const text = (await execIn(docker, name, ['cat', '/data/count'])).trim();
    if (text !== '' || attempt >= 20) {
      if (!/^\d+$/.test(text)) throw new Error(`${name} on ${hostId}: /data/count holds ${JSON.stringify(text)}, not a count`);
      return Number(text);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
