/**
 * Transfer grants: the directories a migration to this host may be sent into, and by whom.
 * The target writes one at prepare (`<migrations dir>/<id>.grant`: `source <host id>`, then
 * one real path per line: the images directory, the new container's upper dir, its volumes'
 * directories) and removes it when the restore begins or the migration ends. With `grants
 * required` in its config, the transfer key's forced command (bin/herd-ssh-command) receives,
 * applies blocks and pages, and prunes only in or under a directory granted to the peer
 * that logged in (its host id is in its key's line in authorized_keys), so that a peer
 * holding the key cannot write into other containers' upper dirs, checkpoints or image
 * layers under the data root, nor into another peer's migration.
 */
import { realpathSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { HerdError } from '../../protocol/errors.ts';
import { ID_PATTERN } from '../../protocol/topics.ts';

export const GRANT_SUFFIX = '.grant';

export const grantFile = (migrationsDir: string, migrationId: string) => `${migrationsDir}/${migrationId}${GRANT_SUFFIX}`;

/** The path the forced command compares with, as `realpath -m` gives it: symlinks resolved as far as the path exists (the receiver makes the rest). */
function realPath(dir: string): string {
  const path = resolve(dir);
  try {
    return realpathSync(path);
  } catch {
    const parent = dirname(path);
    return parent === path ? path : join(realPath(parent), basename(path));
  }
}

/** Grants the migration's source host its directories (replacing an earlier grant of it); atomic, so the forced command never reads half a list. */
export function writeGrant(migrationsDir: string, migrationId: string, sourceHost: string, dirs: readonly string[]): void {
  if (!ID_PATTERN.test(sourceHost)) throw new HerdError('BAD_MESSAGE', `cannot grant transfers to source host ${JSON.stringify(sourceHost)}: not a host id`);
  const real = [...new Set(dirs.map(realPath))];
  const bad = real.filter((d) => d.includes('\n') || d === '/');
  if (bad.length > 0) throw new HerdError('NOT_MIGRATABLE', `cannot grant transfers into ${bad.map((d) => JSON.stringify(d)).join(', ')} (a newline in the path, or /)`);
  const file = grantFile(migrationsDir, migrationId);
  writeFileSync(`${file}.tmp`, `source ${sourceHost}\n${real.join('\n')}\n`, { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

export function removeGrant(migrationsDir: string, migrationId: string): void {
  rmSync(grantFile(migrationsDir, migrationId), { force: true });
}
