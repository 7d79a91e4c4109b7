/**
 * Real servers for the lab, in images built locally (no registry is reachable) with
 * debootstrap from this machine's Debian mirror: Debian 12's packages, as an operator
 * would run them.
 *   - `herd/mariadb`: MariaDB 10.11. Clients: user `sbtest`, password `sbtest`, database
 *     `sbtest` (what sysbench's oltp_* scripts expect), from anywhere; port 3306.
 *   - `herd/redis`: Redis 7.0, in memory only (no RDB or AOF file), no password, port 6379.
 * The root file system is cached under /var/cache/herd/lab-images (debootstrap is paid
 * once per machine, not per lab); the image is imported on the first host and loaded on
 * the others (identical image ids). The servers run as root: on machines whose root lacks
 * CAP_SYS_RESOURCE, CRIU cannot dump processes of another user (see `herd doctor`).
 */
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { dirname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type Docker from 'dockerode';
import { HerdError } from '../../protocol/errors.ts';
import { readCounted, type LabProgress } from './images.ts';
import { mustRun, runCommand } from './shell.ts';

export const MARIADB_CREDENTIALS = { user: 'sbtest', password: 'sbtest', database: 'sbtest', port: 3306 } as const;
export const REDIS_PORT = 6379;
const CACHE_DIR = '/var/cache/herd/lab-images';

const MARIADB_START = `#!/bin/sh
# herd/mariadb: first start initialises the data directory, then the server runs as root.
set -e
mkdir -p /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --user=root --skip-test-db >/dev/null
fi
exec mariadbd --user=root --bind-address=0.0.0.0 --skip-name-resolve --innodb-buffer-pool-size=128M \\
  --innodb-use-native-aio=0 --skip-log-bin --init-file=/etc/herd/init.sql
`;

const MARIADB_INIT_SQL = `CREATE DATABASE IF NOT EXISTS ${MARIADB_CREDENTIALS.database};
CREATE USER IF NOT EXISTS '${MARIADB_CREDENTIALS.user}'@'%' IDENTIFIED BY '${MARIADB_CREDENTIALS.password}';
GRANT ALL ON ${MARIADB_CREDENTIALS.database}.* TO '${MARIADB_CREDENTIALS.user}'@'%';
`;

const REDIS_START = `#!/bin/sh
# herd/redis: in memory only, listening on every address, as root.
exec redis-server --bind 0.0.0.0 --port ${REDIS_PORT} --protected-mode no --save '' --appendonly no --daemonize no
`;

interface DebianImage {
  /** Debian packages debootstrap includes. */
  packages: string[];
  /** Files written into the root (path → content; `/start.sh` is the command). */
  files: Record<string, string>;
  /** Paths removed from the root after debootstrap (besides apt's caches and docs). */
  trim: string[];
  port: number;
  what: string;
}

export const DEBIAN_IMAGES = {
  mariadb: {
    packages: ['mariadb-server'],
    files: { '/start.sh': MARIADB_START, '/etc/herd/init.sql': MARIADB_INIT_SQL },
    trim: ['/var/lib/mysql/*'],
    port: MARIADB_CREDENTIALS.port,
    what: "Debian 12's MariaDB 10.11, user/password/database sbtest",
  },
  redis: {
    packages: ['redis-server'],
    files: { '/start.sh': REDIS_START },
    trim: ['/var/lib/redis/*'],
    port: REDIS_PORT,
    what: "Debian 12's Redis 7.0, in memory, no password",
  },
} as const satisfies Record<string, DebianImage>;
export type DebianImageName = keyof typeof DEBIAN_IMAGES;

/** `herd/<name>:latest`. */
export const debianImageTag = (name: DebianImageName) => `herd/${name}:latest`;

/**
 * The command of a sysbench OLTP client container (herd/sysbench) against a herd/mariadb
 * server at `host`: it prepares the tables (retrying until the server answers: it needs a
 * few seconds to start), then runs `script` for ever, reporting ops/s every `reportSeconds`.
 */
export function sysbenchOltpClient(host: string, options: { script?: string; threads?: number; tables?: number; tableSize?: number; reportSeconds?: number } = {}): string[] {
  const script = options.script ?? 'oltp_read_write';
  const db = [`--db-driver=mysql`, `--mysql-host=${host}`, `--mysql-user=${MARIADB_CREDENTIALS.user}`, `--mysql-password=${MARIADB_CREDENTIALS.password}`, `--mysql-db=${MARIADB_CREDENTIALS.database}`, `--tables=${options.tables ?? 2}`, `--table-size=${options.tableSize ?? 10_000}`].join(' ');
  return ['sh', '-c', `until sysbench ${script} ${db} prepare >/dev/null 2>&1; do sysbench ${script} ${db} cleanup >/dev/null 2>&1; sleep 3; done; exec sysbench ${script} ${db} --threads=${options.threads ?? 2} --time=0 --report-interval=${options.reportSeconds ?? 1} run`];
}

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
async function rootfsTarball(name: DebianImageName, say: (line: string) => void): Promise<string> {
  const image: DebianImage = DEBIAN_IMAGES[name];
  const tarball = `${CACHE_DIR}/${name}-rootfs.tar`;
  if (existsSync(tarball)) return tarball;
  if ((await runCommand('sh', ['-c', 'command -v debootstrap'])).stdout.trim() === '') throw new HerdError('MISSING_DEPENDENCY', 'debootstrap is not installed: run scripts/setup');
  mkdirSync(CACHE_DIR, { recursive: true });
  const root = `${CACHE_DIR}/${name}-root`;
  rmSync(root, { recursive: true, force: true });
  say(`${debianImageTag(name)}: debootstrap of Debian 12 with ${image.packages.join(', ')} (once per machine, about a minute)`);
  const r = await runCommand('debootstrap', ['--variant=minbase', `--include=${image.packages.join(',')}`, 'bookworm', root, debianMirror()], { timeoutMs: 900_000 });
  if (r.code !== 0) throw new HerdError('LAB_FAILED', `building ${debianImageTag(name)}: debootstrap failed: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`);
  const trim = ['/var/cache/apt/archives/*.deb', '/var/lib/apt/lists/*', '/usr/share/doc', '/usr/share/man', ...image.trim].map((p) => `${root}${p}`);
  await mustRun(`trimming the ${name} root`, 'sh', ['-c', `rm -rf ${trim.join(' ')}`]);
  for (const [path, content] of Object.entries(image.files)) {
    mkdirSync(dirname(`${root}${path}`), { recursive: true });
    writeFileSync(`${root}${path}`, content);
    if (path === '/start.sh') chmodSync(`${root}${path}`, 0o755);
  }
  await mustRun(`packing the ${name} root`, 'tar', ['--numeric-owner', '-C', root, '-cf', `${tarball}.part`, '.']);
  await mustRun(`finishing the ${name} root tarball`, 'mv', [`${tarball}.part`, tarball]);
  rmSync(root, { recursive: true, force: true });
  return tarball;
}

const hasImage = (docker: Docker, tag: string) =>
  docker
    .getImage(tag)
    .inspect()
    .then(() => true)
    .catch(() => false);

const follow = (docker: Docker, stream: NodeJS.ReadableStream) => new Promise<void>((resolve, reject) => docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve())));

/** Makes sure every host has herd/<name> (built once per machine, imported once per lab). */
export async function ensureDebianImage(name: DebianImageName, dockers: Docker[], imagesDir: string, progress: LabProgress): Promise<void> {
  const say = (line: string) => progress.phase(line);
  const tag = debianImageTag(name);
  const missing: Docker[] = [];
  for (const d of dockers) if (!(await hasImage(d, tag))) missing.push(d);
  if (missing.length === 0) return;
  const saved = `${imagesDir}/${name}.image.tar`;
  if (!existsSync(saved)) {
    const builder = dockers[0] as Docker;
    if (!(await hasImage(builder, tag))) {
      const tarball = await rootfsTarball(name, say);
      say(`${tag}: importing the image`);
      const [repo, version] = tag.split(':') as [string, string];
      await follow(builder, await builder.importImage(tarball, { repo, tag: version, changes: ['CMD ["/start.sh"]', `EXPOSE ${DEBIAN_IMAGES[name].port}`] } as object));
    }
    mkdirSync(imagesDir, { recursive: true });
    await pipeline(await builder.getImage(tag).get(), createWriteStream(`${saved}.part`));
    await mustRun(`finishing the ${name} image tarball`, 'mv', [`${saved}.part`, saved]);
  }
  for (const [i, d] of missing.entries()) {
    if (await hasImage(d, tag)) continue;
    say(`${tag}: loading the image on host ${i + 1} of ${missing.length}`);
    await follow(d, await d.loadImage(readCounted(saved, tag, progress)));
  }
}
