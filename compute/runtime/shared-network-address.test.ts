import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HerdError } from '../../protocol/errors.ts';
import type { ContainerSummary } from '../../protocol/messages.ts';
import { addressesInUse, assertAddressFree, chooseAddress, ipv4ToNumber, isSharedL2Driver, numberToIpv4, type ChooseAddressInput } from './shared-network-address.ts';

/** The lab's layout: one /24, gateway .1, host n gets 10.213.0.(64 + 16 (n - 1))/28. */
const LAB = { network: 'herd-lan', subnet: '10.213.0.0/24', gateway: '10.213.0.1' };

const range = (prefix: string, from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `${prefix}.${from + i}`);

function summary(name: string, hostId: string, ip?: string): ContainerSummary {
  return { herdId: `id-${name}`, name, hostId, dockerId: `d-${name}`, image: 'busybox:1.36', state: 'running', ...(ip === undefined ? {} : { ip }) };
}

function thrown(fn: () => unknown): HerdError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(HerdError);
    return err as HerdError;
  }
  throw new Error('expected a HerdError');
}

describe('chooseAddress', () => {
  const cases: Array<{ name: string; input: Omit<ChooseAddressInput, 'inUse'> & { inUse: string[] }; expected: string }> = [
    { name: 'the lowest address of the host range (its first address is usable, as in Docker)', input: { ...LAB, ipRange: '10.213.0.64/28', inUse: [] }, expected: '10.213.0.64' },
    { name: 'a /28 range of another host', input: { ...LAB, ipRange: '10.213.0.80/28', inUse: [] }, expected: '10.213.0.80' },
    { name: 'in-use addresses skipped', input: { ...LAB, ipRange: '10.213.0.64/28', inUse: ['10.213.0.64', '10.213.0.65', '10.213.0.67'] }, expected: '10.213.0.66' },
    { name: 'the last address of a /28 range when all others are taken', input: { ...LAB, ipRange: '10.213.0.64/28', inUse: range('10.213.0', 64, 78) }, expected: '10.213.0.79' },
    { name: 'subnet without range: network address and gateway skipped', input: { ...LAB, inUse: [] }, expected: '10.213.0.2' },
    { name: 'subnet without range and without gateway: network address skipped', input: { network: 'lan', subnet: '192.168.7.0/24', inUse: [] }, expected: '192.168.7.1' },
    { name: 'gateway inside the range skipped', input: { network: 'lan', subnet: '10.0.0.0/24', ipRange: '10.0.0.0/28', gateway: '10.0.0.1', inUse: [] }, expected: '10.0.0.2' },
    { name: 'gateway given with a prefix length skipped', input: { network: 'lan', subnet: '10.0.0.0/24', gateway: '10.0.0.1/24', inUse: [] }, expected: '10.0.0.2' },
    { name: 'reserved addresses skipped', input: { ...LAB, ipRange: '10.213.0.64/28', reserved: ['10.213.0.64', '10.213.0.65'], inUse: [] }, expected: '10.213.0.66' },
    { name: 'in-use addresses outside the range do not matter', input: { ...LAB, ipRange: '10.213.0.80/28', inUse: range('10.213.0', 2, 79) }, expected: '10.213.0.80' },
    { name: 'range crossing an octet', input: { network: 'lan', subnet: '10.1.0.0/16', ipRange: '10.1.0.0/23', gateway: '10.1.0.1', inUse: range('10.1.0', 2, 255) }, expected: '10.1.1.0' },
    { name: 'range reaching the subnet broadcast: broadcast skipped', input: { ...LAB, ipRange: '10.213.0.240/28', inUse: range('10.213.0', 240, 253) }, expected: '10.213.0.254' },
  ];
  it.each(cases)('$name', ({ input, expected }) => {
    expect(chooseAddress({ ...input, inUse: new Set(input.inUse) })).toBe(expected);
  });

  it('accepts a Map of holders as the in-use set', () => {
    const inUse = addressesInUse([summary('web', 'h2', '10.213.0.64')], [], 'h1');
    expect(chooseAddress({ ...LAB, ipRange: '10.213.0.64/28', inUse })).toBe('10.213.0.65');
  });

  it('throws CONFLICT naming the network and range when the range is exhausted', () => {
    const err = thrown(() => chooseAddress({ ...LAB, ipRange: '10.213.0.64/28', inUse: new Set(range('10.213.0', 64, 79)) }));
    expect(err.code).toBe('CONFLICT');
    expect(err.message).toContain('"herd-lan"');
    expect(err.message).toContain('10.213.0.64/28');
  });

  it('throws CONFLICT when only the gateway and the subnet edges are left', () => {
    const err = thrown(() => chooseAddress({ network: 'tiny', subnet: '10.9.0.0/30', gateway: '10.9.0.1', inUse: new Set(['10.9.0.2']) }));
    expect(err.code).toBe('CONFLICT');
    expect(err.message).toContain('"tiny"');
    expect(err.message).toContain('10.9.0.0/30');
  });

  it('throws CONFLICT when the range lies outside the subnet', () => {
    expect(thrown(() => chooseAddress({ ...LAB, ipRange: '10.214.0.64/28', inUse: new Set() })).code).toBe('CONFLICT');
  });

  it('throws BAD_CONFIG for a subnet that is not IPv4 CIDR', () => {
    expect(thrown(() => chooseAddress({ network: 'v6', subnet: 'fd00::/64', inUse: new Set() })).code).toBe('BAD_CONFIG');
    expect(thrown(() => chooseAddress({ network: 'bad', subnet: '10.0.0.0/33', inUse: new Set() })).code).toBe('BAD_CONFIG');
  });

  it('property: the address is inside the range and subnet, never in use, never the gateway nor the subnet edges', () => {
    const arb = fc
      .record({
        base: fc.integer({ min: 0x0a000000, max: 0x0affffff }),
        subnetPrefix: fc.integer({ min: 20, max: 30 }),
        rangeExtra: fc.option(fc.integer({ min: 0, max: 8 }), { nil: undefined }),
        rangePick: fc.nat(),
        gatewayPick: fc.option(fc.nat(), { nil: undefined }),
        usedPicks: fc.array(fc.nat(), { maxLength: 40 }),
        fillFraction: fc.double({ min: 0, max: 1, noNaN: true }),
      })
      .map((r) => {
        const subnetSize = 2 ** (32 - r.subnetPrefix);
        const subnetFirst = Math.floor(r.base / subnetSize) * subnetSize;
        const rangePrefix = Math.min(32, r.subnetPrefix + (r.rangeExtra ?? 0));
        const rangeSize = 2 ** (32 - rangePrefix);
        const rangeFirst = subnetFirst + (r.rangePick % (subnetSize / rangeSize)) * rangeSize;
        const gateway = r.gatewayPick === undefined ? undefined : numberToIpv4(subnetFirst + (r.gatewayPick % subnetSize));
        // Some random addresses of the subnet, plus a prefix of the range (to reach exhaustion often).
        const used = new Set(r.usedPicks.map((p) => numberToIpv4(subnetFirst + (p % subnetSize))));
        for (let i = 0; i < Math.floor(rangeSize * r.fillFraction); i++) used.add(numberToIpv4(rangeFirst + i));
        return {
          subnet: `${numberToIpv4(subnetFirst)}/${r.subnetPrefix}`,
          ipRange: r.rangeExtra === undefined ? undefined : `${numberToIpv4(rangeFirst)}/${rangePrefix}`,
          gateway,
          used,
          subnetFirst,
          subnetLast: subnetFirst + subnetSize - 1,
          rangeFirst: r.rangeExtra === undefined ? subnetFirst : rangeFirst,
          rangeLast: r.rangeExtra === undefined ? subnetFirst + subnetSize - 1 : rangeFirst + rangeSize - 1,
        };
      });
    fc.assert(
      fc.property(arb, (c) => {
        const input = { network: 'net', subnet: c.subnet, ...(c.ipRange === undefined ? {} : { ipRange: c.ipRange }), ...(c.gateway === undefined ? {} : { gateway: c.gateway }), inUse: c.used };
        const free: number[] = [];
        for (let n = c.rangeFirst; n <= c.rangeLast; n++) {
          if (n !== c.subnetFirst && n !== c.subnetLast && numberToIpv4(n) !== c.gateway && !c.used.has(numberToIpv4(n))) free.push(n);
        }
        if (free.length === 0) {
          expect(thrown(() => chooseAddress(input)).code).toBe('CONFLICT');
          return;
        }
        const chosen = chooseAddress(input);
        const n = ipv4ToNumber(chosen) as number;
        expect(n).toBeGreaterThanOrEqual(c.rangeFirst);
        expect(n).toBeLessThanOrEqual(c.rangeLast);
        expect(n).toBeGreaterThan(c.subnetFirst);
        expect(n).toBeLessThan(c.subnetLast);
        expect(c.used.has(chosen)).toBe(false);
        expect(chosen).not.toBe(c.gateway);
        expect(n).toBe(free[0]); // the lowest free one
      }),
      { numRuns: 500 },
    );
  });
});

describe('assertAddressFree', () => {
  const inUse = addressesInUse([summary('db', 'h2', '10.213.0.70'), summary('web', 'h1', '10.213.0.64'), summary('idle', 'h3')], ['10.213.0.64', '10.213.0.99/24'], 'h1');

  it('passes for an address nobody holds', () => {
    expect(() => assertAddressFree('10.213.0.71', inUse, { network: 'herd-lan' })).not.toThrow();
  });

  it('throws CONFLICT naming the container and host that hold an explicit address elsewhere', () => {
    const err = thrown(() => assertAddressFree('10.213.0.70', inUse, { network: 'herd-lan' }));
    expect(err.code).toBe('CONFLICT');
    expect(err.message).toContain('"db"');
    expect(err.message).toContain('host h2');
    expect(err.message).toContain('"herd-lan"');
  });

  it('names this host for an address only its Docker knows (not managed by Herd, or not yet published)', () => {
    const err = thrown(() => assertAddressFree('10.213.0.99', inUse));
    expect(err.code).toBe('CONFLICT');
    expect(err.message).toContain('host h1');
  });

  it('refuses the gateway', () => {
    expect(thrown(() => assertAddressFree('10.213.0.1', inUse, { network: 'herd-lan', gateway: '10.213.0.1' })).code).toBe('CONFLICT');
  });
});

describe('addressesInUse', () => {
  it('keeps the published holder of an address over the anonymous local one, strips prefix lengths, skips containers without an address', () => {
    const map = addressesInUse([summary('web', 'h1', '10.213.0.64'), summary('idle', 'h3')], ['10.213.0.64', '10.213.0.99/24', ''], 'h1');
    expect([...map.entries()]).toEqual([
      ['10.213.0.64', { hostId: 'h1', name: 'web', herdId: 'id-web' }],
      ['10.213.0.99', { hostId: 'h1' }],
    ]);
  });
});

describe('isSharedL2Driver', () => {
  it.each([
    ['macvlan', true],
    ['ipvlan', true],
    ['bridge', false],
    ['overlay', false],
  ])('%s → %s', (driver, expected) => {
    expect(isSharedL2Driver(driver)).toBe(expected);
  });
});
