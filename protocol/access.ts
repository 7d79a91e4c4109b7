/**
 * Who may do what on Herd's broker: one set of rules that the embedded broker enforces
 * (control/broker/) and the compute and control daemons apply to the commands they receive.
 *
 * Identities (one per daemon or operator, listed in the broker's users file):
 * - compute (bound to one host): its own status, containers, replies and migration events;
 *   the target-side migration commands to its peers; reads the cluster's state.
 * - monitor: publishes metrics only; reads the cluster's state.
 * - control (bound to one node id): its own status and events, replies, commands to hosts;
 *   reads everything.
 * - operator (the CLI, the lab's tools): commands to hosts and control daemons; reads
 *   everything but other clients' replies and commands.
 * A client id is bound to its identity, so that no one can take over a daemon's session
 * (and publish its last will) or read another client's replies.
 */
import { z } from 'zod';
import { parseTopic, ID_PATTERN, TOPIC_ROOT } from './topics.ts';
import type { CommandType } from './messages.ts';

export const ROLES = ['compute', 'monitor', 'control', 'operator'] as const;
export type Role = (typeof ROLES)[number];

/** Usernames: no dots (operator client ids are `<username>.<rest>`), never Herd's reserved `herd-` prefix. */
export const USERNAME_PATTERN = /^(?!herd-)[a-z0-9][a-z0-9_-]{0,31}$/;

export const identityFields = {
    username: z.string().regex(USERNAME_PATTERN, 'must be 1-32 characters of a-z 0-9 _ - starting with a letter or digit, not starting with "herd-"'),
    role: z.enum(ROLES),
    /** compute: the host id this identity serves. */
    host: z.string().regex(ID_PATTERN).optional(),
    /** control: the control node id (default "control"). */
    node: z.string().regex(ID_PATTERN).optional(),
};
export const computeNeedsHost: [(i: { role: Role; host?: string | undefined }) => boolean, { message: string; path: string[] }] = [
  (i) => i.role !== 'compute' || i.host !== undefined,
  { message: 'a compute identity needs `host`', path: ['host'] },
];
export const identitySchema = z.strictObject(identityFields).refine(...computeNeedsHost);
export type Identity = z.infer<typeof identitySchema>;

const COMPUTE_PREFIX = 'herd-compute-';
const CONTROL_PREFIX = 'herd-control-';
const MONITOR_PREFIX = 'herd-monitor-';

/** The client id of the compute daemon of `hostId`: replies to host commands must come from it. */
export function computeClientId(hostId: string): string {
  return `${COMPUTE_PREFIX}${hostId}`.slice(0, 64);
}

/** The client id of the control daemon `nodeId`: replies to control commands must come from it. */
export function controlClientId(nodeId: string): string {
  return `${CONTROL_PREFIX}${nodeId}`.slice(0, 64);
}

/** What a client id says about its sender (trustworthy only on a broker that binds client ids, see clientIdAllowed). */
export function senderOf(clientId: string): { role: Role; host?: string; node?: string } {
  if (clientId.startsWith(COMPUTE_PREFIX)) return { role: 'compute', host: clientId.slice(COMPUTE_PREFIX.length) };
  if (clientId.startsWith(CONTROL_PREFIX)) return { role: 'control', node: clientId.slice(CONTROL_PREFIX.length) };
  if (clientId.startsWith(MONITOR_PREFIX)) return { role: 'monitor' };
  return { role: 'operator' };
}

export interface Decision {
  allowed: boolean;
  /** Why not (for the denial log). */
  reason?: string;
}

const allow: Decision = { allowed: true };
const deny = (reason: string): Decision => ({ allowed: false, reason });

/**
 * Client ids per identity: compute `herd-compute-<host>` and control `herd-control-<node>`
 * exactly; a monitor `herd-monitor-…`; an operator `<username>.…` (see operatorClientId).
 */
export function clientIdAllowed(identity: Identity, clientId: string): Decision {
  switch (identity.role) {
    case 'compute':
      return clientId === computeClientId(identity.host ?? '') ? allow : deny(`compute identity ${identity.username} must connect as ${computeClientId(identity.host ?? '')}`);
    case 'control': {
      const expected = controlClientId(identity.node ?? 'control');
      return clientId === expected ? allow : deny(`control identity ${identity.username} must connect as ${expected}`);
    }
    case 'monitor':
      return clientId.startsWith(MONITOR_PREFIX) && clientId.length > MONITOR_PREFIX.length ? allow : deny(`monitor identity ${identity.username} must use a client id starting with ${MONITOR_PREFIX}`);
    case 'operator':
      return clientId.startsWith(`${identity.username}.`) && clientId.length > identity.username.length + 1 ? allow : deny(`operator ${identity.username} must use a client id starting with "${identity.username}."`);
  }
}

/** A client id for one operator process: `<username>.<what>-<host>-<pid>` (without a username, the anonymous form). */
export function operatorClientId(username: string | undefined, what: string, host: string, pid = process.pid): string {
  const rest = `${what}-${host}-${pid}`.replace(/[^A-Za-z0-9_.-]/g, '-');
  return (username === undefined ? rest : `${username}.${rest}`).slice(0, 64);
}

/** Everything a daemon or operator may read about the cluster (retained state, metrics, events). */
const CLUSTER_READS = new Set(['hostStatus', 'hostContainers', 'migrationEvents', 'hostMetrics', 'containerMetrics', 'controlStatus', 'controlEvents']);

/** May this client publish on `topic`? */
export function mayPublish(identity: Identity, clientId: string, topic: string): Decision {
  const t = parseTopic(topic);
  if (t === undefined) return deny(`${topic} is not a Herd topic`);
  const who = `${identity.role} ${identity.username}`;
  switch (identity.role) {
    case 'compute': {
      const own = t.id === identity.host;
      if ((t.kind === 'hostStatus' || t.kind === 'hostContainers') && own) return allow;
      if (t.kind === 'migrationEvents' || t.kind === 'replies') return allow;
      // Target-side migration commands to a peer (which accepts no other type from a compute host).
      if (t.kind === 'hostCommands' && !own) return allow;
      return deny(`${who} may publish only its own host's status and containers, replies, migration events and commands to its peers`);
    }
    case 'monitor':
      return t.kind === 'hostMetrics' || t.kind === 'containerMetrics' ? allow : deny(`${who} may publish metrics only`);
    case 'control': {
      const own = t.id === (identity.node ?? 'control');
      if ((t.kind === 'controlStatus' || t.kind === 'controlEvents') && own) return allow;
      if (t.kind === 'replies' || t.kind === 'hostCommands') return allow;
      return deny(`${who} may publish only its own status and events, replies and host commands`);
    }
    case 'operator':
      return t.kind === 'hostCommands' || t.kind === 'controlCommands' ? allow : deny(`${who} may publish commands only`);
  }
}

/** Does an MQTT filter match only topics for which `ok` holds? Checked on the filter's shape (single-level `+` only). */
function filterKinds(filter: string): ReturnType<typeof parseTopic> | 'wildcard' | undefined {
  if (filter.includes('#')) return 'wildcard';
  // Replace each `+` with a probe id: the shape decides the kind; the id a `+` stands for is "any".
  const probe = filter.split('/').map((level) => (level === '+' ? '\u0000' : level));
  const parsed = parseTopic(probe.map((l) => (l === '\u0000' ? 'any-id' : l)).join('/'));
  if (parsed === undefined) return undefined;
  return probe.includes('\u0000') && parsed.id === 'any-id' ? { ...parsed, id: '+' } : parsed;
}

/** May this client subscribe to `filter`? */
export function maySubscribe(identity: Identity, clientId: string, filter: string): Decision {
  const who = `${identity.role} ${identity.username}`;
  if (filter.startsWith('$SYS')) return identity.role === 'control' || identity.role === 'operator' ? allow : deny(`${who} may not read $SYS`);
  const t = filterKinds(filter);
  if (t === 'wildcard') return deny(`${who} may not subscribe to multi-level wildcards (${filter})`);
  if (t === undefined) return deny(`${filter} is not a Herd topic filter`);
  if (t.kind === 'replies') return t.id === clientId ? allow : deny(`${who} may read only its own replies (${TOPIC_ROOT}/replies/${clientId})`);
  if (CLUSTER_READS.has(t.kind)) return allow;
  if (t.kind === 'hostCommands') return identity.role === 'compute' && t.id === identity.host ? allow : deny(`${who} may not read host ${t.id}'s commands`);
  if (t.kind === 'controlCommands') return identity.role === 'control' && t.id === (identity.node ?? 'control') ? allow : deny(`${who} may not read control ${t.id}'s commands`);
  return deny(`${who} may not subscribe to ${filter}`);
}

/** Commands a compute host accepts from a peer compute host: the target side of a migration. */
export const PEER_COMMANDS: ReadonlySet<CommandType> = new Set(['migration.check', 'migration.prepare', 'migration.restore', 'migration.abort', 'migration.commit', 'migration.status']);

/**
 * May the sender (by its client id, bound to its identity by the broker) have a daemon run
 * this command? Control daemons and operators send any command; a compute host only the
 * target side of a migration to a peer; a monitor none.
 */
export function mayCommand(fromClientId: string, type: CommandType): Decision {
  const sender = senderOf(fromClientId);
  if (sender.role === 'monitor') return deny(`a monitor (${fromClientId}) may not send commands`);
  if (sender.role === 'compute' && !PEER_COMMANDS.has(type)) return deny(`compute host ${sender.host} may send its peers only ${[...PEER_COMMANDS].join(', ')}, not ${type}`);
  return allow;
}

/** Topics every identity may read: the cluster's state, metrics and events. */
const CLUSTER_READ_FILTERS = ['herd/v1/hosts/+/status', 'herd/v1/hosts/+/containers', 'herd/v1/migrations/+/events', 'herd/v1/metrics/hosts/+', 'herd/v1/metrics/hosts/+/containers', 'herd/v1/control/+/status', 'herd/v1/control/+/events'];

/**
 * The rules above as a Mosquitto ACL file (acl_file), for a Mosquitto broker in place of
 * the embedded one. Mosquitto cannot bind client ids to usernames nor look into payloads:
 * there, a client id or a command's `from` is not proof of who sent it (docs/security.md).
 */
export function mosquittoAcl(identities: readonly Identity[]): string {
  const lines = ['# Herd broker ACLs (herd auth mosquitto): the rules of protocol/access.ts.', '# Every client reads its own replies.', 'pattern read herd/v1/replies/%c', ''];
  for (const i of identities) {
    lines.push(`user ${i.username}`);
    const write = (t: string) => lines.push(`topic write ${t}`);
    const read = (t: string) => lines.push(`topic read ${t}`);
    switch (i.role) {
      case 'compute':
        [`herd/v1/hosts/${i.host}/status`, `herd/v1/hosts/${i.host}/containers`, 'herd/v1/migrations/+/events', 'herd/v1/replies/+', 'herd/v1/hosts/+/commands'].forEach(write);
        read(`herd/v1/hosts/${i.host}/commands`);
        break;
      case 'monitor':
        ['herd/v1/metrics/hosts/+', 'herd/v1/metrics/hosts/+/containers'].forEach(write);
        break;
      case 'control': {
        const node = i.node ?? 'control';
        [`herd/v1/control/${node}/status`, `herd/v1/control/${node}/events`, 'herd/v1/replies/+', 'herd/v1/hosts/+/commands'].forEach(write);
        read(`herd/v1/control/${node}/commands`);
        read('$SYS/#');
        break;
      }
      case 'operator':
        ['herd/v1/hosts/+/commands', 'herd/v1/control/+/commands'].forEach(write);
        read('$SYS/#');
        break;
    }
    CLUSTER_READ_FILTERS.forEach(read);
    lines.push('');
  }
  return lines.join('\n');
}
