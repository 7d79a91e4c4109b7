import { mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { appendFileDurably, replaceFileDurably, WriteQueue } from './durable-file.ts';

describe('durable files', () => {
  it('replaces a file whole (no temp file left) and appends, both 0600 by default', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'herd-durable-'));
    const file = join(dir, 'state.json');
    await replaceFileDurably(file, 'one\n');
    await replaceFileDurably(file, 'two\n');
    await appendFileDurably(file, 'three\n');
    expect(readFileSync(file, 'utf8')).toBe('two\nthree\n');
    expect(readdirSync(dir)).toEqual(['state.json']);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('a write queue runs writes in order, one at a time; a failed one rejects to its caller and the next still runs', async () => {
    const q = new WriteQueue();
    const order: string[] = [];
    let running = 0;
    const step = (name: string, fail = false) => async () => {
      running++;
      expect(running).toBe(1);
      await new Promise((r) => setTimeout(r, 5));
      order.push(name);
      running--;
      if (fail) throw new Error(`${name} failed`);
      return name;
    };
    const a = q.run(step('a'));
    const b = q.run(step('b', true));
    const c = q.run(step('c'));
    await expect(b).rejects.toThrow('b failed');
    expect(await Promise.all([a, c])).toEqual(['a', 'c']);
    await q.idle();
    expect(order).toEqual(['a', 'b', 'c']);
  });
});
