/** The metric sample schemas (protocol/messages.ts) as the monitor uses them. */
import { describe, expect, it } from 'vitest';
import { validate } from '../protocol/codec.ts';
import { containerMetricsSchema, hostMetricsSchema } from '../protocol/messages.ts';
import { backoffSeconds, numericProblem } from './daemon.ts';

const host = { v: 1, hostId: 'h1', at: '2026-11-22T10:00:00Z', stale: false };
const container = { v: 1, herdId: 'abc123', hostId: 'h1', name: 'web', dockerId: 'd', at: '2026-11-22T10:00:00Z', state: 'running' };

describe('hostMetricsSchema', () => {
  it.each([
    ['minimal', {}],
    ['stale marker', { stale: true, staleReason: 'PCP_UNAVAILABLE: no answer' }],
    ['per-CPU utilisation', { cpus: [2, 3], cpuUtil: 0.5, cpuUtilPerCpu: { '2': 0.25, '3': 0.75 } }],
    ['pressure', { pressure: { cpuSomeAvg10sPct: 12.5 } }],
  ])('accepts %s', (_name, extra) => {
    expect(hostMetricsSchema.parse({ ...host, ...extra })).toBeDefined();
  });

  it.each([
    ['cpuUtil above 1', { cpuUtil: 1.2 }, 'cpuUtil'],
    ['negative rate', { diskOpsPerSec: -1 }, 'diskOpsPerSec'],
    ['unit-less field', { memory: 5 }, '`memory`'],
    ['bad host id', { hostId: 'h/1' }, 'hostId'],
    ['CPU key that is not a number', { cpuUtilPerCpu: { cpu0: 0.5 } }, 'cpuUtilPerCpu'],
    ['NaN', { load1: Number.NaN }, 'load1'],
  ])('rejects %s, naming the field', (_name, extra, field) => {
    expect(() => validate(hostMetricsSchema, { ...host, ...extra }, 'host sample')).toThrow(field);
  });
});

describe('containerMetricsSchema', () => {
  it('accepts a sample with a migration marker', () => {
    expect(containerMetricsSchema.parse({ ...container, cpuCores: 1.01, cpuUtil: 1.01, migration: { fromHost: 'h1', toHost: 'h2' } }).migration?.toHost).toBe('h2');
  });
  it.each([
    ['missing herdId', { herdId: undefined }, 'herdId'],
    ['fractional process count', { processCount: 1.5 }, 'processCount'],
    ['marker without target', { migration: { fromHost: 'h1' } }, 'migration.toHost'],
  ])('rejects %s', (_name, extra, field) => {
    expect(() => validate(containerMetricsSchema, { ...container, ...extra }, 'container sample')).toThrow(field);
  });
});

describe('backoffSeconds', () => {
  it.each([
    [5, 0, 60, 5],
    [5, 1, 60, 10],
    [5, 3, 60, 40],
    [5, 4, 60, 60],
    [5, 100, 60, 60],
  ])('interval %s, %s failures, cap %s → %s s', (interval, failures, cap, expected) => {
    expect(backoffSeconds(interval, failures, cap)).toBe(expected);
  });
});

describe('numericProblem (the check every container sample gets between full schema checks)', () => {
  it.each([
    [{ ...container, cpuCores: 0.5, processCount: 3 }, undefined],
    [{ ...container, cpuCores: -0.1 }, 'cpuCores'],
    [{ ...container, memoryBytes: Number.NaN }, 'memoryBytes'],
    [{ ...container, netInBytesPerSec: Number.POSITIVE_INFINITY }, 'netInBytesPerSec'],
  ])('%o → %s', (sample, field) => {
    const problem = numericProblem(sample);
    if (field === undefined) expect(problem).toBeUndefined();
    else expect(problem).toContain(field);
  });
});
