/**
 * Fencing a migration's target over SSH, for a source that cannot reach the target's
 * compute daemon (killed, restarting, cut off from the broker) but must know, before it
 * resumes its own copy, that the target's copy is not running and never will.
 *
 * On the target, as root, the script:
 * 1. answers from the target's tombstone when the migration already ended there;
 * 2. writes the fence marker `<stateDir>/migrations/<id>.fence` (and syncs): the target
 *    daemon saves its "restoring" record *before* it checks for the marker, so either it
 *    sees the marker and never restores, or its restore has begun and step 3 sees it;
 * 3. removes every container labelled with the migration with a plain `docker rm` (no
 *    force): Docker refuses to remove a running container, and a restore in progress holds
 *    the container's lock until it ends, so the rm either removes a copy that never ran or
 *    fails because the copy runs — never both.
 * It prints RUNNING (the target runs the container: roll forward) or FENCED (no copy runs
 * or can start there: roll back). Anything else (Docker down, no such state dir) leaves
 * the migration in doubt, to be tried again.
 */
import type { Client } from 'ssh2';
import { HerdError } from '../../protocol/errors.ts';
import type { HostStatus } from '../../protocol/messages.ts';
import { HERD_MIGRATION_LABEL } from '../runtime/container-runtime.ts';
import { shellQuote } from './ssh-transfer.ts';

export type FenceOutcome = 'running' | 'fenced';

export function fenceScript(fencing: NonNullable<HostStatus['fencing']>, migrationId: string): string {
  const q = shellQuote;
  return [
    'set -u',
    `dir=${q(`${fencing.stateDir}/migrations`)}; id=${q(migrationId)}; d="docker -H unix://"${q(fencing.dockerSocket)}`,
    '[ -d "$dir" ] || { echo "no migration state dir $dir" >&2; exit 2; }',
    'if [ -f "$dir/$id.target.done.json" ]; then',
    '  if grep -q \'"outcome": "committed"\' "$dir/$id.target.done.json"; then echo RUNNING; else echo FENCED; fi; exit 0',
    'fi',
    ': > "$dir/$id.fence" && sync -f "$dir/$id.fence" || exit 3',
    `ids=$($d ps -aq --no-trunc --filter label=${HERD_MIGRATION_LABEL}="$id") || exit 4`,
    'for c in $ids; do',
    '  $d rm "$c" >/dev/null 2>&1 && continue',
    '  r=$($d inspect -f "{{.State.Running}}" "$c" 2>/dev/null) || continue',
    '  if [ "$r" = true ]; then echo RUNNING; exit 0; fi',
    '  echo "cannot remove $c" >&2; exit 5',
    'done',
    'echo FENCED',
  ].join('\n');
}

/** Runs the fence on the target through an SSH connection to it. */
export function fenceTarget(conn: Client, fencing: NonNullable<HostStatus['fencing']>, migrationId: string, timeoutMs = 120_000): Promise<FenceOutcome> {
  return new Promise((resolve, reject) => {
    const fail = (message: string, cause?: unknown) => reject(new HerdError('IN_DOUBT', `fencing migration ${migrationId} on the target over SSH failed: ${message}`, { cause }));
    conn.exec(fenceScript(fencing, migrationId), (err, channel) => {
      if (err) return fail(err.message, err);
      let out = '';
      let errText = '';
      const timer = setTimeout(() => {
        channel.close();
        fail(`no answer within ${timeoutMs} ms`);
      }, timeoutMs);
      channel.on('data', (d: Buffer) => (out += d.toString()));
      channel.stderr.on('data', (d: Buffer) => (errText += d.toString()));
      channel.on('close', (code: number | null) => {
        clearTimeout(timer);
        const answer = out.trim().split('\n').pop();
        if (code === 0 && answer === 'RUNNING') resolve('running');
        else if (code === 0 && answer === 'FENCED') resolve('fenced');
        else fail(`script exited ${code ?? 'by signal'}: ${errText.trim().slice(0, 300) || out.trim().slice(0, 300)}`);
      });
    });
  });
}
