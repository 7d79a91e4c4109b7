/**
 * `herd logs <container> [-f]`: finds the container's Herd id and prints its log.
 *
 * A Herd id is taken as is when its log exists. A name is looked up in the broker's
 * retained container lists (the containers running now, on any online host); when the
 * broker is unreachable or does not know the name (a removed container), the names the
 * monitor recorded beside the logs are used, newest log first.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { watchCluster } from '../protocol/cluster-view.ts';
import { HerdError, toHerdError } from '../protocol/errors.ts';
import { silentLogger } from '../protocol/log.ts';
import { closeBroker, type BrokerEndpoint } from '../protocol/mqtt.ts';
import { connectCommandClient } from '../protocol/rpc.ts';
import { ID_PATTERN } from '../protocol/topics.ts';
import { followLog, readLog } from './log-reader.ts';
import { herdIdsNamed, logFileName, type LogRecord } from './log-store.ts';

export async function resolveLogRef(ref: string, logsDir: string, broker: BrokerEndpoint): Promise<string> {
  if (ID_PATTERN.test(ref) && existsSync(join(logsDir, logFileName(ref)))) return ref;
  let brokerProblem: string | undefined;
  try {
    const client = await connectCommandClient(broker, 'herd-logs');
    try {
      const view = await watchCluster(client, silentLogger);
      try {
        return view.findContainer(ref).herdId;
      } finally {
        await view.close();
      }
    } finally {
      await closeBroker(client);
    }
  } catch (err) {
    const e = toHerdError(err);
    if (e.code !== 'UNKNOWN_CONTAINER') brokerProblem = e.message;
  }
  const named = herdIdsNamed(logsDir, ref);
  if (named[0] !== undefined) return named[0];
  throw new HerdError('UNKNOWN_CONTAINER', `no container named "${ref}" (and no log with that Herd id) in ${logsDir}${brokerProblem === undefined ? '' : `; the broker could not be asked: ${brokerProblem}`}`);
}

export interface RunLogsOptions {
  path: string;
  follow: boolean;
  tail?: number;
  format: 'text' | 'timestamps' | 'json';
  out?: (stream: 'stdout' | 'stderr', text: string) => void;
  signal?: AbortSignal;
}

export function renderRecord(r: LogRecord, format: RunLogsOptions['format']): string {
  if (format === 'json') return `${JSON.stringify(r)}\n`;
  if (format === 'timestamps') return `${r.at} ${r.hostId} ${r.text}\n`;
  return `${r.text}\n`;
}

export async function runLogs(options: RunLogsOptions): Promise<void> {
  const out = options.out ?? ((stream, text) => (stream === 'stdout' ? process.stdout : process.stderr).write(text));
  const print = (records: LogRecord[]) => {
    // Like docker logs: stderr lines to stderr (JSON records all go to stdout).
    for (const r of records) out(options.format === 'json' ? 'stdout' : r.stream, renderRecord(r, options.format));
  };
  if (!existsSync(options.path) && !options.follow) {
    process.stderr.write(`no log lines recorded yet (${options.path})\n`);
    return;
  }
  const first = readLog(options.path, options.tail);
  print(first.records);
  if (!options.follow) return;
  const signal = options.signal ?? stopOnSignals();
  await followLog(options.path, first.offset, print, { signal, ...(first.ino === undefined ? {} : { ino: first.ino }) });
}

function stopOnSignals(): AbortSignal {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return controller.signal;
}
