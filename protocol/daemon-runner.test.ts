import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { watchEventLoop } from './daemon-runner.ts';

describe('watchEventLoop', () => {
  it('warns, with the time, when the event loop was blocked', async () => {
    const lines: Array<{ level: number; msg: string; blockedMs?: number }> = [];
    const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const stop = watchEventLoop(log, 150, 20);
    try {
      await new Promise((r) => setTimeout(r, 100));
      const before = lines.length;
      const until = performance.now() + 400;
      while (performance.now() < until) {
        // A synchronous stall, as an fsync on the event loop would be.
      }
      await new Promise((r) => setTimeout(r, 60));
      // The stall is warned of, with its length (a loaded machine may add warnings of its own).
      const warned = lines.slice(before).filter((l) => l.level === 40);
      expect(Math.max(...warned.map((l) => l.blockedMs ?? 0))).toBeGreaterThanOrEqual(350);
      expect(warned.every((l) => /^the event loop was blocked for \d+ ms/.test(l.msg))).toBe(true);
    } finally {
      stop();
    }
  });
});
