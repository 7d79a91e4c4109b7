/**
 * The one interface through which the compute daemon drives its host's containers.
 * The real implementation is docker-runtime.ts (dockerode + Docker's CRIU checkpoints).
 */
import type { ContainerSpec, ContainerSummary } from '../../protocol/messages.ts';

/** Label that makes a container Herd-managed; its value is the stable Herd id. */
export const HERD_ID_LABEL = 'io.herd.id';
/** Label on a container created as the target of a migration: the migration's id (lets an abort find it without a record). */
export const HERD_MIGRATION_LABEL = 'io.herd.migration';

export interface RuntimeInfo {
  dockerVersion: string;
  dataRoot: string;
  storageDriver: string;
  experimental: boolean;
  /** Runtimes registered with Docker (daemon.json "runtimes", plus runc). */
  runtimes: string[];
}

export interface ContainerDetails extends ContainerSummary {
  spec: ContainerSpec & { herdId: string };
  /** Overlay upper dir (the container's diff layer). */
  upperDir?: string;
  /** Overlay lower dirs (the image's layers), top-most first. */
  lowerDirs?: string[];
  /** Overlay merged dir (the whole filesystem view while running). */
  mergedDir?: string;
  pid?: number;
  running: boolean;
  /** Settings of the container that no migration carries (docker-settings.ts); a migration refuses it while any is listed. */
  notCarried?: string[];
  /** Volumes and binds as Docker reports them. */
  mounts: { type: string; name?: string; driver?: string; source: string; destination: string; readOnly: boolean }[];
}

/** A Docker network as this host's Docker sees it (its first IPv4 IPAM config). */
export interface NetworkInfo {
  driver: string;
  subnet?: string;
  /** This host's IPRange inside the subnet (where its Docker IPAM would allocate). */
  ipRange?: string;
  gateway?: string;
  /** IPv4 addresses (no prefix length) of containers on this host attached to the network, or pinned to it while stopped. */
  addressesInUse: string[];
}

export interface CheckpointOptions {
  exit: boolean;
  checkpointDir?: string;
  onFrozen?: () => void;
  onDumped?: () => void;
}

export interface ContainerRuntime {
  info(): Promise<RuntimeInfo>;
  /** Herd-managed containers of this host (label io.herd.id). */
  list(hostId: string): Promise<ContainerSummary[]>;
  /** Finds a container by name or Herd id; throws UNKNOWN_CONTAINER or NOT_MANAGED. */
  inspect(ref: string, hostId: string): Promise<ContainerDetails>;
  hasImage(image: string): Promise<boolean>;
  /** Docker ids of containers created as the target of this migration. */
  findByMigration(migrationId: string): Promise<string[]>;
  /** Every container created as a migration's target (the label stays after the migration), with its Docker state. */
  migrationCopies(): Promise<{ dockerId: string; migrationId: string; state: string }[]>;
  /** Names of a container's checkpoints (its checkpoint dir's entries). */
  checkpointNames(dockerId: string): string[];
  /** Creates (not starts) a managed container. Throws IMAGE_MISSING, CONFLICT. */
  create(spec: ContainerSpec & { herdId: string }, extraLabels?: Record<string, string>, options?: { runtime?: string }): Promise<string>;
  start(dockerId: string): Promise<void>;
  stop(dockerId: string, timeoutSeconds?: number): Promise<void>;
  remove(dockerId: string, force?: boolean): Promise<void>;
  /**
   * Removes a migration's copy unless it was ever started, atomically with respect to a start
   * in progress (Docker holds the container's lock for a whole start, restore included):
   * "started" when it runs, or ran and exited (a copy that started is the container: its
   * process may have ended after the source removed its own copy), "removed", or "gone" when
   * there was no such container.
   */
  removeUnlessStarted(dockerId: string): Promise<'removed' | 'started' | 'gone'>;
  /**
   * CRIU checkpoint through Docker into the container's own checkpoint dir; `exit` stops the
   * container after the dump, and the call resolves once Docker saw it stop. `onDumped`
   * hears when the images are complete, which may be before (the images may go meanwhile).
   * `onFrozen` runs once the container's processes are frozen and before CRIU dumps them
   * (where the runtime cannot freeze them itself, right before the dump).
   */
  checkpoint(dockerId: string, checkpointId: string, options: CheckpointOptions): Promise<void>;
  /**
   * Thaws a running container's cgroup that a checkpoint froze and did not thaw (the daemon
   * died between freezing it and CRIU's seizing it); true when it was frozen. Not for a
   * container Docker paused (its state says "paused").
   */
  thawAfterCheckpoint(dockerId: string): Promise<boolean>;
  /** Starts a (stopped) container from one of its checkpoints. */
  startFromCheckpoint(dockerId: string, checkpointId: string): Promise<void>;
  /** Removes a checkpoint; missing is fine. */
  deleteCheckpoint(dockerId: string, checkpointId: string): Promise<void>;
  /** Where Docker keeps a container's checkpoint (`<data-root>/containers/<id>/checkpoints/<name>`). */
  checkpointPath(dockerId: string, checkpointId: string): string;
  /** Where a direct restore's images are received (`<data-root>/containers/<id>/herd-images/<name>`: removed with the container). */
  stagedImagesPath(dockerId: string, checkpointId: string): string;
  /** The whole filesystem of a (stopped) container as a tar stream (docker export). */
  exportFilesystem(dockerId: string): Promise<NodeJS.ReadableStream>;
  /** Calls `onChange` whenever a managed container is created, started, stopped or removed (by Herd or not); returns the stop function. */
  watchChanges?(onChange: () => void): () => void;
  /** A named volume: where its data lives, its driver and the containers using it; undefined when there is none. */
  volumeInfo(name: string): Promise<{ mountpoint: string; driver: string; usedBy: string[] } | undefined>;
  /** Removes a named volume; missing is fine. */
  removeVolume(name: string): Promise<void>;
  /** Changes a container's restart policy (docker update --restart). */
  setRestartPolicy(dockerId: string, policy: { name: string; maximumRetryCount?: number }): Promise<void>;
  /** Free bytes on the filesystem that holds Docker's data root. */
  freeBytes(): Promise<number>;
  /** A network of this host's Docker (docker network inspect); throws DOCKER_FAILED when there is none of that name. */
  networkInfo(name: string): Promise<NetworkInfo>;
}
