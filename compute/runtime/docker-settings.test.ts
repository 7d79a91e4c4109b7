import type Docker from 'dockerode';
import { describe, expect, it } from 'vitest';
import { containerSpecSchema, type ContainerSpec } from '../../protocol/messages.ts';
import { carriedSecurityOpt, readNetwork, readSettings, writeSettings } from './docker-settings.ts';

/** What `docker inspect` (Docker 20.10) says of `docker run` with the settings a migration carries. */
function inspected(host: Record<string, unknown> = {}, config: Record<string, unknown> = {}): Docker.ContainerInspectInfo {
  return {
    Config: { Hostname: 'web1', Domainname: '', Entrypoint: ['/bin/tini', '--'], StopSignal: 'SIGINT', StopTimeout: 30, Healthcheck: { Test: ['CMD-SHELL', 'wget -q localhost'], Interval: 5e9, Retries: 3 }, ...config },
    HostConfig: {
      NetworkMode: 'bridge',
      PortBindings: { '80/tcp': [{ HostIp: '', HostPort: '8080' }, { HostIp: '127.0.0.1', HostPort: '8081' }], '53/udp': [{ HostIp: '', HostPort: '' }] },
      CapAdd: ['NET_BIND_SERVICE'],
      CapDrop: ['NET_RAW', 'MKNOD'],
      SecurityOpt: ['no-new-privileges:true'],
      Tmpfs: { '/run/t': 'size=8m' },
      ReadonlyRootfs: true,
      Init: true,
      ShmSize: 128 * 1024 * 1024,
      ExtraHosts: ['db:10.0.0.5'],
      Dns: ['10.0.0.2'],
      DnsSearch: ['example.org'],
      DnsOptions: ['ndots:2'],
      Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 4096 }],
      PidsLimit: 200,
      CpuShares: 512,
      CpuQuota: 50_000,
      CpuPeriod: 100_000,
      MemorySwap: -1,
      MemoryReservation: 1 << 26,
      Privileged: false,
      Devices: [],
      PidMode: '',
      IpcMode: 'private',
      ...host,
    },
  } as unknown as Docker.ContainerInspectInfo;
}

const base = (): ContainerSpec => ({ name: 'web', image: 'herd/busybox' });

describe('docker settings carried by a migration', () => {
  it('reads every carried setting into a spec the wire schema accepts, and writes them back as Docker takes them', () => {
    const spec = base();
    expect(readSettings(inspected(), spec)).toEqual([]);
    expect(containerSpecSchema.parse(spec)).toEqual(spec);
    expect(spec).toMatchObject({
      hostname: 'web1',
      entrypoint: ['/bin/tini', '--'],
      ports: [
        { containerPort: 80, protocol: 'tcp', hostPort: '8080' },
        { containerPort: 80, protocol: 'tcp', hostIp: '127.0.0.1', hostPort: '8081' },
        { containerPort: 53, protocol: 'udp' },
      ],
      capAdd: ['NET_BIND_SERVICE'],
      capDrop: ['NET_RAW', 'MKNOD'],
      securityOpt: ['no-new-privileges:true'],
      tmpfs: { '/run/t': 'size=8m' },
      readOnlyRootfs: true,
      init: true,
      stopSignal: 'SIGINT',
      stopTimeoutSeconds: 30,
      shmSizeBytes: 128 * 1024 * 1024,
      ulimits: [{ name: 'nofile', soft: 1024, hard: 4096 }],
      healthcheck: { test: ['CMD-SHELL', 'wget -q localhost'], intervalNs: 5e9, retries: 3 },
      pidsLimit: 200,
      cpuShares: 512,
      cpuQuotaMicros: 50_000,
      cpuPeriodMicros: 100_000,
      memorySwapBytes: -1,
      memoryReservationBytes: 1 << 26,
    });
    const options: Docker.ContainerCreateOptions = { name: 'web', Image: 'herd/busybox', HostConfig: {} };
    writeSettings(spec, options);
    expect(options).toMatchObject({
      Hostname: 'web1',
      Entrypoint: ['/bin/tini', '--'],
      StopSignal: 'SIGINT',
      StopTimeout: 30,
      ExposedPorts: { '80/tcp': {}, '53/udp': {} },
      Healthcheck: { Test: ['CMD-SHELL', 'wget -q localhost'], Interval: 5e9, Retries: 3 },
    });
    // Reading what was written gives the same spec back: nothing is lost on the way to the target.
    const again = base();
    readSettings(inspected(options.HostConfig as Record<string, unknown>, { Hostname: options.Hostname, Entrypoint: options.Entrypoint, StopSignal: options.StopSignal, StopTimeout: 30, Healthcheck: options.Healthcheck }), again);
    expect(again).toEqual(spec);
  });

  it('leaves out what is Docker default, and the host name of a container on the host network', () => {
    const spec = base();
    readSettings(inspected({ NetworkMode: 'host', PortBindings: {}, CapAdd: null, CapDrop: null, SecurityOpt: null, Tmpfs: null, ReadonlyRootfs: false, Init: null, ShmSize: 64 * 1024 * 1024, ExtraHosts: null, Dns: [], DnsSearch: [], DnsOptions: [], Ulimits: null, PidsLimit: null, CpuShares: 0, CpuQuota: 0, CpuPeriod: 0, MemorySwap: 0, MemoryReservation: 0 }, { Entrypoint: null, StopSignal: '', StopTimeout: null, Healthcheck: null }), spec);
    expect(spec).toEqual(base());
  });

  it('names each setting no migration carries', () => {
    const notCarried = readSettings(inspected({ Privileged: true, Devices: [{ PathOnHost: '/dev/fuse' }], SecurityOpt: ['seccomp=unconfined', 'no-new-privileges'], PidMode: 'host', IpcMode: 'container:abc', Links: ['/db:/web/db'], VolumesFrom: ['data'] }), base());
    expect(notCarried).toEqual([
      'security options seccomp=unconfined',
      'it is privileged',
      'host devices (1)',
      'the process namespace of host',
      'the IPC namespace of container:abc',
      'links to other containers (/db:/web/db)',
      'volumes of other containers (data)',
    ]);
  });

  it('carries only the security options that take privileges away', () => {
    expect(['no-new-privileges', 'no-new-privileges:true', 'no-new-privileges=true'].every(carriedSecurityOpt)).toBe(true);
    expect(['no-new-privileges:false', 'seccomp=unconfined', 'apparmor=unconfined', 'label=disable'].some(carriedSecurityOpt)).toBe(false);
  });

  it('carries the network: a user-defined one with its address and MAC, host, a bridge with an address; refuses a shared or a second one', () => {
    const net = (mode: string, networks: Record<string, object>) => ({ HostConfig: { NetworkMode: mode }, NetworkSettings: { Networks: networks } }) as unknown as Docker.ContainerInspectInfo;
    const read = (data: Docker.ContainerInspectInfo) => {
      const notCarried: string[] = [];
      return { network: readNetwork(data, notCarried), notCarried };
    };
    expect(read(net('herd-lan', { 'herd-lan': { IPAMConfig: { IPv4Address: '10.213.0.200' }, IPAddress: '10.213.0.200', MacAddress: '02:42:0a:d5:00:c8' } }))).toEqual({ network: { network: 'herd-lan', ip: '10.213.0.200', mac: '02:42:0a:d5:00:c8' }, notCarried: [] });
    expect(read(net('host', { host: {} }))).toEqual({ network: { network: 'host' }, notCarried: [] });
    expect(read(net('default', { bridge: { IPAddress: '172.17.0.2', MacAddress: '02:42:ac:11:00:02' } }))).toEqual({ network: { network: 'bridge' }, notCarried: [] });
    // A daemon without a bridge names it with no address: no network.
    expect(read(net('default', { bridge: { IPAddress: '' } }))).toEqual({ network: undefined, notCarried: [] });
    expect(read(net('none', { none: {} }))).toEqual({ network: undefined, notCarried: [] });
    expect(read(net('container:abc', {})).notCarried).toEqual(['it shares the network namespace of another container (container:abc)']);
    expect(read(net('a', { a: {}, b: {} })).notCarried).toEqual(['it is attached to 2 networks (a, b): only one is carried']);
  });
});
