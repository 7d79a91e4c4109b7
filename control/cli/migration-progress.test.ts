import { describe, expect, it } from 'vitest';
import type { MigrationEvent } from '../../protocol/messages.ts';
import { migrationPrinter } from './migration-progress.ts';
import { createProgress, progressBar } from './progress.ts';

const event = (phase: MigrationEvent['phase'], status: MigrationEvent['status'], extra: Partial<MigrationEvent> = {}): MigrationEvent => ({
  v: 1,
  migrationId: 'm-1',
  herdId: 'c0ffee000001',
  container: 'web',
  sourceHost: 'h1',
  targetHost: 'h2',
  phase,
  status,
  at: '2026-11-26T23:00:00.000Z',
  ...extra,
});

const MIB = 2 ** 20;
const story = [
  event('checkpoint', 'started'),
  event('checkpoint', 'finished', { durationMs: 300 }),
  event('transfer', 'started'),
  event('transfer', 'progress', { bytes: 10 * MIB, totalBytes: 40 * MIB }),
  event('transfer', 'progress', { bytes: 30 * MIB, totalBytes: 40 * MIB }),
  event('transfer', 'finished', { durationMs: 900, bytes: 41 * MIB }),
  event('done', 'finished'),
];

function run(terminal: boolean): string {
  let text = '';
  const printer = migrationPrinter(createProgress({ write: (s: string) => (text += s) }, terminal ? 'terminal' : 'lines'));
  for (const e of story) printer.event(e);
  printer.line('migrated web h1 -> h2');
  return text;
}

describe('herd migrate progress', () => {
  it('draws the bar from the bytes and the estimate, capped at 100 %, or the bytes alone without an estimate', () => {
    expect(progressBar('transfer  ', 10 * MIB, 40 * MIB, 'bytes', 20)).toBe('transfer   [#####...............] 10.0 / 40.0 MiB   25 %');
    expect(progressBar('transfer  ', 50 * MIB, 40 * MIB, 'bytes', 10)).toBe('transfer   [##########] 50.0 / 40.0 MiB  100 %');
    expect(progressBar('transfer  ', 3 * MIB, undefined, 'bytes')).toBe('transfer   3.0 MiB');
    expect(progressBar('round', 7, 10, 'count', 10)).toBe('round [#######...] 7 / 10   70 %');
  });

  it('on a terminal: a line per phase event and the transfer bar redrawn in place, cleared before the next line', () => {
    const text = run(true);
    expect(text).toContain('\r\x1b[2Ktransfer   [#######################.......] 30.0 / 40.0 MiB   75 %');
    expect(text.split('\r\x1b[2K').length).toBeGreaterThan(3);
    // What the terminal shows in the end: each line as its last redraw left it.
    const lines = text.split('\n').map((l) => l.split('\r\x1b[2K').pop() as string).filter((l) => l !== '');
    expect(lines.map((l) => l.replace(/^\S+\s+/, '').split(/\s+/).slice(0, 2).join(' '))).toEqual(['checkpoint started', 'checkpoint finished', 'transfer started', 'transfer finished', 'done finished', 'web h1']);
  });

  it('not on a terminal (a pipe, --json): the phase lines only, no bar, no control characters', () => {
    const text = run(false);
    expect(text).not.toMatch(/[\r\x1b]/);
    expect(text).not.toContain('progress');
    expect(text.trim().split('\n')).toHaveLength(6);
  });
});
