/**
 * A real database for the lab: `herd/mariadb`, Debian 12's MariaDB 10.11 in an image built
 * locally (no registry is reachable) with debootstrap from this machine's Debian mirror.
 * The root file system is cached under /var/cache/herd/lab-images (debootstrap is paid
 * once per machine, not per lab); the image is imported on the first host and loaded on
 * the others (identical image ids). The server runs as root: on machines whose root lacks
 * CAP_SYS_RESOURCE, CRIU cannot dump processes of another user (see `herd doctor`).
 *
 * Clients: user `sbtest`, password `sbtest`, database `sbtest` (what sysbench's oltp_*
 * scripts expect), from anywhere; the server listens on 3306.
 */
import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type Docker from 'dockerode';
import { HerdError } from '../../protocol/errors.ts';
import { mustRun, runCommand } from './shell.ts';

export const MARIADB_IMAGE = 'herd/mariadb:latest';
export const MARIADB_CREDENTIALS = { user: 'sbtest', password: 'sbtest', database: 'sbtest', port: 3306 } as const;
const CACHE_DIR = '/var/cache/herd/lab-images';

const START = `#!/bin/sh
# herd/mariadb: first start initialises the data directory, then the server runs as root.
set -e
mkdir -p /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --user=root --skip-test-db >/dev/null
fi
exec mariadbd --user=root --bind-address=0.0.0.0 --skip-name-resolve --innodb-buffer-pool-size=128M \\
  --innodb-use-native-aio=0 --skip-log-bin --init-file=/etc/herd/init.sql
`;

const INIT_SQL = `CREATE DATABASE IF NOT EXISTS ${MARIADB_CREDENTIALS.database};
CREATE USER IF NOT EXISTS '${MARIADB_CREDENTIALS.user}'@'%' IDENTIFIED BY '${MARIADB_CREDENTIALS.password}';
GRANT ALL ON ${MARIADB_CREDENTIALS.database}.* TO '${MARIADB_CREDENTIALS.user}'@'%';
`;

/** This machine's Debian mirror for bookworm (deb822 sources or sources.list). */
export function debianMirror(): string {
  const fromEnv = process.env.HERD_DEBIAN_MIRROR;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const dir = '/etc/apt/sources.list.d';
  for (const name of existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith('.sources') && !n.startsWith('herd')) : []) {
    for (const stanza of readFileSync(`${dir}/${name}`, 'utf8').split(/\n\s*\n/)) {
      const uri = /^URIs:\s*(\S+)/m.exec(stanza)?.[1];
      if (uri !== undefined && /^Suites:.*\bbookworm\b/m.test(stanza)) return uri;
    }
  }
  const list = existsSync('/etc/apt/sources.list') ? readFileSync('/etc/apt/sources.list', 'utf8') : '';
  const m = /^deb\s+(\S+)\s+bookworm\b/m.exec(list);
  if (m?.[1] !== undefined) return m[1];
  throw new HerdError('MISSING_DEPENDENCY', 'no Debian bookworm mirror in /etc/apt: set HERD_DEBIAN_MIRROR');
}

/** The cached root file system tarball, built with debootstrap on first use. */
async function rootfsTarball(say: (line: string) => void): Promise<string> {
  const tarball = `${CACHE_DIR}/mariadb-rootfs.tar`;
  if (existsSync(tarball)) return tarball;
  if ((await runCommand('sh', ['-c', 'command -v debootstrap'])).stdout.trim() === '') throw new HerdError('MISSING_DEPENDENCY', 'debootstrap is not installed: run scripts/setup');
  mkdirSync(CACHE_DIR, { recursive: true });
  const root = `${CACHE_DIR}/mariadb-root`;
  rmSync(root, { recursive: true, force: true });
  say('herd/mariadb: debootstrap of Debian 12 with mariadb-server (once per machine, about a minute)');
  const r = await runCommand('debootstrap', ['--variant=minbase', '--include=mariadb-server', 'bookworm', root, debianMirror()], { timeoutMs: 900_000 });
  if (r.code !== 0) throw new HerdError('LAB_FAILED', `building herd/mariadb: debootstrap failed: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`);
  await mustRun('trimming the MariaDB root', 'sh', ['-c', `rm -rf ${root}/var/cache/apt/archives/*.deb ${root}/var/lib/apt/lists/* ${root}/usr/share/doc ${root}/usr/share/man ${root}/var/lib/mysql/*`]);
  mkdirSync(`${root}/etc/herd`, { recursive: true });
  writeFileSync(`${root}/start.sh`, START);
  chmodSync(`${root}/start.sh`, 0o755);
  writeFileSync(`${root}/etc/herd/init.sql`, INIT_SQL);
  await mustRun('packing the MariaDB root', 'tar', ['--numeric-owner', '-C', root, '-cf', `${tarball}.part`, '.']);
  await mustRun('finishing the MariaDB root tarball', 'mv', [`${tarball}.part`, tarball]);
  rmSync(root, { recursive: true, force: true });
  return tarball;
}

const hasImage = (docker: Docker) =>
  docker
    .getImage(MARIADB_IMAGE)
    .inspect()
    .then(() => true)
    .catch(() => false);

const follow = (docker: Docker, stream: NodeJS.ReadableStream) => new Promise<void>((resolve, reject) => docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve())));

/** Makes sure every host has herd/mariadb (built once per machine, imported once per lab). */
export async function ensureMariadbImage(dockers: Docker[], imagesDir: string, say: (line: string) => void): Promise<void> {
  const missing: Docker[] = [];
  for (const d of dockers) if (!(await hasImage(d))) missing.push(d);
  if (missing.length === 0) return;
  const saved = `${imagesDir}/mariadb.image.tar`;
  if (!existsSync(saved)) {
    const builder = dockers[0] as Docker;
    if (!(await hasImage(builder))) {
      const tarball = await rootfsTarball(say);
      say('herd/mariadb: importing the image');
      const [repo, tag] = MARIADB_IMAGE.split(':') as [string, string];
      await follow(builder, await builder.importImage(tarball, { repo, tag, changes: ['CMD ["/start.sh"]', 'EXPOSE 3306'] } as object));
    }
    mkdirSync(imagesDir, { recursive: true });
    await pipeline(await builder.getImage(MARIADB_IMAGE).get(), createWriteStream(`${saved}.part`));
    await mustRun('finishing the MariaDB image tarball', 'mv', [`${saved}.part`, saved]);
  }
  for (const d of missing) {
    if (await hasImage(d)) continue;
    say('herd/mariadb: loading the image on a host');
    await follow(d, await d.loadImage(createReadStream(saved)));
  }
}
