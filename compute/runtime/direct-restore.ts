/**
 * Direct restore: the target's copy runs under `herd-runc` (bin/herd-runc, a runtime
 * registered in Docker's daemon.json), and the checkpoint images are received outside
 * Docker's checkpoint dir. Docker's checkpoint dir then holds one small file naming them,
 * so `docker start --checkpoint` archives, stores and unpacks a few bytes instead of the
 * images (see ../shared/FACTS.md, "Docker's restore path"), and herd-runc hands runc the
 * received images. Docker still owns the container: ps, logs, stop, inspect work as ever.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { HerdError } from '../../protocol/errors.ts';
import type { RestorePath } from '../../protocol/messages.ts';
import type { RuntimeInfo } from './container-runtime.ts';

/** The runtime name daemon.json registers bin/herd-runc under. */
export const DIRECT_RESTORE_RUNTIME = 'herd-runc';
/** The file in Docker's checkpoint dir that names the received images (read by bin/herd-runc). */
export const STAGED_IMAGES_MARKER = 'herd-images';

/** auto: direct when Docker has the runtime, else Docker's path. */
export const RESTORE_MODES = ['auto', 'direct', 'docker'] as const;
export type RestoreMode = (typeof RESTORE_MODES)[number];

/** Which restore path this host uses, from the configured mode and what Docker has registered. */
export function resolveRestorePath(mode: RestoreMode, info: Pick<RuntimeInfo, 'runtimes'>): RestorePath {
  const registered = info.runtimes.includes(DIRECT_RESTORE_RUNTIME);
  if (mode === 'docker') return 'docker';
  if (mode === 'direct' && !registered) {
    throw new HerdError(
      'MISSING_DEPENDENCY',
      `docker.restoreWith is "direct" but Docker has no runtime "${DIRECT_RESTORE_RUNTIME}" (registered: ${info.runtimes.join(', ') || 'none'}): add "runtimes": {"${DIRECT_RESTORE_RUNTIME}": {"path": "/opt/herd/lib/herd-runc"}} (a copy of bin/herd-runc) to /etc/docker/daemon.json and reload Docker (the ansible docker role does), or set docker.restoreWith to "auto" or "docker"`,
    );
  }
  return registered ? 'direct' : 'docker';
}

/** Makes Docker's checkpoint dir `checkpointDir` point at the received `imagesDir`. */
export function pointCheckpointAt(checkpointDir: string, imagesDir: string): void {
  mkdirSync(checkpointDir, { recursive: true });
  writeFileSync(`${checkpointDir}/${STAGED_IMAGES_MARKER}`, imagesDir);
}
