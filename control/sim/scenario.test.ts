import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loopConfigSchema } from '../config.ts';
import { safetyRulesSchema } from '../../policies/safety/safety.ts';
import { loadScenarioFile, parseScenario, scenarioErrors, scenarioJsonSchemaText } from './scenario.ts';
import { thrownHerdError } from '../../test/support/thrown.ts';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

describe('scenario schema', () => {
  it('scenario.schema.json is up to date (regenerate: npx tsx control/sim/write-schema.ts)', () => {
    expect(readFileSync(here('./scenario.schema.json'), 'utf8')).toBe(scenarioJsonSchemaText());
  });

  it('loads every example scenario file', () => {
    const dir = here('./scenarios/');
    const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThanOrEqual(3);
    for (const f of files) expect(loadScenarioFile(join(dir, f)).containers.length).toBeGreaterThan(0);
  });

  it('the example in README.md is scenarios/two-hosts.json', () => {
    const readme = readFileSync(here('./README.md'), 'utf8');
    const block = /```json\n([\s\S]*?)\n```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    expect(JSON.parse(block as string)).toEqual(JSON.parse(readFileSync(here('./scenarios/two-hosts.json'), 'utf8')));
  });

  it('fills the defaults', () => {
    const s = parseScenario({ name: 'x', durationSeconds: 10, hosts: [{ id: 'h', cores: 1 }], containers: [] }, 'x');
    expect(s.control).toMatchObject({ windowSeconds: 30, evaluationIntervalSeconds: 150, initialDelaySeconds: 150, hostIntervalSeconds: 5, containerIntervalSeconds: 2, policies: [{ policy: 'oltp-disk', args: {} }] });
    expect(s.control.safety).toMatchObject({ enabled: true, cooldownSeconds: safetyRulesSchema.parse({}).cooldownSeconds });
  });

  it("control defaults are the control daemon's loop defaults", () => {
    const sim = parseScenario({ name: 'x', durationSeconds: 10, hosts: [{ id: 'h', cores: 1 }], containers: [] }, 'x').control;
    const loop = loopConfigSchema.parse({});
    for (const key of Object.keys(sim) as (keyof typeof sim)[]) expect([key, sim[key]]).toEqual([key, loop[key]]);
  });

  it('reports every problem of a bad scenario, with its path, as BAD_CONFIG naming the source', () => {
    const bad = {
      name: 'bad',
      durationSeconds: 60,
      colour: 'blue',
      hosts: [{ id: 'h1', cores: -2 }, { id: 'h1', cores: 2 }],
      containers: [
        { herdId: 'a', host: 'h9', threads: 0, memoryBytes: 1, opsPerCoreSecond: 1, demand: [{ atSeconds: 10, cpuCores: 1 }, { atSeconds: 5, cpuCores: 1 }] },
        { herdId: 'a', host: 'h1', threads: 1, memoryBytes: 1, opsPerCoreSecond: 1, demand: [] },
      ],
      control: { policies: [{ policy: 'nope' }, { policy: 'cpu-greedy', args: { maxMoves: -1 } }], windowSeconds: 1 },
    };
    const err = thrownHerdError(() => parseScenario(bad, 'bad.json'));
    expect(err.code).toBe('BAD_CONFIG');
    expect(err.message).toMatch(/^bad\.json: invalid scenario/);
    for (const path of [
      '(root): Unrecognized key',
      'hosts.0.cores:',
      'hosts.1.id: duplicate host id "h1"',
      'containers.0.threads:',
      'containers.0.host: no host "h9"',
      'containers.0.demand.1.atSeconds: 5 is not after the previous step',
      'containers.1.herdId: duplicate herdId "a"',
      'containers.1.demand:',
      'control.policies.0.policy: unknown policy "nope"',
      'control.policies.1.args: cpu-greedy.args.maxMoves',
      'control.hostIntervalSeconds: 5 s is longer than the window',
      'control.containerIntervalSeconds: 2 s is longer than the window',
    ]) {
      expect(err.message).toContain(path);
    }
    expect(scenarioErrors(bad)).toHaveLength(12);
  });

  it('a missing file or bad JSON is BAD_CONFIG naming the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'herd-sim-'));
    const missing = thrownHerdError(() => loadScenarioFile(join(dir, 'nope.json')));
    expect(missing.code).toBe('BAD_CONFIG');
    expect(missing.message).toContain('nope.json: cannot read');
    writeFileSync(join(dir, 'broken.json'), '{ "name": ');
    const broken = thrownHerdError(() => loadScenarioFile(join(dir, 'broken.json')));
    expect(broken.code).toBe('BAD_CONFIG');
    expect(broken.message).toContain('broken.json: not valid JSON');
  });
});
