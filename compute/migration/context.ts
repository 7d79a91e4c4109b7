/** What both sides of a migration use on a compute host. */
import type { Logger } from 'pino';
import type { ClusterView } from '../../protocol/cluster-view.ts';
import type { Compression, MigrationEvent } from '../../protocol/messages.ts';
import type { CommandClient } from '../../protocol/rpc.ts';
import type { ContainerRuntime } from '../runtime/container-runtime.ts';
import type { MigrationStore } from './migration-store.ts';
import type { SerialQueue } from './serial-queue.ts';
import type { SshPool } from './ssh-pool.ts';
import type { Fault } from './faults.ts';
import type { KeyedLock } from './keyed-lock.ts';
import type { FenceOutcome } from './fence.ts';
import type { RestorePath } from '../../protocol/messages.ts';
import type { ContainerClaims } from './container-claims.ts';

export interface MigrationContext extends ContainerClaims {
  hostId: string;
  runtime: ContainerRuntime;
  store: MigrationStore;
  /** Serializes CRIU operations (checkpoint, restore) on this host. */
  criu: SerialQueue;
  log: Logger;
  rpc: CommandClient;
  view: ClusterView;
  ssh: SshPool;
  publishContainers(): Promise<void>;
  publishEvent(event: MigrationEvent): Promise<void>;
  /** Per migration id: the source's run, the target's handlers and the reconciler take turns. */
  locks: KeyedLock;
  /** Makes sure a migration's copy on the target does not run (or says it runs) without its daemon: over SSH (fence.ts). */
  fence(targetHost: string, migrationId: string): Promise<FenceOutcome>;
  /** True once a graceful stop began: no new migration starts. */
  stopping(): boolean;
  /** Host directories every compute host shares: bind mounts under them migrate as they are. */
  sharedPaths: readonly string[];
  /** Diff mode: copy the upper dir before the freeze, then only what changed (fs-precopy.ts). */
  preCopyFilesystem: boolean;
  /** Smaller upper dirs go after the freeze (config preCopyFilesystemMinBytes). */
  preCopyFilesystemMinBytes: number;
  /** Copy the memory before the freeze, then only the pages that changed (memory-precopy.ts). */
  preCopyMemory: boolean;
  /** Containers using less memory copy it while frozen only (config preCopyMemoryMinBytes). */
  preCopyMemoryMinBytes: number;
  /** How streams to other hosts are compressed (config transferCompression). */
  transferCompression: Compression;
  /** How this host restores a migration's copy (compute/runtime/direct-restore.ts). */
  restorePath: RestorePath;
  /** Faults to inject, read from `<stateDir>/faults` at each use (tests only; see faults.ts). */
  faults(): ReadonlySet<Fault>;
}
