/**
 * The monitor daemon's Prometheus families: samples handed to the broker (and those the
 * publish buffer dropped), pmproxy requests (latency, failures) per host, hosts whose
 * samples are stale, bytes appended to the dataset; its own CPU is in the process metrics.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { PublisherStats } from './publisher.ts';

export interface MonitorMetrics {
  samples(kind: 'host' | 'container', n: number): void;
  datasetBytes(n: number): void;
  /** A fetch that times and counts requests to one host's pmproxy. */
  timedFetch(hostId: string, fetchImpl: typeof fetch): typeof fetch;
}

export function registerMonitorMetrics(registry: Registry, deps: { publisher: () => PublisherStats; staleHosts: () => number }): MonitorMetrics {
  const samples = new Counter({ name: 'herd_monitor_samples_total', help: 'Samples checked and handed to the broker publisher, by kind', labelNames: ['kind'] as const, registers: [registry] });
  let droppedSeen = 0;
  new Counter({
    name: 'herd_monitor_samples_dropped_total',
    help: 'Samples dropped because the publish buffer was full while the broker was away',
    registers: [registry],
    collect() {
      const dropped = deps.publisher().dropped;
      if (dropped > droppedSeen) this.inc(dropped - droppedSeen);
      droppedSeen = dropped;
    },
  });
  new Gauge({ name: 'herd_monitor_publish_buffered_samples', help: 'Samples waiting for the broker', registers: [registry], collect() { this.set(deps.publisher().buffered); } });
  const requests = new Histogram({ name: 'herd_monitor_pcp_request_duration_seconds', help: 'Requests to pmproxy (PCP REST API), by host', labelNames: ['host'] as const, buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [registry] });
  const errors = new Counter({ name: 'herd_monitor_pcp_errors_total', help: 'Requests to pmproxy that failed (no answer, refused, HTTP error), by host', labelNames: ['host'] as const, registers: [registry] });
  new Gauge({ name: 'herd_monitor_hosts_stale', help: 'Hosts whose latest host sample is stale (pmproxy did not answer)', registers: [registry], collect() { this.set(deps.staleHosts()); } });
  const bytes = new Counter({ name: 'herd_monitor_dataset_bytes_total', help: 'Bytes appended to the dataset', registers: [registry] });
  return {
    samples: (kind, n) => samples.inc({ kind }, n),
    datasetBytes: (n) => bytes.inc(n),
    timedFetch(hostId, fetchImpl) {
      return async (input, init) => {
        const end = requests.startTimer({ host: hostId });
        try {
          const res = await fetchImpl(input, init);
          if (!res.ok) errors.inc({ host: hostId });
          return res;
        } catch (err) {
          errors.inc({ host: hostId });
          throw err;
        } finally {
          end();
        }
      };
    },
  };
}
