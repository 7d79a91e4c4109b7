/** Configuration of the compute daemon (`herd compute --config /etc/herd/compute.yaml`). */
import { hostname } from 'node:os';
import { z } from 'zod';
import { brokerClientConfigSchema, timerSeconds } from '../protocol/config.ts';
import { commandLimitsSchema } from '../protocol/rpc.ts';
import { METRICS_PORTS, metricsConfigSchema } from '../protocol/metrics-config.ts';
import { ID_PATTERN } from '../protocol/topics.ts';
import { COMPRESSIONS } from '../protocol/messages.ts';
import { RESTORE_MODES } from './runtime/direct-restore.ts';
import { LOG_LEVELS } from '../protocol/log.ts';

/** The Docker runtime name direct restores need registered (bin/herd-runc): for provisioning and doctor. */
export { DIRECT_RESTORE_RUNTIME } from './runtime/direct-restore.ts';

/** Debian's python, which runs bin/herd-blocks.py (large files by blocks) on both hosts of a migration: for the daemon and doctor. */
export const BLOCKS_PYTHON = '/usr/bin/python3';

export const computeConfigSchema = z.strictObject({
  /** This host's id in topics and the CLI. Default: the machine's hostname. */
  hostId: z.string().regex(ID_PATTERN).default(() => hostname().split('.')[0] ?? 'localhost'),
  broker: brokerClientConfigSchema,
  /** Prometheus metrics on GET /metrics (compute/compute-metrics.ts). */
  metrics: metricsConfigSchema(METRICS_PORTS.compute),
  /** Which commands this host accepts (age, concurrency). */
  commands: commandLimitsSchema,
  docker: z
    .strictObject({
      /** The Docker daemon's API socket on this host. */
      socketPath: z.string().default('/var/run/docker.sock'),
      /** Docker's data root, where checkpoints are placed for restore. */
      dataRoot: z.string().default('/var/lib/docker'),
      /** Docker's exec root; runc's state for Docker's containers is under <execRoot>/runtime-runc/moby. */
      execRoot: z.string().default('/var/run/docker'),
      /**
       * How to checkpoint: "runc" dumps straight into the container's checkpoint dir
       * (Docker's own path archives the images through containerd's content store and
       * is ~7x slower for large memory); "docker" uses Docker's checkpoint API.
       */
      checkpointWith: z.enum(['runc', 'docker']).default('runc'),
      /**
       * How a migration's target restores (always through Docker's start --checkpoint, so
       * Docker owns the container): "direct" reads the received images where they landed
       * through the `herd-runc` runtime (compute/runtime/direct-restore.ts); "docker" lets
       * Docker copy them through containerd first (seconds for large memory); "auto" is
       * direct when Docker has the herd-runc runtime registered, else docker.
       */
      restoreWith: z.enum(RESTORE_MODES).default('auto'),
    })
    .prefault({}),
  ssh: z
    .strictObject({
      /** Address other hosts use to reach this host's sshd. */
      address: z.string().default('127.0.0.1'),
      port: z.number().int().min(1).max(65535).default(22),
      user: z.string().default('root'),
      /** Private key this host uses to reach other hosts' sshd. */
      privateKeyPath: z.string().default('/etc/herd/ssh/id_ed25519'),
      /** known_hosts file used to verify other hosts' keys (no key, no transfer). */
      knownHostsPath: z.string().default('/etc/herd/ssh/known_hosts'),
    })
    .prefault({}),
  /**
   * Host directories every compute host shares (the same files at the same path, e.g. a
   * network file system): a container's bind mounts under them migrate as they are. Other
   * bind mounts are refused before anything is frozen (named volumes are carried: their
   * contents move with the container).
   */
  sharedPaths: z.array(z.string().startsWith('/', 'must be an absolute path')).default([]),
  /**
   * Diff mode: copy the upper dir while the container still runs, then after the freeze
   * only what changed since (compute/migration/fs-precopy.ts). false: all of it while frozen.
   */
  preCopyFilesystem: z.boolean().default(true),
  /**
   * A tree (the upper dir in diff mode, a named volume) smaller than this goes whole after
   * the freeze instead of in the pre-copy: a pre-copy's fixed cost (an SSH channel, a walk,
   * and the target's prepare waited for before the checkpoint, about 0.2 s in the lab) is
   * more than sending that little while frozen (4 MiB: about 25 ms at the lab's link speed).
   * A tree's size here is its bytes plus 8 KiB for each entry (file, directory, link), which
   * costs about that much to archive, send and extract: 1,000 small files count as ~8 MiB.
   */
  preCopyFilesystemMinBytes: z.number().int().min(0).default(4 * 1024 * 1024),
  /**
   * Copy the container's memory while it still runs (each distinct resident page once), so
   * that after the freeze only the pages that changed since move (memory-precopy.ts). The
   * pages are matched by content, so no kernel dirty tracking is needed; the checkpoint then
   * goes by pages (zero pages as holes). false: the whole checkpoint moves while frozen, by tar.
   */
  preCopyMemory: z.boolean().default(true),
  /**
   * A container with less anonymous and shared memory than this (what its checkpoint holds, from
   * its cgroup's memory.stat; not its page cache) has its checkpoint copied while frozen, by tar:
   * the memory pre-copy's fixed cost (an SSH channel and a Python process on each host, about
   * 65 ms of CPU each) makes a tiny container's move longer and its downtime no shorter. From
   * 6 MiB up it pays: measured in the lab (docs/benchmark-migration.md, 2026-11-29), 6 MiB of
   * random memory froze 789 instead of 1061 ms, 16 MiB 843 instead of 1265 ms; a container of
   * 0.2 MiB froze as long either way and took 140 ms longer in all.
   */
  preCopyMemoryMinBytes: z.number().int().min(0).default(4 * 1024 * 1024),
  /**
   * How the streams this host sends to another are compressed: none, or lz4 (its fastest
   * level; the lz4 package on both hosts; `herd migrate --compress` chooses per migration).
   * Memory images and database files compress 2-250x, but lz4 costs about 2 ms of CPU per
   * MiB on the sending host: it pays on a link slower than that (1 Gbit/s), not in the lab,
   * where a host has one core and the link is a veth (docs/benchmark-migration.md).
   */
  transferCompression: z.enum(COMPRESSIONS).default('none'),
  /** Where in-flight migration records and staged checkpoints live. */
  stateDir: z.string().default('/var/lib/herd/compute'),
  /** CPUs this host's containers run on, reported in status (informational). */
  cpus: z.array(z.number().int().min(0)).optional(),
  /** How often the reconciler settles interrupted migrations and collects what they left. */
  reconcileIntervalSeconds: timerSeconds().positive().default(30),
  /** On a graceful stop, how long in-flight migrations may take to end before the daemon exits anyway. */
  shutdownGraceSeconds: timerSeconds().min(0).default(120),
  /** How often the container list is republished even without changes. */
  containersIntervalSeconds: timerSeconds().positive().default(10),
  logLevel: z.enum(LOG_LEVELS).default('info'),
});

export type ComputeConfig = z.infer<typeof computeConfigSchema>;
