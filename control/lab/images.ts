/**
 * Base images for the lab, built locally (no registry is reachable): a busybox image
 * from Debian's busybox-static, and a sysbench image (busybox plus sysbench, the shared
 * libraries it links — its MySQL and PostgreSQL drivers among them — and its Lua scripts
 * in /usr/share/sysbench, so that an oltp_* client runs in a container). Imported on the
 * first host, then saved and loaded on the others so that every host has identical image
 * ids.
 */
import { cpSync, createReadStream, createWriteStream, existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync, copyFileSync, chmodSync } from 'node:fs';
import { dirname } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { statSync } from 'node:fs';
import type { Progress } from '../cli/progress.ts';
import Docker from 'dockerode';
import { HerdError } from '../../protocol/errors.ts';
import { mustRun, runCommand } from './shell.ts';

export const LAB_IMAGES = {
  busybox: 'herd/busybox:latest',
  sysbench: 'herd/sysbench:latest',
} as const;

async function buildBusyboxRoot(root: string): Promise<void> {
  rmSync(root, { recursive: true, force: true });
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'tmp', 'root', 'proc', 'sys', 'dev', 'var/log', 'data']) mkdirSync(`${root}/${d}`, { recursive: true });
  chmodSync(`${root}/tmp`, 0o1777);
  copyFileSync('/bin/busybox', `${root}/bin/busybox`);
  chmodSync(`${root}/bin/busybox`, 0o755);
  const applets = (await mustRun('listing busybox applets', '/bin/busybox', ['--list-full'])).split('\n').filter((l) => l.trim() !== '');
  for (const applet of applets) {
    const target = `${root}/${applet}`;
    if (applet === 'bin/busybox' || existsSync(target)) continue;
    mkdirSync(dirname(target), { recursive: true });
    symlinkSync('/bin/busybox', target);
  }
  writeFileSync(`${root}/etc/passwd`, 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  writeFileSync(`${root}/etc/group`, 'root:x:0:\nnobody:x:65534:\n');
}

/** Copies a dynamically linked binary and every library ldd names into root, at the same paths. */
async function addBinaryWithLibs(root: string, binary: string): Promise<void> {
  const out = await mustRun(`listing libraries of ${binary}`, 'ldd', [binary]);
  const paths = new Set<string>([binary]);
  for (const line of out.split('\n')) {
    const m = /(\/\S+)\s+\(0x/.exec(line);
    if (m?.[1] !== undefined) paths.add(m[1]);
  }
  for (const p of paths) {
    const target = `${root}${p}`;
    mkdirSync(dirname(target), { recursive: true });
    rmSync(target, { force: true });
    copyFileSync(p, target);
    chmodSync(target, 0o755);
  }
}

async function importTar(docker: Docker, tarPath: string, repoTag: string, cmd: string): Promise<void> {
  const [repo, tag] = repoTag.split(':') as [string, string];
  const stream = await docker.importImage(tarPath, { repo, tag, changes: [`CMD ["${cmd}"]`] } as object);
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve()));
  });
}

/** Builds the image tarballs (docker-save format) once into imagesDir, using the first host's daemon. */
export async function buildLabImages(imagesDir: string, builder: Docker): Promise<Record<keyof typeof LAB_IMAGES, string>> {
  mkdirSync(imagesDir, { recursive: true });
  const saved = { busybox: `${imagesDir}/busybox.image.tar`, sysbench: `${imagesDir}/sysbench.image.tar` };
  if (existsSync(saved.busybox) && existsSync(saved.sysbench)) return saved;
  if (!existsSync('/bin/busybox')) throw new HerdError('MISSING_DEPENDENCY', 'busybox-static is not installed (/bin/busybox missing): run scripts/setup');
  const sysbench = (await runCommand('sh', ['-c', 'command -v sysbench'])).stdout.trim();
  if (sysbench === '') throw new HerdError('MISSING_DEPENDENCY', 'sysbench is not installed: run scripts/setup');

  const work = `${imagesDir}/build`;
  for (const [key, repoTag] of Object.entries(LAB_IMAGES) as [keyof typeof LAB_IMAGES, string][]) {
    const root = `${work}/${key}-root`;
    await buildBusyboxRoot(root);
    if (key === 'sysbench') {
      await addBinaryWithLibs(root, sysbench);
      if (existsSync('/usr/share/sysbench')) cpSync('/usr/share/sysbench', `${root}/usr/share/sysbench`, { recursive: true });
    }
    const rootTar = `${work}/${key}-rootfs.tar`;
    await mustRun(`packing ${key} rootfs`, 'tar', ['--numeric-owner', '-C', root, '-cf', rootTar, '.']);
    try {
      await importTar(builder, rootTar, repoTag, '/bin/sh');
      const image = await builder.getImage(repoTag).get();
      await pipeline(image, createWriteStream(`${saved[key]}.part`));
      await mustRun('finishing image tarball', 'mv', [`${saved[key]}.part`, saved[key]]);
    } catch (err) {
      throw new HerdError('LAB_FAILED', `building image ${repoTag}: ${(err as Error).message}`, { cause: err });
    }
  }
  rmSync(work, { recursive: true, force: true });
  return saved;
}

/** Loads the saved images into a host's daemon unless it already has them. */
/** What lab work reports: phases, and bytes or counts as they go (control/cli/progress.ts). */
export type LabProgress = Pick<Progress, 'phase' | 'advance'>;

/** A file read for Docker, its bytes reported to `progress` under `label` as they are read. */
export function readCounted(file: string, label: string, progress: LabProgress | undefined): Readable {
  const source = createReadStream(file);
  if (progress === undefined) return source;
  const total = statSync(file).size;
  let done = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, callback) {
      done += chunk.length;
      progress.advance(label, done, total, 'bytes');
      callback(null, chunk);
    },
  });
  source.on('error', (err) => counter.destroy(err));
  return source.pipe(counter);
}

export async function loadLabImages(docker: Docker, saved: Record<keyof typeof LAB_IMAGES, string>, progress?: LabProgress, hostId = ''): Promise<void> {
  for (const [key, repoTag] of Object.entries(LAB_IMAGES) as [keyof typeof LAB_IMAGES, string][]) {
    const present = await docker
      .getImage(repoTag)
      .inspect()
      .then(() => true)
      .catch(() => false);
    if (present) continue;
    const stream = await docker.loadImage(readCounted(saved[key], `${repoTag} → ${hostId}`, progress));
    await new Promise<void>((resolve, reject) => docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve())));
  }
}
