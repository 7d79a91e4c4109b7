/**
 * `herd metrics top`: the latest sample of every host and container, as the monitors
 * publish them (like `docker stats` for the whole cluster). It listens on the broker for
 * `--seconds` (long enough for one container round and one host round), then prints one
 * table; samples are checked against their schemas and bad messages are counted, not fatal.
 */
import { HerdError } from '../protocol/errors.ts';
import { emptyLatest, takeMessage, type LatestMetrics } from '../protocol/metrics-view.ts';
import { closeBroker, type BrokerEndpoint } from '../protocol/mqtt.ts';
import { connectCommandClient } from '../protocol/rpc.ts';
import { topics } from '../protocol/topics.ts';

const num = (v: number | undefined, digits: number, unit = '') => (v === undefined ? '-' : `${v.toFixed(digits)}${unit}`);
const bytes = (v: number | undefined) => {
  if (v === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let x = v;
  let i = 0;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${x.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
};
const rate = (v: number | undefined) => (v === undefined ? '-' : `${bytes(v)}/s`);
const pct = (v: number | undefined) => (v === undefined ? '-' : `${(v * 100).toFixed(1)} %`);

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [header, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n');
}

/** The two tables `herd metrics top` prints. */
export function renderTop(latest: LatestMetrics): string {
  const hosts = [...latest.hosts.values()].sort((a, b) => a.hostId.localeCompare(b.hostId));
  const hostRows = hosts.map((h) => (h.stale === true ? [h.hostId, `stale: ${h.staleReason ?? ''}`] : [h.hostId, pct(h.cpuUtil), num(h.load1, 2), bytes(h.memoryUsedBytes), bytes(h.memoryAvailableBytes), num(h.diskOpsPerSec, 1), rate(h.netInBytesPerSec), rate(h.netOutBytesPerSec)]));
  const containers = [...latest.containers.values()].sort((a, b) => a.hostId.localeCompare(b.hostId) || a.name.localeCompare(b.name));
  const containerRows = containers.map((c) => [c.name, c.herdId, c.hostId, c.health === undefined ? c.state : `${c.state} (${c.health})`, num(c.cpuCores, 2), pct(c.cpuUtil), bytes(c.memoryBytes), num(c.diskReadOpsPerSec, 1), num(c.diskWriteOpsPerSec, 1), rate(c.netInBytesPerSec), rate(c.netOutBytesPerSec), num(c.processCount, 0)]);
  const out = [
    table(['HOST', 'CPU', 'LOAD1', 'MEM USED', 'MEM AVAIL', 'DISK OPS/S', 'NET IN', 'NET OUT'], hostRows),
    '',
    table(['CONTAINER', 'HERD ID', 'HOST', 'STATE', 'CORES', 'CPU/LIMIT', 'MEM', 'READS/S', 'WRITES/S', 'NET IN', 'NET OUT', 'PROCS'], containerRows),
  ];
  if (latest.rejected > 0) out.push('', `${latest.rejected} message(s) rejected (not JSON, not matching their schema, or naming another host than their topic)`);
  if (latest.foreignSamples > 0) out.push('', `${latest.foreignSamples} container sample(s) ignored: they named another host than their batch's topic`);
  return `${out.join('\n')}\n`;
}

/** Listens for `seconds` and returns what arrived; BROKER_UNREACHABLE when there is no broker. */
export async function collectLatest(broker: BrokerEndpoint, seconds: number): Promise<LatestMetrics> {
  const client = await connectCommandClient(broker, 'herd-top');
  const latest = emptyLatest();
  try {
    client.on('message', (topic, payload) => takeMessage(latest, topic, payload.toString('utf8')));
    await client.subscribeAsync([topics.allHostMetrics, topics.allContainerMetrics], { qos: 0 });
    await new Promise((r) => setTimeout(r, seconds * 1000));
  } finally {
    await closeBroker(client);
  }
  if (latest.hosts.size === 0 && latest.containers.size === 0) {
    throw new HerdError('TIMEOUT', `no metrics arrived on ${broker.url} within ${seconds} s: is a monitor running (herd monitor, or herd lab up)?`);
  }
  return latest;
}
