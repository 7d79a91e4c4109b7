import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../protocol/config.ts';
import { HerdError } from '../protocol/errors.ts';
import { thrownHerdError } from '../test/support/thrown.ts';
import { defaultMonitorClientId, monitorConfigSchema } from './config.ts';

const load = (overrides: Record<string, unknown>) => loadConfig(monitorConfigSchema, { overrides, what: 'monitor config' });

describe('monitor config', () => {
  it('fills the published defaults and freezes the result', () => {
    const c = load({ hosts: [{ id: 'h1' }] });
    expect(c.hostIntervalSeconds).toBe(5);
    expect(c.containerIntervalSeconds).toBe(2);
    expect(c.hosts[0]).toMatchObject({ pmproxyUrl: 'http://127.0.0.1:44322', cgroupParent: 'docker', dockerSocket: '/var/run/docker.sock' });
    expect(c.publishBufferSize).toBeGreaterThan(0);
    expect(Object.isFrozen(c.hosts[0])).toBe(true);
  });

  it('reports every problem at once, with its path', () => {
    let err: unknown;
    try {
      load({ hosts: [{ id: 'h 1', pmproxyUrl: 'ftp://x' }, { id: 'h2', cpus: [] }], hostIntervalSeconds: 0, publishBufferSize: -1, extra: true });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HerdError);
    const message = (err as HerdError).message;
    expect((err as HerdError).code).toBe('BAD_CONFIG');
    for (const path of ['hosts.0.id', 'hosts.0.pmproxyUrl', 'hosts.1.cpus', 'hostIntervalSeconds', 'publishBufferSize', '`extra`']) expect(message).toContain(path);
  });

  it.each([
    ['no hosts', { hosts: [] }, 'at least one host'],
    ['duplicate host', { hosts: [{ id: 'h1' }, { id: 'h1' }] }, 'listed twice'],
    ['unknown host field', { hosts: [{ id: 'h1', pmproxy: 'x' }] }, '`pmproxy`'],
  ])('%s', (_name, overrides, text) => {
    expect(() => load(overrides)).toThrow(text);
  });

  it('reports a host listed twice even when another field is wrong too', () => {
    const err = thrownHerdError(() => load({ hosts: [{ id: 'h1' }, { id: 'h1' }], hostIntervalSeconds: 'fast' }));
    expect(err.message).toMatch(/has 2 error\(s\)/);
    expect(err.message).toMatch(/field `hosts\.1\.id`: host "h1" is listed twice/);
    expect(err.message).toMatch(/field `hostIntervalSeconds`/);
  });

  it('caps maxBackoffSeconds where Node timers would overflow', () => {
    expect(load({ hosts: [{ id: 'h1' }], maxBackoffSeconds: 3600 }).maxBackoffSeconds).toBe(3600);
    expect(() => load({ hosts: [{ id: 'h1' }], maxBackoffSeconds: 30 * 86_400 })).toThrow(/field `maxBackoffSeconds`: at most 2147483 s/);
  });

  it('takes a host\'s own disks by their /sys/block names and refuses anything else, naming the entry', () => {
    expect(load({ hosts: [{ id: 'h1', disks: ['sdb', 'loop3', 'nvme0n1'] }] }).hosts[0]?.disks).toEqual(['sdb', 'loop3', 'nvme0n1']);
    expect(() => load({ hosts: [{ id: 'h1', disks: ['../etc'] }] })).toThrow(/hosts\.0\.disks\.0.*block device name/);
    expect(() => load({ hosts: [{ id: 'h1', disks: [] }] })).toThrow(/hosts\.0\.disks/);
  });

  it('reads YAML, with the file named in errors', () => {
    const dir = mkdtempSync(join(tmpdir(), 'herd-monitor-config-'));
    try {
      const file = join(dir, 'monitor.yaml');
      writeFileSync(file, 'hosts:\n  - id: h1\n    cgroupParent: herd-h1\ncontainerIntervalSeconds: 1\n');
      expect(loadConfig(monitorConfigSchema, { file, what: 'monitor config' }).containerIntervalSeconds).toBe(1);
      writeFileSync(file, 'hosts: 3\n');
      expect(() => loadConfig(monitorConfigSchema, { file, what: 'monitor config' })).toThrow(file);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses container logs without a datasetDir, along with every other problem', () => {
    const err = thrownHerdError(() => load({ hosts: [{ id: 'h 1' }], datasetDir: null, containerLogs: true, hostIntervalSeconds: 0 }));
    expect(err.code).toBe('BAD_CONFIG');
    for (const text of ['hosts.0.id', 'hostIntervalSeconds', 'field `containerLogs`: container logs are written under datasetDir, which is null']) expect(err.message).toContain(text);
  });

  it('turns container logs on exactly when there is a datasetDir, unless told', () => {
    expect(load({ hosts: [{ id: 'h1' }] }).containerLogs).toBe(true);
    expect(load({ hosts: [{ id: 'h1' }], datasetDir: null }).containerLogs).toBe(false);
    expect(load({ hosts: [{ id: 'h1' }], containerLogs: false }).containerLogs).toBe(false);
  });

  it.each([
    ['herd-monitor-lab', undefined],
    ['monitor-1', 'must start with "herd-monitor-"'],
    ['herd-monitor-', 'must start with "herd-monitor-" and go on after it'],
    ['herd-monitor-a/b', 'must be 1-64 characters'],
    [`herd-monitor-${'x'.repeat(60)}`, 'must be 1-64 characters'],
  ])('checks clientId %s', (clientId, problem) => {
    if (problem === undefined) expect(load({ hosts: [{ id: 'h1' }], clientId }).clientId).toBe(clientId);
    else expect(thrownHerdError(() => load({ hosts: [{ id: 'h1' }], clientId })).message).toContain(`field \`clientId\`: ${problem}`);
  });

  it.each([
    ['node-7.example.org', 'herd-monitor-node-7.example.org'],
    ['weird name:1', 'herd-monitor-weird-name-1'],
    ['', 'herd-monitor-host'],
    ['x'.repeat(80), `herd-monitor-${'x'.repeat(51)}`],
  ])('makes the default client id from the hostname %j', (name, id) => {
    expect(defaultMonitorClientId(name)).toBe(id);
    expect(id).toMatch(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/);
  });
});
