/**
 * How `herd migrate` shows a migration: a line per phase event; on a terminal, the transfer's
 * bytes as a bar redrawn in place. Not on a terminal (a pipe, a file, --json) it stays quiet:
 * the phase lines only, no bar and no control characters.
 */
import type { MigrationEvent } from '../../protocol/messages.ts';
import { describeEvent } from '../migrations/migration-client.ts';

export interface ProgressOut {
  write(text: string): unknown;
}

const MIB = 2 ** 20;
const CLEAR_LINE = '\r\x1b[2K';

/** `transfer   [##########..........]  12.3 / 24.6 MiB   50 %` (without a total: the bytes only). */
export function progressBar(bytes: number, totalBytes: number | undefined, width = 30): string {
  const moved = `${(bytes / MIB).toFixed(1)}`;
  if (totalBytes === undefined || totalBytes <= 0) return `transfer   ${moved} MiB`;
  const share = Math.min(1, bytes / totalBytes);
  const filled = Math.round(share * width);
  return `transfer   [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${moved} / ${(totalBytes / MIB).toFixed(1)} MiB ${String(Math.round(share * 100)).padStart(4)} %`;
}

export function migrationPrinter(out: ProgressOut, terminal: boolean): { event(e: MigrationEvent): void; line(text: string): void } {
  let barShown = false;
  const clearBar = () => {
    if (barShown) out.write(CLEAR_LINE);
    barShown = false;
  };
  return {
    event(e) {
      if (e.status === 'progress') {
        if (!terminal || e.bytes === undefined) return;
        out.write(`${CLEAR_LINE}${progressBar(e.bytes, e.totalBytes)}`);
        barShown = true;
        return;
      }
      clearBar();
      out.write(`${describeEvent(e)}\n`);
    },
    line(text) {
      clearBar();
      out.write(`${text}\n`);
    },
  };
}
