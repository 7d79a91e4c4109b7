/**
 * Addresses on a shared L2 network (Docker macvlan/ipvlan, e.g. the lab's "herd-lan").
 *
 * A container keeps its IP when it migrates (the target pins it), so the Docker IPAM of the
 * host that first gave the address out later believes it free and may hand it to a new
 * container: two endpoints, one IP. On such a network the compute daemon therefore never
 * lets Docker choose: it picks the address itself from what the whole cluster uses (every
 * host's published containers plus what its own Docker has attached) and pins it.
 *
 * Pure functions; the daemon gathers the inputs.
 */
import { HerdError } from '../../protocol/errors.ts';
import type { ContainerSummary } from '../../protocol/messages.ts';

/** Docker network drivers whose containers share one L2 segment (and so one address space) across hosts. */
export const SHARED_L2_DRIVERS: readonly string[] = ['macvlan', 'ipvlan'];

export function isSharedL2Driver(driver: string): boolean {
  return SHARED_L2_DRIVERS.includes(driver);
}

/** Who holds an address: a Herd container of some host, or (no name) something attached on this host's Docker. */
export interface AddressHolder {
  hostId: string;
  name?: string;
  herdId?: string;
}

export interface ChooseAddressInput {
  /** Network name, for messages. */
  network?: string;
  /** The network's IPv4 subnet, CIDR ("10.213.0.0/24"). */
  subnet: string;
  /** This host's IPRange inside the subnet, CIDR ("10.213.0.64/28"); the whole subnet when absent. */
  ipRange?: string;
  gateway?: string;
  /** Addresses taken anywhere in the cluster (a Set, or a Map from address to holder). */
  inUse: { has(address: string): boolean };
  /** Further addresses never to hand out. */
  reserved?: readonly string[];
}

interface Cidr {
  base: number;
  prefix: number;
  first: number;
  last: number;
}

/** Dotted quad to an unsigned 32-bit number; undefined when not a plain IPv4 address. */
export function ipv4ToNumber(address: string): number | undefined {
  const parts = address.trim().split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return undefined;
    const octet = Number(p);
    if (octet > 255) return undefined;
    n = n * 256 + octet;
  }
  return n;
}

export function numberToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function parseCidr(cidr: string, what: string): Cidr {
  const [address, prefixText, extra] = cidr.trim().split('/');
  const base = address === undefined ? undefined : ipv4ToNumber(address);
  const prefix = Number(prefixText);
  if (base === undefined || extra !== undefined || !/^\d{1,2}$/.test(prefixText ?? '') || prefix > 32) {
    throw new HerdError('BAD_CONFIG', `${what} "${cidr}" is not an IPv4 CIDR (a.b.c.d/n)`);
  }
  const size = 2 ** (32 - prefix);
  const first = Math.floor(base / size) * size;
  return { base, prefix, first, last: first + size - 1 };
}

/** Strips a prefix length ("10.0.0.5/24" → "10.0.0.5"); undefined for empty or non-IPv4 text. */
export function plainIpv4(address: string | undefined): string | undefined {
  const ip = address?.split('/')[0]?.trim();
  if (ip === undefined || ip === '') return undefined;
  const n = ipv4ToNumber(ip);
  return n === undefined ? undefined : numberToIpv4(n);
}

/**
 * The lowest free IPv4 address of the host's IPRange (the subnet when there is none),
 * never the subnet's network or broadcast address, the gateway, a reserved or an in-use
 * one. Throws CONFLICT naming the network and range when none is left.
 *
 * Like Docker's own IPAM, the range's first and last addresses are usable: only the
 * subnet's network and broadcast addresses are special.
 */
export function chooseAddress(input: ChooseAddressInput): string {
  const network = input.network === undefined ? 'the shared network' : `network "${input.network}"`;
  const subnet = parseCidr(input.subnet, `subnet of ${network}`);
  const range = input.ipRange === undefined || input.ipRange === '' ? subnet : parseCidr(input.ipRange, `IP range of ${network}`);
  const rangeText = input.ipRange === undefined || input.ipRange === '' ? `subnet ${input.subnet}` : `IP range ${input.ipRange} (subnet ${input.subnet})`;
  const skip = new Set<number>();
  // /31 and /32 subnets have no network or broadcast address (RFC 3021).
  if (subnet.prefix <= 30) {
    skip.add(subnet.first);
    skip.add(subnet.last);
  }
  for (const a of [input.gateway, ...(input.reserved ?? [])]) {
    const n = a === undefined ? undefined : ipv4ToNumber(a.split('/')[0] ?? '');
    if (n !== undefined) skip.add(n);
  }
  const from = Math.max(range.first, subnet.first);
  const to = Math.min(range.last, subnet.last);
  for (let n = from; n <= to; n++) {
    if (skip.has(n)) continue;
    const candidate = numberToIpv4(n);
    if (!input.inUse.has(candidate)) return candidate;
  }
  if (from > to) throw new HerdError('CONFLICT', `no address to hand out on ${network}: ${rangeText} lies outside the subnet`);
  throw new HerdError('CONFLICT', `no free address on ${network}: every address of ${rangeText} is in use (or the gateway); remove a container or give the host a larger range`);
}

/**
 * An explicit address (`--ip`) must not be one another container of the cluster holds.
 * Throws CONFLICT naming that container and its host.
 */
export function assertAddressFree(ip: string, inUse: ReadonlyMap<string, AddressHolder>, options: { network?: string; gateway?: string } = {}): void {
  const network = options.network === undefined ? 'the shared network' : `network "${options.network}"`;
  const address = plainIpv4(ip) ?? ip;
  if (options.gateway !== undefined && plainIpv4(options.gateway) === address) {
    throw new HerdError('CONFLICT', `address ${address} is the gateway of ${network}; choose another or leave it out to get a free one`);
  }
  const holder = inUse.get(address);
  if (holder === undefined) return;
  const who = holder.name === undefined ? `a container on host ${holder.hostId}` : `container "${holder.name}" on host ${holder.hostId}`;
  throw new HerdError('CONFLICT', `address ${address} on ${network} is already used by ${who}; choose another or leave it out to get a free one`);
}

/**
 * Every address held in the cluster: the containers of every online host (their published
 * summaries) and the addresses this host's Docker has attached to the network (which also
 * covers containers not managed by Herd and ones not yet published).
 */
export function addressesInUse(containers: readonly ContainerSummary[], local: readonly string[], hostId: string): Map<string, AddressHolder> {
  const inUse = new Map<string, AddressHolder>();
  for (const c of containers) {
    const ip = plainIpv4(c.ip);
    if (ip !== undefined && !inUse.has(ip)) inUse.set(ip, { hostId: c.hostId, name: c.name, herdId: c.herdId });
  }
  for (const a of local) {
    const ip = plainIpv4(a);
    if (ip !== undefined && !inUse.has(ip)) inUse.set(ip, { hostId });
  }
  return inUse;
}
