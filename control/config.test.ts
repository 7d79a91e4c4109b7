import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../protocol/config.ts';
import { HerdError } from '../protocol/errors.ts';
import { TINY_MODEL } from '../policies/forecast-greedy/tiny-model.ts';
import { controlConfigSchema, resolveControlConfigFiles } from './config.ts';

function load(yaml: string, files: Record<string, string> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'herd-control-config-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const file = join(dir, 'control.yaml');
  writeFileSync(file, yaml);
  return loadConfig(controlConfigSchema, { file, what: 'control config', resolveFiles: resolveControlConfigFiles });
}

/** An embedded broker open to anyone: what these tests (about the loop) need; the broker's own rules are tested below. */
const OPEN = 'broker: { auth: { allowAnonymous: true } }';

describe('control config', () => {
  it('refuses an embedded broker without a users file unless anonymous access is asked for by name', () => {
    expect(() => load('{}')).toThrow(/field `broker\.auth\.usersFile`: the embedded broker needs broker\.auth\.usersFile \(herd auth init/);
    expect(() => load('broker: { auth: { usersFile: /etc/herd/auth/users.yaml } }')).toThrow(/field `broker\.credentialsFile`: .*needs its own identity/);
    const c = load('broker: { auth: { usersFile: /etc/herd/auth/users.yaml }, credentialsFile: /etc/herd/auth/control.credentials.yaml }');
    expect(c.broker).toMatchObject({ host: '127.0.0.1', auth: { allowAnonymous: false }, maxPacketBytes: 8 * 1024 * 1024 });
    expect(load('broker: { embedded: false, url: "mqtts://broker:8883" }').broker.embedded).toBe(false);
  });

  it('reads a forecast-greedy model named by a path relative to the config file; a missing one is an error naming the step', () => {
    const c = load([OPEN, 'loop:', '  policies:', '    - policy: forecast-greedy', '      args: { model: model.json }'].join('\n'), { 'model.json': JSON.stringify(TINY_MODEL) });
    expect((c.loop.policies[0]?.args as { model: unknown }).model).toBeTypeOf('object');
    expect(() => load([OPEN, 'loop:', '  policies:', '    - policy: forecast-greedy', '      args: { model: absent.json }'].join('\n'))).toThrow(/loop\.policies\.0\.args\.model: .*absent\.json: no such file/);
  });

  it("has Herd's published loop settings by default", () => {
    const c = load(OPEN);
    expect(c.loop).toMatchObject({ windowSeconds: 30, evaluationIntervalSeconds: 150, initialDelaySeconds: 150, missingSamplesThreshold: 0.02, mode: 'act' });
    expect(c.loop.policies).toEqual([{ policy: 'oltp-disk', args: {} }]);
  });

  it('reports every error at once, each with its path, policy arguments included', () => {
    let error: HerdError | undefined;
    try {
      load(['loop:', '  windowSeconds: -1', '  mode: sometimes', '  policies:', '    - policy: cpu-greedy', '      args: { rewardThresholdCores: -2, bogus: 1 }', '    - policy: teleport', '  safety: { maxInFlightTotal: 0 }'].join('\n'));
    } catch (err) {
      error = err as HerdError;
    }
    expect(error?.code).toBe('BAD_CONFIG');
    for (const path of ['loop.windowSeconds', 'loop.mode', 'loop.policies.1.policy', 'loop.safety.maxInFlightTotal', 'rewardThresholdCores', 'bogus']) expect(error?.message).toContain(path);
  });

  it('is frozen after load', () => {
    const c = load(`${OPEN}\nloop: { mode: recommend }`);
    expect(c.loop.mode).toBe('recommend');
    expect(Object.isFrozen(c.loop.safety)).toBe(true);
  });
});
