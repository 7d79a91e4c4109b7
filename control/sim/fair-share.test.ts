import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { shareHost, waterFill } from './fair-share.ts';

const sum = (xs: number[]) => xs.reduce((s, x) => s + x, 0);

describe('waterFill', () => {
  it('gives small wants what they ask and splits the rest evenly', () => {
    const r = waterFill(2, [0.5, 2, 2]);
    expect(r.level).toBeCloseTo(0.75);
    expect(r.alloc).toEqual([0.5, 0.75, 0.75]);
  });

  it('gives every want when they fit, with an infinite level', () => {
    expect(waterFill(4, [1, 2, 0.5])).toEqual({ level: Infinity, alloc: [1, 2, 0.5] });
    expect(waterFill(1, [])).toEqual({ level: Infinity, alloc: [] });
  });

  it('shares one core between two single-threaded containers: half each', () => {
    expect(waterFill(1, [1, 1]).alloc).toEqual([0.5, 0.5]);
  });

  it('is max-min fair: capacity used up, nobody above its want, everyone short of its want at the level', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.1, max: 16, noNaN: true }), fc.array(fc.double({ min: 0, max: 8, noNaN: true }), { maxLength: 12 }), (cap, wants) => {
        const { level, alloc } = waterFill(cap, wants);
        expect(sum(alloc)).toBeCloseTo(Math.min(cap, sum(wants)), 9);
        alloc.forEach((a, i) => {
          const w = wants[i] as number;
          expect(a).toBeLessThanOrEqual(w + 1e-12);
          if (a < w - 1e-9) expect(a).toBeCloseTo(level, 9);
        });
      }),
    );
  });
});

describe('shareHost', () => {
  it('without disk limits is the CPU water-filling', () => {
    const s = shareHost(2, undefined, { cpuWant: [1, 2, 0.25], diskWant: [100, 5000, 0] });
    expect(s.cpuUsed).toEqual([0.875, 0.875, 0.25]);
    expect(s.busyCores).toBeCloseTo(2);
    expect(s.progress[2]).toBe(1);
  });

  it('slows a container held back by the disk and gives the CPU it cannot use to the others', () => {
    // Two databases want 1000 disk ops/s each from a 1000 ops/s disk: half each, so they use half their CPU;
    // the CPU worker beside them gets the rest of the two cores.
    const s = shareHost(2, 1000, { cpuWant: [1, 1, 2], diskWant: [1000, 1000, 0] });
    expect(s.progress[0]).toBeCloseTo(0.5);
    expect(s.progress[1]).toBeCloseTo(0.5);
    expect(s.cpuUsed[0]).toBeCloseTo(0.5);
    expect(s.cpuUsed[2]).toBeCloseTo(1);
    expect(s.diskOps).toBeCloseTo(1000);
  });

  it('never exceeds the cores or the disk, and a container is short of its demand only at a saturated resource', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1, 2, 4),
        fc.double({ min: 100, max: 5000, noNaN: true }),
        fc.array(fc.tuple(fc.double({ min: 0, max: 4, noNaN: true }), fc.double({ min: 0, max: 3000, noNaN: true })), { minLength: 1, maxLength: 8 }),
        (cores, disk, load) => {
          const s = shareHost(cores, disk, { cpuWant: load.map((l) => l[0]), diskWant: load.map((l) => l[1]) });
          expect(sum(s.cpuUsed)).toBeLessThanOrEqual(cores + 1e-6);
          expect(s.diskOps).toBeLessThanOrEqual(disk + 1e-6);
          const cpuFull = sum(s.cpuUsed) >= cores - 1e-6;
          const diskFull = s.diskOps >= disk - 1e-6;
          s.progress.forEach((p) => {
            expect(p).toBeGreaterThanOrEqual(0);
            expect(p).toBeLessThanOrEqual(1);
            if (p < 1 - 1e-6) expect(cpuFull || diskFull).toBe(true);
          });
        },
      ),
    );
  });
});
