/**
 * herd/bench-large: the busybox rootfs plus ~N MB of incompressible files, for the
 * "large image, small diff" comparison of diff and full modes. Imported on h1 with
 * `docker import`, copied to h2 with `docker save | docker load` (identical image ids),
 * only if a host lacks it. Returns whether this run made it (so that it removes it).
 */
import { mkdirSync } from 'node:fs';
import type { LabHost } from '../../control/lab/layout.ts';
import { DOCKER_CLI, NAME_PREFIX, Registry, docker, mustDocker, mustSh, sq } from './bench-support.ts';

export const LARGE_IMAGE = 'herd/bench-large:latest';

async function hasImage(host: LabHost, image: string): Promise<boolean> {
  return (await docker(host, ['image', 'inspect', image])).code === 0;
}

export async function ensureLargeImage(src: LabHost, dst: LabHost, sizeMB: number, registry: Registry, tmpDir: string, keep: boolean, log: (s: string) => void): Promise<void> {
  const onSrc = await hasImage(src, LARGE_IMAGE);
  const onDst = await hasImage(dst, LARGE_IMAGE);
  if (onSrc && onDst) {
    log(`${LARGE_IMAGE} already on ${src.id} and ${dst.id}: using it (and leaving it)`);
    return;
  }
  const started = performance.now();
  if (!onSrc) {
    const root = registry.path(`${tmpDir}/large-root`);
    mkdirSync(root, { recursive: true });
    const tmpName = registry.dockerName(`${NAME_PREFIX}large-export`);
    await mustDocker('creating a busybox container to export its rootfs', src, ['create', '--name', tmpName, 'herd/busybox']);
    await mustSh('exporting the busybox rootfs', `${DOCKER_CLI} -H unix://${src.dockerSocket} export ${tmpName} | tar -x -C ${sq(root)}`);
    await registry.removeDocker(tmpName);
    const files = Math.max(1, Math.ceil(sizeMB / 100));
    const perFile = Math.ceil(sizeMB / files);
    await mustSh('writing the large files', `mkdir -p ${sq(root)}/opt/large && for i in $(seq 1 ${files}); do dd if=/dev/urandom of=${sq(root)}/opt/large/blob$i bs=1M count=${perFile} status=none; done`, 600_000);
    await mustSh('docker import on h1', `tar -c --numeric-owner -C ${sq(root)} . | ${DOCKER_CLI} -H unix://${src.dockerSocket} import -c 'CMD ["/bin/sh"]' - ${LARGE_IMAGE}`, 600_000);
    await mustSh('removing the build dir', `rm -rf ${sq(root)}`);
    if (!keep) registry.image(src, LARGE_IMAGE);
  }
  if (!onDst) {
    await mustSh('docker save | docker load onto h2', `${DOCKER_CLI} -H unix://${src.dockerSocket} save ${LARGE_IMAGE} | ${DOCKER_CLI} -H unix://${dst.dockerSocket} load`, 600_000);
    if (!keep) registry.image(dst, LARGE_IMAGE);
  }
  log(`built ${LARGE_IMAGE} (${sizeMB} MB of random files) in ${((performance.now() - started) / 1000).toFixed(1)} s${keep ? ' (kept: --keep)' : ''}`);
}
