/** policies/snapshot.schema.json is the snapshot contract for tools outside Herd: it must match the zod schema. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { clusterSnapshotSchema } from './model.ts';
import { container, host, snapshot } from './testing/builders.ts';

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

describe('the snapshot schema checks consistency', () => {
  const issues = (s: unknown) => clusterSnapshotSchema.safeParse(s).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`);

  it('rejects duplicate hosts, containers and migrations, and containers on unlisted hosts, every path listed', () => {
    const fly = (migrationId: string, herdId: string) => ({ migrationId, herdId, sourceHost: 'h1', targetHost: 'h2', manual: false, startedAtMs: 0 });
    const s = snapshot([host('h1'), host('h2'), host('h1')], [container('a', 'h1'), container('b', 'h9'), container('a', 'h2')], { inFlight: [fly('m1', 'id-a'), fly('m1', 'id-b')] });
    expect(issues(s)).toEqual([
      'hosts.2.hostId: duplicate host id "h1" (also hosts.0.hostId)',
      'containers.1.hostId: no host "h9" in hosts',
      'containers.2.herdId: duplicate herdId "id-a" (also containers.0.herdId)',
      'inFlight.1.migrationId: duplicate migrationId "m1" (also inFlight.0.migrationId)',
    ]);
  });

  it('accepts what real snapshots hold: a migration whose container is not listed (frozen, or on a host gone offline) or whose host is not', () => {
    const s = snapshot([host('h1'), host('h2', { online: false })], [container('a', 'h1')], {
      inFlight: [{ migrationId: 'm1', herdId: 'id-frozen', sourceHost: 'h2', targetHost: 'h3', manual: true, startedAtMs: 0 }],
    });
    expect(issues(s)).toBeUndefined();
  });
});
