/**
 * A container's Docker settings beyond the basics, read from `docker inspect` into the spec a
 * migration carries, and written back into the target's create call: host name, entrypoint,
 * published ports, capabilities, tmpfs mounts, limits, health check, DNS. The processes keep
 * what CRIU restores (their capabilities, rlimits, host name, tmpfs contents); these make
 * Docker's record of the container on the target say the same, so that `docker inspect`, a
 * published port and a later restart behave there as they did on the source.
 *
 * Some settings are not carried, because another host cannot honour them or because a peer
 * must not be able to ask for them (a privileged container, host devices, another security
 * profile, the host's process or IPC namespace): readSettings names them, and the migration is
 * refused before anything is frozen (preflight.ts assertCarried) rather than the container
 * arriving without them.
 */
import type Docker from 'dockerode';
import type { ContainerSpec } from '../../protocol/messages.ts';

/** Docker's default size of /dev/shm (64 MiB): not worth carrying. */
const DEFAULT_SHM_BYTES = 64 * 1024 * 1024;

/** The security options a migration carries: the ones that only take privileges away. */
export function carriedSecurityOpt(option: string): boolean {
  return /^no-new-privileges(?:[:=]true)?$/.test(option);
}

type Inspected = Docker.ContainerInspectInfo;
/** The parts of `docker inspect`'s HostConfig read here (dockerode's types lack some, or type them loosely). */
interface HostConfigRead {
  NetworkMode?: string;
  PortBindings?: Record<string, { HostIp?: string; HostPort?: string }[] | null> | null;
  CapAdd?: string[] | null;
  CapDrop?: string[] | null;
  SecurityOpt?: string[] | null;
  Privileged?: boolean;
  ReadonlyRootfs?: boolean;
  ShmSize?: number;
  Dns?: string[] | null;
  CpuShares?: number;
  CpuQuota?: number;
  CpuPeriod?: number;
  MemorySwap?: number;
  Init?: boolean | null;
  Tmpfs?: Record<string, string> | null;
  PidMode?: string;
  IpcMode?: string;
  UTSMode?: string;
  UsernsMode?: string;
  Links?: string[] | null;
  VolumesFrom?: string[] | null;
  Devices?: unknown[] | null;
  DeviceRequests?: unknown[] | null;
  Ulimits?: { Name: string; Soft: number; Hard: number }[] | null;
  DnsSearch?: string[] | null;
  DnsOptions?: string[] | null;
  ExtraHosts?: string[] | null;
  PidsLimit?: number | null;
  MemoryReservation?: number;
}
interface ConfigRead {
  Hostname?: string;
  Domainname?: string;
  Entrypoint?: string[] | string | null;
  StopSignal?: string;
  StopTimeout?: number | null;
  Healthcheck?: { Test?: string[]; Interval?: number; Timeout?: number; StartPeriod?: number; Retries?: number } | null;
}

const nonEmpty = <T>(a: T[] | null | undefined): a is T[] => Array.isArray(a) && a.length > 0;
const sharedNamespace = (mode: string | undefined) => mode === 'host' || (mode ?? '').startsWith('container:');

/** Copies the carried settings of `data` into `spec`; returns what the container has that no migration carries (empty: none). */
export function readSettings(data: Inspected, spec: ContainerSpec): string[] {
  const config = data.Config as unknown as ConfigRead;
  const host = data.HostConfig as unknown as HostConfigRead;
  const notCarried: string[] = [];
  if (host.NetworkMode !== 'host' && !(host.NetworkMode ?? '').startsWith('container:') && config.Hostname) spec.hostname = config.Hostname;
  if (config.Domainname) spec.domainname = config.Domainname;
  const entrypoint = typeof config.Entrypoint === 'string' ? [config.Entrypoint] : config.Entrypoint;
  if (nonEmpty(entrypoint)) spec.entrypoint = entrypoint;
  const ports: NonNullable<ContainerSpec['ports']> = [];
  for (const [key, bindings] of Object.entries(host.PortBindings ?? {})) {
    const m = /^(\d+)\/(tcp|udp|sctp)$/.exec(key);
    if (m === null) continue;
    for (const b of bindings ?? [{}]) ports.push({ containerPort: Number(m[1]), protocol: m[2] as 'tcp' | 'udp' | 'sctp', ...(b.HostIp ? { hostIp: b.HostIp } : {}), ...(b.HostPort ? { hostPort: b.HostPort } : {}) });
  }
  if (ports.length > 0) spec.ports = ports;
  if (nonEmpty(host.CapAdd)) spec.capAdd = host.CapAdd;
  if (nonEmpty(host.CapDrop)) spec.capDrop = host.CapDrop;
  const securityOpt = host.SecurityOpt ?? [];
  if (securityOpt.some(carriedSecurityOpt)) spec.securityOpt = securityOpt.filter(carriedSecurityOpt);
  const otherOpt = securityOpt.filter((o) => !carriedSecurityOpt(o));
  if (otherOpt.length > 0) notCarried.push(`security options ${otherOpt.join(', ')}`);
  if (host.Tmpfs && Object.keys(host.Tmpfs).length > 0) spec.tmpfs = { ...host.Tmpfs };
  if (host.ReadonlyRootfs === true) spec.readOnlyRootfs = true;
  if (host.Init === true) spec.init = true;
  if (config.StopSignal) spec.stopSignal = config.StopSignal;
  if (typeof config.StopTimeout === 'number' && config.StopTimeout >= 0) spec.stopTimeoutSeconds = config.StopTimeout;
  if (host.ShmSize && host.ShmSize > 0 && host.ShmSize !== DEFAULT_SHM_BYTES) spec.shmSizeBytes = host.ShmSize;
  if (nonEmpty(host.ExtraHosts)) spec.extraHosts = host.ExtraHosts;
  if (nonEmpty(host.Dns)) spec.dns = host.Dns;
  if (nonEmpty(host.DnsSearch)) spec.dnsSearch = host.DnsSearch;
  if (nonEmpty(host.DnsOptions)) spec.dnsOptions = host.DnsOptions;
  if (nonEmpty(host.Ulimits)) spec.ulimits = host.Ulimits.map((u) => ({ name: u.Name, soft: u.Soft, hard: u.Hard }));
  const hc = config.Healthcheck;
  if (hc && nonEmpty(hc.Test)) spec.healthcheck = { test: hc.Test, ...(hc.Interval ? { intervalNs: hc.Interval } : {}), ...(hc.Timeout ? { timeoutNs: hc.Timeout } : {}), ...(hc.StartPeriod ? { startPeriodNs: hc.StartPeriod } : {}), ...(hc.Retries ? { retries: hc.Retries } : {}) };
  if (host.PidsLimit && host.PidsLimit > 0) spec.pidsLimit = host.PidsLimit;
  if (host.CpuShares && host.CpuShares > 0) spec.cpuShares = host.CpuShares;
  if (host.CpuQuota && host.CpuQuota > 0) spec.cpuQuotaMicros = host.CpuQuota;
  if (host.CpuPeriod && host.CpuPeriod > 0) spec.cpuPeriodMicros = host.CpuPeriod;
  if (host.MemorySwap !== undefined && host.MemorySwap !== 0 && host.MemorySwap >= -1) spec.memorySwapBytes = host.MemorySwap;
  if (host.MemoryReservation && host.MemoryReservation > 0) spec.memoryReservationBytes = host.MemoryReservation;

  if (host.Privileged === true) notCarried.push('it is privileged');
  if (nonEmpty(host.Devices)) notCarried.push(`host devices (${host.Devices.length})`);
  if (nonEmpty(host.DeviceRequests)) notCarried.push('device requests (GPUs)');
  if (sharedNamespace(host.PidMode)) notCarried.push(`the process namespace of ${host.PidMode}`);
  if (sharedNamespace(host.IpcMode)) notCarried.push(`the IPC namespace of ${host.IpcMode}`);
  if (host.UTSMode === 'host') notCarried.push("the host's UTS namespace");
  if (host.UsernsMode === 'host') notCarried.push("the host's user namespace");
  if (nonEmpty(host.Links)) notCarried.push(`links to other containers (${host.Links.join(', ')})`);
  if (nonEmpty(host.VolumesFrom)) notCarried.push(`volumes of other containers (${host.VolumesFrom.join(', ')})`);
  return notCarried;
}

/**
 * The network a migration carries: a user-defined one (macvlan, a user bridge) with its address
 * and MAC, or Docker's host or bridge network (on the bridge, the target's Docker picks the
 * address: Docker takes no fixed one there); none for none. Another container's network
 * namespace, or more than one network, goes to `notCarried`.
 */
export function readNetwork(data: Inspected, notCarried: string[]): ContainerSpec['network'] {
  const networks = Object.entries(data.NetworkSettings.Networks ?? {});
  if (networks.length > 1) notCarried.push(`it is attached to ${networks.length} networks (${networks.map(([n]) => n).join(', ')}): only one is carried`);
  const mode = (data.HostConfig as unknown as HostConfigRead).NetworkMode ?? '';
  if (mode.startsWith('container:')) {
    notCarried.push(`it shares the network namespace of another container (${mode})`);
    return undefined;
  }
  const [name, endpoint] = networks[0] ?? [];
  if (name === undefined || name === 'none') return undefined;
  if (name === 'host') return { network: 'host' };
  // A daemon without a bridge ("bridge": "none", as the lab's) still names it for a container of the
  // default network mode, with no address: that container has no network.
  if (name === 'bridge') return endpoint?.IPAddress ? { network: 'bridge' } : undefined;
  const ip = endpoint?.IPAMConfig?.IPv4Address || endpoint?.IPAddress;
  return { network: name, ...(ip ? { ip } : {}), ...(endpoint?.MacAddress ? { mac: endpoint.MacAddress } : {}) };
}

/** Writes the settings readSettings carries into Docker's create options. */
export function writeSettings(spec: ContainerSpec, options: Docker.ContainerCreateOptions): void {
  const host = (options.HostConfig ??= {}) as NonNullable<Docker.ContainerCreateOptions['HostConfig']> & HostConfigRead;
  if (spec.hostname !== undefined) options.Hostname = spec.hostname;
  if (spec.domainname !== undefined) options.Domainname = spec.domainname;
  if (spec.entrypoint !== undefined) options.Entrypoint = spec.entrypoint;
  if (spec.ports !== undefined) {
    const bindings: Record<string, { HostIp?: string; HostPort?: string }[]> = {};
    const exposed: Record<string, object> = {};
    for (const p of spec.ports) {
      const key = `${p.containerPort}/${p.protocol}`;
      exposed[key] = {};
      (bindings[key] ??= []).push({ ...(p.hostIp === undefined ? {} : { HostIp: p.hostIp }), ...(p.hostPort === undefined ? {} : { HostPort: p.hostPort }) });
    }
    options.ExposedPorts = { ...(options.ExposedPorts ?? {}), ...exposed };
    host.PortBindings = bindings;
  }
  if (spec.capAdd !== undefined) host.CapAdd = spec.capAdd;
  if (spec.capDrop !== undefined) host.CapDrop = spec.capDrop;
  if (spec.securityOpt !== undefined) host.SecurityOpt = spec.securityOpt;
  if (spec.tmpfs !== undefined) host.Tmpfs = spec.tmpfs;
  if (spec.readOnlyRootfs === true) host.ReadonlyRootfs = true;
  if (spec.init === true) host.Init = true;
  if (spec.stopSignal !== undefined) options.StopSignal = spec.stopSignal;
  if (spec.stopTimeoutSeconds !== undefined) (options as ConfigRead).StopTimeout = spec.stopTimeoutSeconds;
  if (spec.shmSizeBytes !== undefined) host.ShmSize = spec.shmSizeBytes;
  if (spec.extraHosts !== undefined) host.ExtraHosts = spec.extraHosts;
  if (spec.dns !== undefined) host.Dns = spec.dns;
  if (spec.dnsSearch !== undefined) host.DnsSearch = spec.dnsSearch;
  if (spec.dnsOptions !== undefined) host.DnsOptions = spec.dnsOptions;
  if (spec.ulimits !== undefined) host.Ulimits = spec.ulimits.map((u) => ({ Name: u.name, Soft: u.soft, Hard: u.hard }));
  const hc = spec.healthcheck;
  if (hc !== undefined) options.Healthcheck = { Test: hc.test, ...(hc.intervalNs === undefined ? {} : { Interval: hc.intervalNs }), ...(hc.timeoutNs === undefined ? {} : { Timeout: hc.timeoutNs }), ...(hc.startPeriodNs === undefined ? {} : { StartPeriod: hc.startPeriodNs }), ...(hc.retries === undefined ? {} : { Retries: hc.retries }) };
  if (spec.pidsLimit !== undefined) host.PidsLimit = spec.pidsLimit;
  if (spec.cpuShares !== undefined) host.CpuShares = spec.cpuShares;
  if (spec.cpuQuotaMicros !== undefined) host.CpuQuota = spec.cpuQuotaMicros;
  if (spec.cpuPeriodMicros !== undefined) host.CpuPeriod = spec.cpuPeriodMicros;
  if (spec.memorySwapBytes !== undefined) host.MemorySwap = spec.memorySwapBytes;
  if (spec.memoryReservationBytes !== undefined) host.MemoryReservation = spec.memoryReservationBytes;
}
