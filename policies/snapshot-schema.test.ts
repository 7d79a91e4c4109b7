/** policies/snapshot.schema.json is the snapshot contract for tools outside Herd: it must match the zod schema. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { clusterSnapshotSchema } from './model.ts';

function snapshotJsonSchema(): unknown {
  return { $id: 'https://herd.example/schemas/cluster-snapshot.json', title: 'Herd cluster snapshot', ...z.toJSONSchema(clusterSnapshotSchema, { io: 'input' }) };
}

describe('snapshot.schema.json', () => {
  it('is what the zod schema generates (regenerate: HERD_WRITE_SCHEMA=1 npx vitest run policies/snapshot-schema.test.ts)', async () => {
    const generated = `${JSON.stringify(snapshotJsonSchema(), null, 2)}\n`;
    if (process.env.HERD_WRITE_SCHEMA === '1') (await import('node:fs')).writeFileSync(new URL('./snapshot.schema.json', import.meta.url), generated);
    expect(readFileSync(new URL('./snapshot.schema.json', import.meta.url), 'utf8')).toBe(generated);
  });
});
