/**
 * End-to-end tests run on a real lab (network namespaces, a dockerd per host, CRIU, PCP).
 * When the machine cannot run it, the test FAILS saying what to install.
 */
import { availableParallelism } from 'node:os';
import Docker from 'dockerode';
import { runChecks } from '../../control/doctor.ts';
import { labLayout, type LabLayout } from '../../control/lab/layout.ts';
import { runCommand } from '../../control/lab/shell.ts';
import { herdOk } from './herd-cli.ts';
import { labOperatorEndpoint } from '../../control/lab/lab-up.ts';
import { operatorClientId } from '../../protocol/access.ts';
import { connectBroker, type MqttClient } from '../../protocol/mqtt.ts';

export async function requireLabPrerequisites(): Promise<void> {
  const failed = (await runChecks()).filter((c) => !c.ok);
  if (failed.length > 0) {
    throw new Error(`this machine cannot run the lab end-to-end tests; missing: ${failed.map((c) => `${c.name} (${c.detail}; fix: ${c.fix})`).join('; ')}`);
  }
}

/** Brings a fresh lab of `hosts` hosts up through the real CLI. */
export async function freshLab(hosts = 2): Promise<LabLayout> {
  await requireLabPrerequisites();
  await herdOk(['lab', 'down'], { timeoutMs: 120_000 });
  await herdOk(['lab', 'up', '--hosts', String(hosts)], { timeoutMs: 600_000 });
  return labLayout({ hosts, cpuCount: availableParallelism() });
}

/** A client of the lab's broker as the lab's operator (TLS, the operator's credentials). */
export function connectLabBroker(layout: LabLayout, what: string): Promise<MqttClient> {
  const endpoint = labOperatorEndpoint(layout);
  return connectBroker({ ...endpoint, clientId: operatorClientId(endpoint.username, what, 'e2e') });
}

export function dockerOf(layout: LabLayout, hostId: string): Docker {
  const host = layout.hosts.find((h) => h.id === hostId);
  if (host === undefined) throw new Error(`no lab host ${hostId}`);
  return new Docker({ socketPath: host.dockerSocket });
}

/** Runs a command inside a lab host's network namespace. */
export function inHost(layout: LabLayout, hostId: string, cmd: string, args: string[], timeoutMs = 30_000) {
  return runCommand('nsenter', [`--net=/var/run/netns/herd-${hostId}`, cmd, ...args], { timeoutMs });
}

/** Brings the lab up if needed (idempotent) and removes every managed container, for suites that share it. */
export async function readyLab(hosts = 2): Promise<LabLayout> {
  await requireLabPrerequisites();
  // A lab left half-dead (its daemons ended with an earlier session) is rebuilt from scratch.
  const status = JSON.parse(await herdOk(['lab', 'status', '--json'])) as { up: boolean; control: boolean; hosts: { dockerd: boolean; compute: boolean; sshd: boolean }[] };
  const healthy = status.up && status.control && status.hosts.length === hosts && status.hosts.every((h) => h.dockerd && h.compute && h.sshd);
  if (status.up && !healthy) await herdOk(['lab', 'down'], { timeoutMs: 120_000 });
  await herdOk(['lab', 'up', '--hosts', String(hosts)], { timeoutMs: 600_000 });
  // Suites sharing the lab place containers themselves: the control loop must not move them.
  await herdOk(['control', 'pause', '--reason', 'a test suite uses the lab']);
  const layout = labLayout({ hosts, cpuCount: availableParallelism() });
  for (const host of layout.hosts) {
    const docker = new Docker({ socketPath: host.dockerSocket });
    for (const c of await docker.listContainers({ all: true })) await docker.getContainer(c.Id).remove({ force: true });
    await runCommand('rm', ['-f', `${host.computeStateDir}/faults`]);
  }
  return layout;
}

/** Writes fault names for a host's compute daemon (see compute/migration/faults.ts); none clears them. */
export async function setFaults(layout: LabLayout, hostId: string, faults: string[]): Promise<void> {
  const host = layout.hosts.find((h) => h.id === hostId)!;
  const { writeFileSync, rmSync } = await import('node:fs');
  if (faults.length === 0) rmSync(`${host.computeStateDir}/faults`, { force: true });
  else writeFileSync(`${host.computeStateDir}/faults`, `${faults.join('\n')}\n`);
}
