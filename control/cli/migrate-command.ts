/** `herd migrate <container> --to <host>`: live-migrates a container, printing each phase and the timings. */
import { Command, Option } from 'commander';
import { decode } from '../../protocol/codec.ts';
import { newMigrationId } from '../../protocol/ids.ts';
import { FS_MODES, migrationEventSchema, type FsMode, type MigrationEvent, type MigrationResult } from '../../protocol/messages.ts';
import { topics } from '../../protocol/topics.ts';
import { printJson, withBrokerOption, withSession } from './context.ts';

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

export function registerMigrateCommand(program: Command): void {
  withBrokerOption(program.command('migrate'))
    .description('live-migrate a running container to another host (exits non-zero if it failed or was rolled back)')
    .argument('<container>', 'name or Herd id')
    .requiredOption('--to <host>', 'target host')
    .addOption(new Option('--fs <mode>', 'filesystem to carry: diff = overlay upper dir, full = whole filesystem, none = memory only').choices(FS_MODES).default('diff'))
    .option('--json', 'print the result as JSON (events still go to stderr)')
    .action(async (container: string, opts: { to: string; fs: FsMode; json?: boolean }, cmd: Command) => {
      await withSession(cmd, async ({ view, rpc, client }) => {
        const found = view.findContainer(container);
        view.requireOnline(found.hostId);
        view.requireOnline(opts.to);
        const migrationId = newMigrationId();
        const out = opts.json === true ? process.stderr : process.stdout;
        const eventsTopic = topics.migrationEvents(migrationId);
        client.on('message', (topic, payload) => {
          if (topic !== eventsTopic) return;
          try {
            out.write(`${describeEvent(decode(migrationEventSchema, payload, 'migration event'))}\n`);
          } catch {
            // a malformed event is not ours to print
          }
        });
        await client.subscribeAsync(eventsTopic, { qos: 1 });
        out.write(`migrating ${found.name} (${found.herdId}) from ${found.hostId} to ${opts.to}, fs ${opts.fs}, id ${migrationId}\n`);
        const result = await rpc.request<MigrationResult>(found.hostId, 'migration.start', { migrationId, container: found.herdId, targetHost: opts.to, fsMode: opts.fs }, { timeoutMs: 15 * 60_000 });
        await new Promise((r) => setTimeout(r, 100)); // let the last events print
        if (opts.json === true) printJson(result);
        else process.stdout.write(`${formatTimings(result)}\n`);
      });
    });
}
