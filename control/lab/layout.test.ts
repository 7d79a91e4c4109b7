import { describe, expect, it } from 'vitest';
import { labLayout, LAB_MAX_HOSTS } from './layout.ts';

describe('labLayout', () => {
  it('gives each host its own namespace, address, sockets and container IP range', () => {
    const layout = labLayout({ hosts: 3, cpuCount: 2 });
    expect(layout.hosts.map((h) => [h.id, h.netns, h.ip, h.containerIpRange])).toEqual([
      ['h1', 'herd-h1', '10.213.0.11', '10.213.0.64/28'],
      ['h2', 'herd-h2', '10.213.0.12', '10.213.0.80/28'],
      ['h3', 'herd-h3', '10.213.0.13', '10.213.0.96/28'],
    ]);
    const sockets = new Set(layout.hosts.map((h) => h.dockerSocket));
    expect(sockets.size).toBe(3);
    expect(layout.brokerUrl).toBe('mqtts://10.213.0.1:1883');
  });

  it('gives hosts distinct CPUs while the machine has enough, then shares round-robin', () => {
    expect(labLayout({ hosts: 2, cpuCount: 2 }).hosts.map((h) => h.cpus)).toEqual([[0], [1]]);
    expect(labLayout({ hosts: 3, cpuCount: 2 }).hosts.map((h) => h.cpus)).toEqual([[0], [1], [0]]);
    expect(labLayout({ hosts: 2, cpuCount: 1 }).hosts.map((h) => h.cpus)).toEqual([[0], [0]]);
  });

  it('keeps interface names within the kernel limit of 15 characters', () => {
    for (const h of labLayout({ hosts: LAB_MAX_HOSTS, cpuCount: 2 }).hosts) {
      expect(h.vethRoot.length + 1).toBeLessThanOrEqual(15); // the peer is named vethRoot + "p" before it moves
      expect(h.netns.length).toBeLessThanOrEqual(15);
    }
  });

  it('rejects host counts outside 1..8 with a message naming the flag', () => {
    for (const bad of [0, -1, 9, 1.5, Number.NaN]) expect(() => labLayout({ hosts: bad, cpuCount: 2 })).toThrow(/--hosts must be an integer from 1 to 8/);
  });

  it('is pure: the same inputs give the same layout', () => {
    expect(labLayout({ hosts: 2, cpuCount: 2 })).toEqual(labLayout({ hosts: 2, cpuCount: 2 }));
  });
});
