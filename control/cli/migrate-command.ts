/** `herd migrate <container> --to <host>`: live-migrates a container, printing each phase and the timings. */
import { Command, Option } from 'commander';
import { decode } from '../../protocol/codec.ts';
import { newMigrationId } from '../../protocol/ids.ts';
import { FS_MODES, migrationEventSchema, type FsMode, type MigrationEvent, type MigrationResult } from '../../protocol/messages.ts';
import { topics } from '../../protocol/topics.ts';
import { printJson, withBrokerOption, withSession, type Session } from './context.ts';

function describeEvent(e: MigrationEvent): string {
  const took = e.durationMs === undefined ? '' : ` ${e.durationMs.toFixed(1)} ms`;
  const bytes = e.bytes === undefined ? '' : ` ${(e.bytes / 2 ** 20).toFixed(2)} MiB`;
  const detail = e.detail === undefined ? '' : ` (${e.detail})`;
  const error = e.error === undefined ? '' : ` [${e.error.code}] ${e.error.message}`;
  return `${e.at.slice(11, 23)}  ${e.phase.padEnd(10)} ${e.status}${took}${bytes}${detail}${error}`;
}

export function formatTimings(r: MigrationResult): string {
  const t = r.timings;
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;
  return [
    `migrated ${r.container} ${r.sourceHost} -> ${r.targetHost} (fs ${r.fsMode}, ${r.migrationId})`,
    `  checkpoint ${t.checkpointMs.toFixed(1)} ms   transfer ${t.transferMs.toFixed(1)} ms   restore ${t.restoreMs.toFixed(1)} ms`,
    `  downtime   ${t.downtimeMs.toFixed(1)} ms   total ${t.totalMs.toFixed(1)} ms`,
    `  bytes      checkpoint ${mib(t.checkpointBytes)}   filesystem ${mib(t.filesystemBytes)}`,
  ].join('\n');
}

/** Runs one migration through the session, calling onEvent for each of its events; resolves with the result or throws the migration's error. */
export async function migrateOnce(session: Session, container: string, to: string, fsMode: FsMode, onEvent: (e: MigrationEvent) => void, onStart?: (line: string) => void): Promise<MigrationResult> {
  const { view, rpc, client } = session;
  const found = view.findContainer(container);
  view.requireOnline(found.hostId);
  view.requireOnline(to);
  const migrationId = newMigrationId();
  const eventsTopic = topics.migrationEvents(migrationId);
  const listener = (topic: string, payload: Buffer) => {
    if (topic !== eventsTopic) return;
    try {
      onEvent(decode(migrationEventSchema, payload, 'migration event'));
    } catch {
      // a malformed event is not ours to print
    }
  };
  client.on('message', listener);
  try {
    await client.subscribeAsync(eventsTopic, { qos: 1 });
    onStart?.(`migrating ${found.name} (${found.herdId}) from ${found.hostId} to ${to}, fs ${fsMode}, id ${migrationId}`);
    const result = await rpc.request<MigrationResult>(found.hostId, 'migration.start', { migrationId, container: found.herdId, targetHost: to, fsMode }, { timeoutMs: 15 * 60_000 });
    await new Promise((r) => setTimeout(r, 100)); // let the last events arrive
    return result;
  } finally {
    client.off('message', listener);
    await client.unsubscribeAsync(eventsTopic).catch(() => undefined);
  }
}

export function registerMigrateCommand(program: Command): void {
  withBrokerOption(program.command('migrate'))
    .description('live-migrate a running container to another host (exits non-zero if it failed or was rolled back)')
    .argument('<container>', 'name or Herd id')
    .requiredOption('--to <host>', 'target host')
    .addOption(new Option('--fs <mode>', 'filesystem to carry: diff = overlay upper dir, full = whole filesystem, none = memory only').choices(FS_MODES).default('diff'))
    .option('--json', 'print the result as JSON (events still go to stderr)')
    .action(async (container: string, opts: { to: string; fs: FsMode; json?: boolean }, cmd: Command) => {
      await withSession(cmd, async (session) => {
        const out = opts.json === true ? process.stderr : process.stdout;
        const result = await migrateOnce(session, container, opts.to, opts.fs, (e) => out.write(`${describeEvent(e)}\n`), (line) => out.write(`${line}\n`));
        if (opts.json === true) printJson(result);
        else process.stdout.write(`${formatTimings(result)}\n`);
      });
    });
}
