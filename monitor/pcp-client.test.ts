import { describe, expect, it } from 'vitest';
import { parseFetchAnswer } from './pcp-client.ts';

describe('parseFetchAnswer', () => {
  it('collects numeric values by metric and instance, leaving out text values and metrics without instances', () => {
    const answer = {
      context: 7,
      timestamp: 1795390145.5,
      values: [
        { pmid: '3.0.0', name: 'cgroup.cpuacct.stat.user', instances: [{ instance: 1, value: 10 }, { instance: 2, value: 20 }] },
        { pmid: '60.0.1', name: 'kernel.all.load', instances: [{ instance: null, value: 0.5 }] },
        { pmid: '1.2.3', name: 'kernel.uname.release', instances: [{ instance: null, value: '6.1.0' }] },
        { pmid: '1.2.4', name: 'empty', instances: [] },
      ],
    };
    const parsed = parseFetchAnswer(answer);
    expect(parsed).toEqual({
      atSeconds: 1795390145.5,
      metrics: new Map<string, Map<number | null, number>>([
        ['cgroup.cpuacct.stat.user', new Map([[1, 10], [2, 20]])],
        ['kernel.all.load', new Map([[null, 0.5]])],
        ['kernel.uname.release', new Map()],
      ]),
    });
  });

  it.each([
    [null, 'expected an object'],
    [{ values: [] }, 'timestamp: expected a number'],
    [{ timestamp: 1 }, 'values: expected an array'],
    [{ timestamp: 1, values: [7] }, 'values.0: expected an object'],
    [{ timestamp: 1, values: [{ instances: [] }] }, 'values.0.name: expected a string'],
    [{ timestamp: 1, values: [{ name: 'a', instances: {} }] }, 'values.0.instances: expected an array'],
    [{ timestamp: 1, values: [{ name: 'a', instances: [{ instance: 1.5, value: 1 }] }] }, 'values.0.instances.0.instance: expected an integer or null'],
    [{ timestamp: 1, values: [{ name: 'a', instances: [{ instance: 1, value: 1 }, { instance: 2 }] }] }, 'values.0.instances.1.value: expected a number or a string'],
  ])('names what is wrong: %j', (body, problem) => {
    expect(parseFetchAnswer(body)).toBe(problem);
  });
});
