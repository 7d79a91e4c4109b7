/** Configuration of the monitor daemon (`herd monitor --config /etc/herd/monitor.yaml`). */
import { hostname } from 'node:os';
import { z } from 'zod';
import { clientIdAllowed } from '../protocol/access.ts';
import { brokerClientConfigSchema, timerSeconds } from '../protocol/config.ts';
import { METRICS_PORTS, metricsConfigSchema } from '../protocol/metrics-config.ts';
import { ID_PATTERN } from '../protocol/topics.ts';
import { LOG_LEVELS } from '../protocol/log.ts';

/** What every monitor's MQTT client id starts with: the broker binds the monitor identity to it (protocol/access.ts). */
export const MONITOR_CLIENT_ID_PREFIX = 'herd-monitor-';

/**
 * The monitor's MQTT client id when the config names none: `herd-monitor-<hostname>`,
 * the hostname's characters outside the id alphabet turned into "-", cut to the id's 64
 * characters. Stable across restarts (a restarted monitor takes over its own session) and,
 * with one monitor per host, unique in the cluster (two clients with one id would keep
 * throwing each other off the broker).
 */
export function defaultMonitorClientId(name = hostname()): string {
  const safe = name.replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 64 - MONITOR_CLIENT_ID_PREFIX.length);
  return `${MONITOR_CLIENT_ID_PREFIX}${safe === '' ? 'host' : safe}`;
}

export const monitorHostSchema = z.strictObject({
  /** The compute host's id (as in its status topic). */
  id: z.string().regex(ID_PATTERN, 'must be a host id (A-Z a-z 0-9 _ . -, 1-64 chars)'),
  /** Base URL of the pmproxy that sees this host, e.g. http://10.213.0.1:44322. */
  pmproxyUrl: z.url({ protocol: /^https?$/ }).default('http://127.0.0.1:44322'),
  /** Docker API socket of this host (container discovery, state and health). */
  dockerSocket: z.string().min(1).default('/var/run/docker.sock'),
  /** Docker's cgroup parent: "docker" on a normal host, "herd-hN" in the lab. */
  cgroupParent: z.string().min(1).default('docker'),
  /** Where cgroup v1 controllers are mounted. */
  cgroupRoot: z.string().min(1).default('/sys/fs/cgroup'),
  procRoot: z.string().min(1).default('/proc'),
  /** CPUs that count as this host's (its cpuset in the lab); every CPU when absent. */
  cpus: z.array(z.number().int().min(0)).min(1).optional(),
  /**
   * Interfaces that count for host network bytes. When absent: the physical ones (those with
   * /sys/class/net/<name>/device), or, on a machine that has none (a VM's virtio NICs have
   * one; some virtual hosts do not), every interface but lo, veth*, docker*, br-* — so that
   * container traffic is not counted again on each bridge and veth it crosses.
   */
  interfaces: z.array(z.string().min(1)).min(1).optional(),
  /** Swap in/out: the interfaces are seen from the other end (the lab's root-side veth). */
  swapNetworkDirection: z.boolean().default(false),
  /**
   * This host's own disks, as named in /sys/block (e.g. ["sdb"], or the lab's loop device):
   * host disk figures count only these (read from the kernel's counters: PCP leaves loop
   * devices out), and per-container block I/O counting is turned on for these. Every disk of
   * the machine (PCP's disk.all) when absent.
   */
  disks: z.array(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be a block device name as in /sys/block, e.g. "sdb"')).min(1).optional(),
});
export type MonitorHostConfig = z.infer<typeof monitorHostSchema>;

export const monitorConfigSchema = z
  .strictObject({
    broker: brokerClientConfigSchema,
    /**
     * The MQTT client id; `herd-monitor-<hostname>` when absent (defaultMonitorClientId). Must
     * start with herd-monitor-: the broker admits the monitor identity only under that prefix.
     */
    clientId: z
      .string()
      .regex(ID_PATTERN, 'must be 1-64 characters of A-Z a-z 0-9 _ . - starting with a letter or digit')
      .refine((id) => clientIdAllowed({ username: 'monitor', role: 'monitor' }, id).allowed, `must start with "${MONITOR_CLIENT_ID_PREFIX}" and go on after it (the broker binds the monitor identity to that prefix)`)
      .optional(),
    /** Prometheus metrics on GET /metrics (monitor/monitor-metrics.ts). */
    metrics: metricsConfigSchema(METRICS_PORTS.monitor),
    /** Hosts to monitor; each is polled independently. */
    hosts: z
      .array(monitorHostSchema)
      .min(1, 'list at least one host to monitor')
      // On the array, not the whole config: it runs (and reports) even when another field is wrong.
      .superRefine((hosts, ctx) => {
        const seen = new Set<string>();
        hosts.forEach((h, i) => {
          if (seen.has(h.id)) ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `host "${h.id}" is listed twice` });
          seen.add(h.id);
        });
      }),
    /** Host sampling period (Herd's published default: 5 s). */
    hostIntervalSeconds: z.number().min(0.1).max(3600).default(5),
    /** Container tracking period (Herd's published default: 2 s). */
    containerIntervalSeconds: z.number().min(0.1).max(3600).default(2),
    /** Per-request timeout towards pmproxy and Docker. */
    requestTimeoutMs: z.number().int().min(50).max(60_000).default(3000),
    /** Upper bound of the retry delay of a stale host (exponential backoff from the interval). */
    maxBackoffSeconds: timerSeconds().min(0.1).default(60),
    /** Where the dataset for forecasting is written; no dataset when null. */
    datasetDir: z.string().min(1).nullable().default('/var/lib/herd/metrics'),
    /**
     * Turn on per-container block I/O counting: a never-throttling write IOPS rule on each
     * host's cgroup parent (the kernel counts blkio.throttle.io_serviced only on disks with a
     * throttle rule; see monitor/blkio-accounting.ts). Without it disk operations read 0.
     */
    blkioAccounting: z.boolean().default(true),
    /**
     * How container cgroup files are read: `native` (the C reader built by scripts/build-native;
     * the monitor refuses to start without it), `js`, or `auto` (native when built, else js with a
     * warning). Same values either way; native takes about half the CPU (bench:monitor).
     */
    cgroupReader: z.enum(['auto', 'native', 'js']).default('auto'),
    /**
     * Follow every managed container's stdout/stderr into <datasetDir>/logs/<herdId>.log. Needs
     * datasetDir: true with `datasetDir: null` is a config error; when absent, on exactly when
     * there is a datasetDir.
     */
    containerLogs: z.boolean().optional(),
    /** A container's log is rotated (`<herdId>.log` → `.log.1` …) before it would exceed this size. */
    containerLogMaxBytes: z.number().int().min(64 * 1024).default(16 * 1024 * 1024),
    /** Rotated log files kept per container; the oldest beyond this is deleted. At most (1 + this) × containerLogMaxBytes per container. */
    containerLogRotatedFiles: z.number().int().min(1).max(100).default(2),
    /** Samples kept while the broker is unreachable; the oldest are dropped beyond this. */
    publishBufferSize: z.number().int().min(1).max(1_000_000).default(10_000),
    logLevel: z.enum(LOG_LEVELS).default('info'),
  })
  .superRefine(
    (c, ctx) => {
      if (c.containerLogs === true && c.datasetDir === null) ctx.addIssue({ code: 'custom', path: ['containerLogs'], message: 'container logs are written under datasetDir, which is null: set datasetDir, or containerLogs: false' });
    },
    // Also when other fields are wrong, so that every problem is reported at once; not when these two are.
    { when: (payload) => !payload.issues.some((i) => i.path?.[0] === 'containerLogs' || i.path?.[0] === 'datasetDir') },
  )
  .transform((c) => ({ ...c, containerLogs: c.containerLogs ?? c.datasetDir !== null }));

export type MonitorConfig = z.infer<typeof monitorConfigSchema>;
