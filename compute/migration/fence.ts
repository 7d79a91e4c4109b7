/**
 * Fencing a migration's target over SSH, for a source that cannot reach the target's
 * compute daemon (killed, restarting, cut off from the broker) but must know, before it
 * resumes its own copy, that the target's copy is not running and never will.
 *
 * On the target, the transfer key's forced command (bin/herd-ssh-command `herd-fence <id>`),
 * with the target's own state dir and Docker socket from its receiver config:
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
import type { ClientChannel } from 'ssh2';
import { HerdError } from '../../protocol/errors.ts';
import { FENCE_COMMAND, type SshSessions } from './ssh-transfer.ts';

export type FenceOutcome = 'running' | 'fenced';

/** Runs the fence on the target through an SSH session to it. */
export async function fenceTarget(ssh: SshSessions, migrationId: string, timeoutMs = 120_000): Promise<FenceOutcome> {
  const fail = (message: string, cause?: unknown) => new HerdError('IN_DOUBT', `fencing migration ${migrationId} on the target over SSH failed: ${message}`, { cause });
  let channel: ClientChannel;
  try {
    channel = await ssh.exec(FENCE_COMMAND(migrationId));
  } catch (err) {
    throw fail((err as Error).message, err);
  }
  return new Promise((resolve, reject) => {
    let out = '';
    let errText = '';
    const timer = setTimeout(() => {
      channel.close();
      reject(fail(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    channel.on('data', (d: Buffer) => (out += d.toString()));
    channel.stderr.on('data', (d: Buffer) => (errText += d.toString()));
    channel.on('close', (code: number | null) => {
      clearTimeout(timer);
      const answer = out.trim().split('\n').pop();
      if (code === 0 && answer === 'RUNNING') resolve('running');
      else if (code === 0 && answer === 'FENCED') resolve('fenced');
      else reject(fail(`script exited ${code ?? 'by signal'}: ${errText.trim().slice(0, 300) || out.trim().slice(0, 300)}`));
    });
  });
}
