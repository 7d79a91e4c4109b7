import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { watchEventLoop } from './daemon-runner.ts';

describe('watchEventLoop', () => {
  it('warns once, with the time, when the event loop was blocked', async () => {
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
      const warned = lines.slice(before).filter((l) => l.level === 40);
      expect(warned).toHaveLength(1);
      expect(warned[0]?.blockedMs).toBeGreaterThanOrEqual(350);
      expect(warned[0]?.msg).toMatch(/event loop was blocked for \d+ ms/);
    } finally {
      stop();
    }
  });
});
