import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../protocol/config.ts';
import { HerdError } from '../protocol/errors.ts';
import { thrownHerdError } from '../test/support/thrown.ts';
import { TINY_MODEL } from '../policies/forecast-greedy/tiny-model.ts';
import { controlConfigSchema, loopSectionSchema, resolveControlConfigFiles } from './config.ts';

function configFile(yaml: string, files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'herd-control-config-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const file = join(dir, 'control.yaml');
  writeFileSync(file, yaml);
  return file;
}

function load(yaml: string, files: Record<string, string> = {}) {
  return loadConfig(controlConfigSchema, { file: configFile(yaml, files), what: 'control config', resolveFiles: resolveControlConfigFiles });
}

/** As `herd plan --snapshot -c` loads it: the loop: section alone. */
const loadLoop = (yaml: string) => loadConfig(loopSectionSchema, { file: configFile(yaml), what: 'control config', resolveFiles: resolveControlConfigFiles });

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
    expect(() => load([OPEN, 'loop:', '  policies:', '    - policy: forecast-greedy', '      args: { model: absent.json }'].join('\n'))).toThrow(/field `loop\.policies\.0\.args\.model`: .*absent\.json: no such file/);
  });

  it('reports a missing model with every other error, not instead of them', () => {
    const err = thrownHerdError(() => load(['logLevel: loud', 'loop:', '  windowSeconds: -1', '  policies:', '    - policy: forecast-greedy', '      args: { model: absent.json, rewardThreshold: -1 }'].join('\n')));
    expect(err.code).toBe('BAD_CONFIG');
    expect(err.message).toMatch(/has 5 error\(s\)/);
    expect(err.message).toMatch(/field `loop\.policies\.0\.args\.model`: .*absent\.json: no such file/);
    for (const text of ['loop.windowSeconds', 'rewardThreshold', 'logLevel', 'broker.auth.usersFile']) expect(err.message).toContain(text);
    expect(err.message).not.toContain('is a path'); // the policy's own complaint about the unread path only repeats it
  });

  it.each([['null', '[null]'], ['a number', '[3]'], ['a step with null args', '[{ policy: cpu-greedy, args: null }]']])('reports a policy step that is %s as a config error, not a crash', (_name, policies) => {
    const err = thrownHerdError(() => load(`${OPEN}\nloop: { policies: ${policies} }`));
    expect(err.code).toBe('BAD_CONFIG');
    expect(err.message).toMatch(/field `loop\.policies\.0(\.args)?`/);
  });

  it('reads only the loop: section for offline planning: no broker rules, the loop checked as in full', () => {
    expect(loadLoop('broker: { embedded: true }\nloop: { mode: recommend }').loop.mode).toBe('recommend');
    expect(loadLoop('{}').loop.policies).toEqual([{ policy: 'oltp-disk', args: {} }]);
    expect(() => loadLoop('loop: { windowSeconds: 0 }')).toThrow(/field `loop\.windowSeconds`/);
    expect(() => loadLoop(['loop:', '  policies:', '    - policy: forecast-greedy', '      args: { model: absent.json }'].join('\n'))).toThrow(/absent\.json: no such file/);
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
