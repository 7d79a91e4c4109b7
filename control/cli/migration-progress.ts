/**
 * How `herd migrate` shows a migration (control/cli/progress.ts): a line per phase event;
 * on a terminal, the bytes of the transfer (and of the filesystem pre-copy) as a bar redrawn
 * in place.
 */
import type { MigrationEvent } from '../../protocol/messages.ts';
import { describeEvent } from '../migrations/migration-client.ts';
import type { Progress } from './progress.ts';

export function migrationPrinter(progress: Progress): { event(e: MigrationEvent): void; line(text: string): void } {
  return {
    event(e) {
      if (e.status === 'progress') {
        if (e.bytes !== undefined) progress.advance(e.phase.padEnd(10), e.bytes, e.totalBytes, 'bytes');
        return;
      }
      progress.phase(describeEvent(e));
    },
    line: (text) => progress.line(text),
  };
}
