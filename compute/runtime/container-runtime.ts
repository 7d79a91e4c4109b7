/**
 * The one interface through which the compute daemon drives its host's containers.
 * The real implementation is docker-runtime.ts (dockerode + Docker's CRIU checkpoints).
 */
import type { ContainerSpec, ContainerSummary } from '../../protocol/messages.ts';

/** Label that makes a container Herd-managed; its value is the stable Herd id. */
export const HERD_ID_LABEL = 'io.herd.id';
/** Label set while a container is the not-yet-restored target of a migration. */
export const HERD_MIGRATION_LABEL = 'io.herd.migration';

export interface RuntimeInfo {
  dockerVersion: string;
  dataRoot: string;
  storageDriver: string;
  experimental: boolean;
}

export interface ContainerDetails extends ContainerSummary {
  spec: ContainerSpec & { herdId: string };
  /** Overlay upper dir (the container's diff layer). */
  upperDir?: string;
  /** Overlay merged dir (the whole filesystem view while running). */
  mergedDir?: string;
  pid?: number;
  running: boolean;
}

export interface ContainerRuntime {
  info(): Promise<RuntimeInfo>;
  /** Herd-managed containers of this host (label io.herd.id). */
  list(hostId: string): Promise<ContainerSummary[]>;
  /** Finds a container by name or Herd id; throws UNKNOWN_CONTAINER or NOT_MANAGED. */
  inspect(ref: string, hostId: string): Promise<ContainerDetails>;
  hasImage(image: string): Promise<boolean>;
  /** Creates (not starts) a managed container. Throws IMAGE_MISSING, CONFLICT. */
  create(spec: ContainerSpec & { herdId: string }, extraLabels?: Record<string, string>): Promise<string>;
  start(dockerId: string): Promise<void>;
  stop(dockerId: string, timeoutSeconds?: number): Promise<void>;
  remove(dockerId: string, force?: boolean): Promise<void>;
}
