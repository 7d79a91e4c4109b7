/**
 * Writes control/sim/scenario.schema.json from the zod schema (run after changing
 * scenario.ts, or the safety rules or anything it includes):
 *   npx tsx control/sim/write-schema.ts
 * A unit test (scenario.test.ts) fails while the committed file is out of date.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { scenarioJsonSchemaText } from './scenario.ts';

export const SCHEMA_PATH = fileURLToPath(new URL('./scenario.schema.json', import.meta.url));

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(SCHEMA_PATH, scenarioJsonSchemaText());
  process.stdout.write(`wrote ${SCHEMA_PATH}\n`);
}
