import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { computeConfigSchema } from '../compute/config.ts';
import { z } from 'zod';
import { brokerUrlProblem, deepFreeze, loadConfig, mergeConfig, timerSeconds, type ConfigIssue } from './config.ts';
import { HerdError } from './errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'herd-config-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function configError(fn: () => unknown): HerdError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(HerdError);
    return err as HerdError;
  }
  throw new Error('expected a config error');
}

const what = 'compute config';

describe('loadConfig', () => {
  it('fills every default from an empty file', () => {
    const config = loadConfig(computeConfigSchema, { file: file('empty.yaml', ''), what });
    expect(config).toMatchObject({
      broker: { url: 'mqtt://127.0.0.1:1883' },
      docker: { socketPath: '/var/run/docker.sock', dataRoot: '/var/lib/docker' },
      ssh: { address: '127.0.0.1', port: 22, user: 'root' },
      stateDir: '/var/lib/herd/compute',
      containersIntervalSeconds: 10,
      logLevel: 'info',
    });
    expect(config.hostId).toMatch(/^[A-Za-z0-9]/);
  });

  it('keeps file values and lets overrides win', () => {
    const path = file('ok.yaml', 'hostId: node-a\nbroker:\n  url: mqtt://10.0.0.1:1883\nssh:\n  port: 2222\n');
    const config = loadConfig(computeConfigSchema, { file: path, overrides: { ssh: { port: 2200 }, logLevel: 'debug' }, what });
    expect(config.hostId).toBe('node-a');
    expect(config.broker.url).toBe('mqtt://10.0.0.1:1883');
    expect(config.ssh).toMatchObject({ port: 2200, user: 'root' });
    expect(config.logLevel).toBe('debug');
  });

  it('works without a file', () => {
    expect(loadConfig(computeConfigSchema, { overrides: { hostId: 'h1' }, what }).hostId).toBe('h1');
  });

  it('freezes the result deeply', () => {
    const config = loadConfig(computeConfigSchema, { file: file('cpus.yaml', 'hostId: h1\ncpus: [0, 1]\n'), what });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.ssh)).toBe(true);
    expect(Object.isFrozen(config.cpus)).toBe(true);
    expect(() => {
      (config.ssh as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => (config.cpus as number[]).push(2)).toThrow(TypeError);
  });

  it('reports every mistake at once, each with its path', () => {
    const path = file('three-mistakes.yaml', ['hostId: "bad/host"', 'ssh:', '  port: 70000', 'colour: blue', ''].join('\n'));
    const err = configError(() => loadConfig(computeConfigSchema, { file: path, what }));
    expect(err.code).toBe('BAD_CONFIG');
    expect(err.message).toContain(`compute config (${path}) has 3 error(s)`);
    expect(err.message).toMatch(/- field `hostId`: /);
    expect(err.message).toMatch(/- field `ssh.port`: .*65535/);
    expect(err.message).toMatch(/- unknown field\(s\) `colour`/);
  });

  it('reports bad YAML as BAD_CONFIG naming the file', () => {
    const path = file('bad.yaml', 'hostId: [unclosed\n');
    const err = configError(() => loadConfig(computeConfigSchema, { file: path, what }));
    expect(err.code).toBe('BAD_CONFIG');
    expect(err.message).toContain(`config file ${path} is not valid YAML`);
  });

  it.each([
    ['a line without its colon', 'hostId h1\n', 'a string'],
    ['a list', '- hostId: h1\n', 'a list'],
    ['a bare number', '42\n', 'a number'],
  ])('refuses a file that is not a mapping (%s) instead of taking it as empty', (_name, text, got) => {
    const path = file('not-a-mapping.yaml', text);
    const err = configError(() => loadConfig(computeConfigSchema, { file: path, what }));
    expect(err.code).toBe('BAD_CONFIG');
    expect(err.message).toBe(`${path}: expected a YAML mapping, got ${got}`);
  });

  it('reports the problems of the files a config names with the schema\'s, leaving out what only repeats them', () => {
    const schema = z.strictObject({ model: z.object({ trees: z.number() }), port: z.number() });
    const resolveFiles = (config: unknown, _baseDir: string, issues: ConfigIssue[]) => {
      issues.push({ path: ['model'], message: 'absent.json: no such file' });
      return config; // the model stays a path, which the schema calls wrong too
    };
    const err = configError(() => loadConfig(schema, { overrides: { model: 'absent.json', port: 'x' }, what: 'toy config', resolveFiles }));
    expect(err.code).toBe('BAD_CONFIG');
    expect(err.message).toBe('toy config has 2 error(s):\n  - field `model`: absent.json: no such file\n  - field `port`: Invalid input: expected number, received string');
  });

  it('caps timer durations where Node timers would overflow', () => {
    expect(timerSeconds().safeParse(2_147_483).success).toBe(true);
    expect(timerSeconds().safeParse(2_147_484).error?.issues[0]?.message).toMatch(/at most 2147483 s/);
  });

  it('says why a broker URL is unusable', () => {
    expect(brokerUrlProblem('mqtts://10.0.0.1:1883')).toBeUndefined();
    expect(brokerUrlProblem('notaurl')).toMatch(/is not a URL/);
    expect(brokerUrlProblem('http://x')).toMatch(/unsupported scheme http:/);
  });

  it('reports a missing file as BAD_CONFIG naming the file', () => {
    const path = join(dir, 'does-not-exist.yaml');
    const err = configError(() => loadConfig(computeConfigSchema, { file: path, what }));
    expect(err.code).toBe('BAD_CONFIG');
    expect(err.message).toBe(`cannot read config file ${path}: ENOENT`);
  });
});

describe('mergeConfig', () => {
  it.each([
    { base: { a: 1, b: { c: 2, d: 3 } }, over: { b: { c: 9 } }, out: { a: 1, b: { c: 9, d: 3 } } },
    { base: { a: [1, 2] }, over: { a: [3] }, out: { a: [3] } },
    { base: { a: 1 }, over: { a: undefined, b: 2 }, out: { a: 1, b: 2 } },
    { base: { a: { b: 1 } }, over: { a: 'flat' }, out: { a: 'flat' } },
    { base: 'x', over: undefined, out: 'x' },
  ])('merges %j', ({ base, over, out }) => {
    const before = JSON.stringify(base);
    expect(mergeConfig(base, over)).toEqual(out);
    expect(JSON.stringify(base)).toBe(before);
  });
});

describe('deepFreeze', () => {
  it('freezes nested objects and arrays and returns its argument', () => {
    const value = { a: { b: [{ c: 1 }] } };
    expect(deepFreeze(value)).toBe(value);
    expect(Object.isFrozen(value.a.b[0])).toBe(true);
  });
});
