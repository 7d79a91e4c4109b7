import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContainerLogStore, formatNanoTime, type LogRecord } from './log-store.ts';
import { resolveLogRef, runLogs } from './logs-command.ts';

const NO_BROKER = { url: 'mqtt://127.0.0.1:9' };
const rec = (i: number, hostId: string, stream: 'stdout' | 'stderr' = 'stdout'): LogRecord => ({
  at: formatNanoTime(1_795_390_145_000_000_000n + BigInt(i) * 1_000_000_000n),
  hostId,
  dockerId: hostId === 'h1' ? 'aaaaaaaaaaaa' : 'bbbbbbbbbbbb',
  stream,
  text: `tick ${i}`,
});

describe('herd logs', () => {
  let dir: string;
  let store: ContainerLogStore;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'herd-logs-cli-'));
    store = new ContainerLogStore(dir);
    store.append('web-1', [rec(1, 'h1'), rec(2, 'h1', 'stderr'), rec(3, 'h2'), rec(4, 'h2')]);
    store.rememberName('web-1', 'web');
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const capture = () => {
    const lines: string[] = [];
    return { lines, out: (stream: 'stdout' | 'stderr', text: string) => lines.push(`${stream}> ${text.trimEnd()}`) };
  };

  it('takes a Herd id as is, and finds a name the monitor recorded when the broker cannot be asked', async () => {
    expect(await resolveLogRef('web-1', dir, NO_BROKER)).toBe('web-1');
    expect(await resolveLogRef('web', dir, NO_BROKER)).toBe('web-1');
    await expect(resolveLogRef('nope', dir, NO_BROKER)).rejects.toMatchObject({ code: 'UNKNOWN_CONTAINER', message: expect.stringMatching(/nope.*broker could not be asked/) });
  });

  it('prints the lines from both hosts, stderr to stderr; with times and hosts; as JSON; only the tail', async () => {
    const path = store.pathOf('web-1');
    const text = capture();
    await runLogs({ path, follow: false, format: 'text', out: text.out });
    expect(text.lines).toEqual(['stdout> tick 1', 'stderr> tick 2', 'stdout> tick 3', 'stdout> tick 4']);
    const stamped = capture();
    await runLogs({ path, follow: false, format: 'timestamps', tail: 2, out: stamped.out });
    expect(stamped.lines).toEqual([`stdout> ${rec(3, 'h2').at} h2 tick 3`, `stdout> ${rec(4, 'h2').at} h2 tick 4`]);
    const json = capture();
    await runLogs({ path, follow: false, format: 'json', tail: 1, out: json.out });
    expect(json.lines).toEqual([`stdout> ${JSON.stringify(rec(4, 'h2'))}`]);
  });

  it('follows: prints what is appended until stopped', async () => {
    const got = capture();
    const stop = new AbortController();
    const running = runLogs({ path: store.pathOf('web-1'), follow: true, tail: 1, format: 'text', out: got.out, signal: stop.signal });
    await new Promise((r) => setTimeout(r, 100));
    store.append('web-1', [rec(5, 'h2'), rec(6, 'h2')]);
    for (let i = 0; i < 40 && got.lines.length < 3; i++) await new Promise((r) => setTimeout(r, 50));
    stop.abort();
    await running;
    expect(got.lines).toEqual(['stdout> tick 4', 'stdout> tick 5', 'stdout> tick 6']);
  });
});
