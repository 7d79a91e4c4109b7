/**
 * `herd migrate <container> --to <host>`: live-migrates a container, printing each phase
 * and the timings. `--status <id>` shows how a migration ended (or where it is) as its
 * hosts recorded it; `--rollback <id>` settles an interrupted one now.
 */
import { Command, Option } from 'commander';
import { HerdError } from '../../protocol/errors.ts';
import { COMPRESSIONS, FS_MODES, RESTORE_PATHS, type Compression, type FsMode, type MigrationStatus, type RestorePath } from '../../protocol/messages.ts';
import { formatTimings, migrateOnce, migrationStatusEverywhere } from '../migrations/migration-client.ts';
import { migrationPrinter } from './migration-progress.ts';
import { cliProgress } from './progress.ts';
import { printJson, table, withBrokerOption, withSession } from './context.ts';

interface MigrateOptions {
  to?: string;
  fs: FsMode;
  restoreWith?: RestorePath;
  compress?: Compression;
  json?: boolean;
  status?: string;
  rollback?: string;
}

function statusTable(rows: MigrationStatus[]): string {
  return table(
    ['HOST', 'ROLE', 'STATE', 'PHASE', 'CONTAINER', 'SOURCE', 'TARGET', 'UPDATED', 'DETAIL'],
    rows.map((r) => [r.hostId, r.role ?? '', r.state, r.phase ?? '', r.container ?? '', r.sourceHost ?? '', r.targetHost ?? '', r.updatedAt ?? '', r.detail ?? r.error?.message ?? '']),
  );
}

export function registerMigrateCommand(program: Command): void {
  withBrokerOption(program.command('migrate'))
    .description('live-migrate a running container to another host (exits non-zero if it failed or was rolled back)')
    .argument('[container]', 'name or Herd id')
    .option('--to <host>', 'target host')
    .addOption(new Option('--fs <mode>', 'filesystem to carry: diff = overlay upper dir, full = whole filesystem, none = memory only').choices(FS_MODES).default('diff'))
    .addOption(new Option('--restore-with <path>', "how the target restores: direct = from the received images (herd-runc runtime), docker = through Docker's copies (default: the target's docker.restoreWith)").choices(RESTORE_PATHS))
    .addOption(new Option('--compress <how>', "compress the streams on the network: lz4 (pays on links slower than about 1 Gbit/s) or none (default: the source's transferCompression)").choices(COMPRESSIONS))
    .option('--status <migrationId>', "show what the hosts recorded of a migration (in flight, done, rolled back, in doubt)")
    .option('--rollback <migrationId>', 'settle an interrupted migration now on its source: back when the target does not run it, forward when it does')
    .option('--json', 'print the result as JSON (events still go to stderr)')
    .action(async (container: string | undefined, opts: MigrateOptions, cmd: Command) => {
      const modes = [opts.status, opts.rollback, container].filter((x) => x !== undefined).length;
      if (modes !== 1) throw new HerdError('BAD_USAGE', 'give a container to migrate (with --to), or --status <id>, or --rollback <id>');
      if (container !== undefined && opts.to === undefined) throw new HerdError('BAD_USAGE', '--to <host> is required to migrate');
      await withSession(cmd, async (session) => {
        if (opts.status !== undefined) {
          const rows = await migrationStatusEverywhere(session, opts.status);
          if (rows.length === 0) throw new HerdError('UNKNOWN_MIGRATION', `no online host knows migration ${opts.status} (herd history --json lists the migration ids)`);
          if (opts.json === true) printJson(rows);
          else process.stdout.write(`${statusTable(rows)}\n`);
          return;
        }
        if (opts.rollback !== undefined) {
          const rows = await migrationStatusEverywhere(session, opts.rollback);
          const source = rows.find((r) => r.role === 'source');
          if (source === undefined) throw new HerdError('UNKNOWN_MIGRATION', `no online host is the source of migration ${opts.rollback} (herd history --json lists the migration ids)`);
          const result = await session.rpc.request<MigrationStatus & { outcome: string }>(source.hostId, 'migration.rollback', { migrationId: opts.rollback, reason: 'herd migrate --rollback' }, { timeoutMs: 5 * 60_000 });
          if (opts.json === true) printJson(result);
          else process.stdout.write(`${result.outcome}\n${statusTable([result])}\n`);
          return;
        }
        const progress = cliProgress(opts.json);
        const printer = migrationPrinter(progress);
        const result = await migrateOnce(session, container as string, opts.to as string, opts.fs, printer.event, printer.line, { ...(opts.restoreWith === undefined ? {} : { restoreWith: opts.restoreWith }), ...(opts.compress === undefined ? {} : { compression: opts.compress }) }).finally(() => progress.end());
        if (opts.json === true) printJson(result);
        else process.stdout.write(`${formatTimings(result)}\n`);
      }, { reconnect: true }); // a migration outlives a broker restart
    });
}
