/**
 * Progress of the CLI's long operations (lab up, image builds, migrations, training,
 * benchmarks), one way for all of them:
 * - on a terminal: a line per phase with the time since the start, and the current step
 *   as a bar redrawn in place (bytes, rounds, hosts), or a ticking clock for a phase that
 *   has nothing to count;
 * - not on a terminal (a pipe, a file, CI logs): the phase lines only, no bar and no
 *   control characters;
 * - with --json: the phase lines on stderr, so that stdout carries the JSON result alone.
 */
export interface ProgressOut {
  write(text: string): unknown;
}

export type ProgressMode = 'terminal' | 'lines';

export interface Progress {
  readonly mode: ProgressMode;
  /** A phase begins. */
  phase(text: string): void;
  /** Where a counted step is (`total` unknown: the count alone). Drawn on a terminal only. */
  advance(label: string, done: number, total?: number, unit?: 'bytes' | 'count'): void;
  /** A line that is not a phase (a result, a warning), kept above the bar. */
  line(text: string): void;
  /** Clears what is drawn in place and stops the clock. */
  end(): void;
}

const MIB = 2 ** 20;
export const CLEAR_LINE = '\r\x1b[2K';

/** The CLI's progress: on stdout (stderr with --json, as plain lines), drawn in place when that is a terminal. */
export function cliProgress(json: boolean | undefined, options: ProgressOptions = {}, streams: { stdout: ProgressOut & { isTTY?: boolean }; stderr: ProgressOut } = process): Progress {
  if (json === true) return createProgress(streams.stderr, 'lines', options);
  return createProgress(streams.stdout, streams.stdout.isTTY === true ? 'terminal' : 'lines', options);
}

const amount = (n: number, unit: 'bytes' | 'count') => (unit === 'bytes' ? (n / MIB).toFixed(1) : String(n));

/** `label [##########..........] 12.3 / 24.6 MiB  50 %`, or `label 12.3 MiB` without a total. */
export function progressBar(label: string, done: number, total: number | undefined, unit: 'bytes' | 'count' = 'count', width = 30): string {
  const suffix = unit === 'bytes' ? ' MiB' : '';
  if (total === undefined || total <= 0) return `${label} ${amount(done, unit)}${suffix}`;
  const share = Math.min(1, Math.max(0, done / total));
  const filled = Math.round(share * width);
  return `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${amount(done, unit)} / ${amount(total, unit)}${suffix} ${String(Math.round(share * 100)).padStart(4)} %`;
}

function elapsed(ms: number): string {
  const s = Math.floor(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

export interface ProgressOptions {
  /** Prefix of every phase line (e.g. "lab: "). */
  prefix?: string;
  /** Show the time since the start on each phase line (terminal only). */
  clock?: boolean;
  now?: () => number;
}

export function createProgress(out: ProgressOut, mode: ProgressMode, options: ProgressOptions = {}): Progress {
  const now = options.now ?? Date.now;
  const started = now();
  const prefix = options.prefix ?? '';
  let drawn = false;
  let ticker: NodeJS.Timeout | undefined;
  let current = '';
  const clear = () => {
    if (drawn) out.write(CLEAR_LINE);
    drawn = false;
  };
  const stopTicker = () => {
    if (ticker !== undefined) clearInterval(ticker);
    ticker = undefined;
  };
  const stamp = () => (options.clock === true ? `[${elapsed(now() - started).padStart(6)}] ` : '');
  return {
    mode,
    phase(text) {
      stopTicker();
      clear();
      out.write(`${mode === 'terminal' ? stamp() : ''}${prefix}${text}\n`);
      if (mode === 'terminal' && options.clock === true) {
        // A phase with nothing to count still shows that it goes on.
        const since = now();
        current = text;
        ticker = setInterval(() => {
          out.write(`${CLEAR_LINE}  … ${current.length > 60 ? `${current.slice(0, 57)}...` : current} ${elapsed(now() - since)}`);
          drawn = true;
        }, 1000);
        ticker.unref?.();
      }
    },
    advance(label, done, total, unit = 'count') {
      if (mode !== 'terminal') return;
      stopTicker();
      out.write(`${CLEAR_LINE}${progressBar(label, done, total, unit)}`);
      drawn = true;
    },
    line(text) {
      clear();
      out.write(`${text}\n`);
    },
    end() {
      stopTicker();
      clear();
    },
  };
}
