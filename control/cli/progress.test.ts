import { afterEach, describe, expect, it, vi } from 'vitest';
import { cliProgress, createProgress } from './progress.ts';

const sink = () => {
  const s = { text: '', write: (t: string) => (s.text += t) };
  return s;
};
/** What a terminal shows in the end: each line as its last redraw left it. */
const screen = (text: string) => text.split('\n').map((l) => l.split('\r\x1b[2K').pop() as string).filter((l) => l !== '');

describe('CLI progress', () => {
  afterEach(() => vi.useRealTimers());

  it('on a terminal: phase lines with the time since the start, a bar redrawn in place, cleared before the next line', () => {
    let t = 0;
    const out = sink();
    const p = createProgress(out, 'terminal', { prefix: 'lab: ', clock: true, now: () => t });
    p.phase('network');
    t = 65_000;
    p.phase('images');
    p.advance('loading', 1, 2);
    p.advance('loading', 2, 2);
    p.line('done');
    p.end();
    expect(out.text).toContain('\r\x1b[2Kloading [###############...............] 1 / 2   50 %');
    expect(screen(out.text)).toEqual(['[    0s] lab: network', '[ 1m05s] lab: images', 'done']);
  });

  it('on a terminal: a phase with nothing to count shows a ticking clock until the next line', () => {
    vi.useFakeTimers();
    const out = sink();
    const p = createProgress(out, 'terminal', { clock: true });
    p.phase('debootstrap');
    vi.advanceTimersByTime(3_100);
    expect(out.text).toMatch(/\r\x1b\[2K {2}… debootstrap 3s$/);
    p.end();
    vi.advanceTimersByTime(5_000);
    expect(out.text.endsWith('\r\x1b[2K')).toBe(true);
  });

  it('not on a terminal: the phase lines only, without clock, bar or control characters', () => {
    vi.useFakeTimers();
    const out = sink();
    const p = createProgress(out, 'lines', { prefix: 'lab: ', clock: true });
    p.phase('network');
    p.advance('loading', 1, 2);
    vi.advanceTimersByTime(5_000);
    p.line('done');
    p.end();
    expect(out.text).toBe('lab: network\ndone\n');
  });

  it('with --json: plain lines on stderr, stdout left to the result', () => {
    const stdout = Object.assign(sink(), { isTTY: true });
    const stderr = sink();
    const p = cliProgress(true, {}, { stdout, stderr });
    p.phase('training');
    p.advance('round', 1, 10);
    expect(stdout.text).toBe('');
    expect(stderr.text).toBe('training\n');
    const tty = cliProgress(false, {}, { stdout, stderr });
    expect(tty.mode).toBe('terminal');
    expect(cliProgress(false, {}, { stdout: sink(), stderr }).mode).toBe('lines');
  });
});
