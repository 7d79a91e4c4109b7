/**
 * The cluster-level exactly-once check: every Herd id should run exactly once. A pure
 * function over two consecutive looks at the cluster (the hosts' retained status and
 * container lists); the placement guard (placement-guard.ts) runs it on a timer,
 * publishes its findings and carries out its repairs.
 *
 * Only containers of ONLINE hosts count (an offline host's retained list says what ran
 * when it left, not what runs now). A copy with `migrationId` set takes part in a
 * migration in flight: the source's copy and the target's prepared (later restored) copy
 * legitimately show a created/running or exited/running pair, so a Herd id with any copy
 * in a migration is never judged, and the clocks below start again once it is over.
 *
 * duplicate — one Herd id with two or more copies in state "running" (normally on two
 * hosts) and no copy in a migration. Retained lists lag (the target may publish "running"
 * before the source publishes "exited"), so the same running copies must be seen in
 * consecutive checks spanning at least the grace period (default 10 s: two checks of the
 * guard's 15 s timer) before it is a finding; a change in the set of running copies
 * starts the clock again. Repair: stop every running copy but one.
 *   Which copy is kept: the one CREATED most recently. A migration's target container is
 *   created (migration.prepare) after the source's and is restored from the checkpoint
 *   the source handed over last; when a source wrongly runs again (a rollback after the
 *   target was already restored, an operator's `docker start`), it resumes from an older
 *   state, in an older container, even though it STARTED later. So creation time, not
 *   start time, says which copy holds the newest hand-over. When that cannot be told
 *   (a running copy without a readable `createdAt`, or two newest copies created in the
 *   same instant) the finding is raised without a repair: stopping a copy on a guess could
 *   stop the live one. A stopped copy is left in place (exited) for the operator to
 *   inspect and remove; nothing is removed automatically.
 *
 * not-running — a Herd id the check saw running and that now runs nowhere, with every
 * host it ran on online, no copy in a migration and at least one copy still present but
 * not running (exited, created, paused…), for the grace period. An event only, never an
 * automatic restart: an operator may have stopped it on purpose (`herd stop`, `docker
 * stop`). A Herd id that vanished altogether while its hosts stay online was removed
 * (`herd rm`, `docker rm`): nothing is reported.
 *
 * host-offline — a Herd id that ran on a host which is now offline (or no longer known)
 * and that runs on no online host: it may well still run there, unseen, so it is not
 * reported as lost. Reported once; when the host comes back, the Herd id is judged again
 * (a host that rebooted brings its containers back exited: that is then a not-running).
 *
 * A finding is reported once per episode (the check on which it is confirmed); a
 * duplicate's repairs are returned on every check while it lasts, so a repair that
 * failed is tried again (the guard does not repeat one still pending).
 */
import type { ContainerSummary, HostStatus } from '../../protocol/messages.ts';

export type PlacementFindingKind = 'duplicate' | 'not-running' | 'host-offline';

export interface PlacementFinding {
  kind: PlacementFindingKind;
  herdId: string;
  name: string;
  /** duplicate: the hosts running a copy; not-running and host-offline: the hosts it last ran on. */
  hosts: string[];
  /** One line for people: what was seen, since when, and what is (not) done about it. */
  reason: string;
}

export interface Repair {
  kind: 'stop';
  hostId: string;
  /** Docker id of the copy to stop (its name when the id is not known). */
  container: string;
  herdId: string;
  name: string;
  /** The copy kept running, for the outcome's message. */
  keep: { hostId: string; container: string };
  /** Which copy is stopped, which is kept, and why. */
  reason: string;
}

interface DuplicateMemory {
  /** First check in the unbroken run of checks that saw these same running copies. */
  sinceMs: number;
  /** The running copies, "hostId/dockerId", sorted. */
  copies: string;
  reported: boolean;
}

interface MissingMemory {
  name: string;
  /** Hosts it ran on when last seen running. */
  hosts: string[];
  /** Where it stands: just stopped running, its hosts away (offline or unknown) or online, or in a migration. A change restarts the clock. */
  situation: 'new' | 'away' | 'here' | 'migrating';
  /** First check that saw it in its present situation. */
  sinceMs: number;
  /** Set once host-offline was reported (judged again when its hosts are back). */
  reportedOffline: boolean;
}

/** What a check hands the next one. Treat as opaque. */
export interface PlacementMemory {
  atMs: number;
  /** Herd ids running on an online host at this check: their name and hosts. */
  running: ReadonlyMap<string, { name: string; hosts: string[] }>;
  duplicates: ReadonlyMap<string, DuplicateMemory>;
  /** Herd ids seen running before and running nowhere since, not yet reported (or reported host-offline). */
  missing: ReadonlyMap<string, MissingMemory>;
}

export interface PlacementCheckOptions {
  /** How long a situation must last (over consecutive checks) before it is a finding. */
  graceMs?: number;
}

export const DEFAULT_PLACEMENT_GRACE_MS = 10_000;

export function checkPlacement(
  previous: PlacementMemory | undefined,
  now: { hosts: HostStatus[]; containers: ContainerSummary[] },
  atMs: number,
  options: PlacementCheckOptions = {},
): { findings: PlacementFinding[]; memory: PlacementMemory; repairs: Repair[] } {
  const graceMs = options.graceMs ?? DEFAULT_PLACEMENT_GRACE_MS;
  const hostState = new Map(now.hosts.map((h) => [h.hostId, h]));
  const online = (hostId: string) => hostState.get(hostId)?.state === 'online';
  const byHerdId = new Map<string, ContainerSummary[]>();
  for (const c of now.containers) {
    if (!online(c.hostId)) continue;
    const list = byHerdId.get(c.herdId);
    if (list === undefined) byHerdId.set(c.herdId, [c]);
    else list.push(c);
  }

  const findings: PlacementFinding[] = [];
  const repairs: Repair[] = [];
  const running = new Map<string, { name: string; hosts: string[] }>();
  const duplicates = new Map<string, DuplicateMemory>();
  const missing = new Map<string, MissingMemory>();
  const lasted = (sinceMs: number) => `${Math.round((atMs - sinceMs) / 1000)} s`;

  for (const [herdId, copies] of [...byHerdId].sort(([a], [b]) => a.localeCompare(b))) {
    const up = copies.filter((c) => c.state === 'running').sort((a, b) => a.hostId.localeCompare(b.hostId) || a.dockerId.localeCompare(b.dockerId));
    const name = (up[0] ?? copies[0] as ContainerSummary).name;
    if (up.length > 0) running.set(herdId, { name, hosts: unique(up.map((c) => c.hostId)) });
    if (up.length < 2 || copies.some((c) => c.migrationId !== undefined)) continue;

    const key = up.map((c) => `${c.hostId}/${c.dockerId}`).join(',');
    const before = previous?.duplicates.get(herdId);
    const entry: DuplicateMemory = before !== undefined && before.copies === key ? { ...before } : { sinceMs: atMs, copies: key, reported: false };
    duplicates.set(herdId, entry);
    if (atMs - entry.sinceMs < graceMs || entry.sinceMs === atMs) continue;

    const hosts = unique(up.map((c) => c.hostId));
    const where = up.map((c) => `${c.hostId} (${shortId(c)}, created ${c.createdAt ?? 'at an unknown time'})`).join(', ');
    const seen = `${name} (${herdId}) runs ${up.length} times, on ${where}, with no migration in flight, for ${lasted(entry.sinceMs)}`;
    const keep = newest(up);
    if (keep === undefined) {
      if (!entry.reported) {
        findings.push({ kind: 'duplicate', herdId, name, hosts, reason: `${seen}; not repaired: which copy was created last cannot be told (a creation time is missing or two are equal), stop the stale copy by hand` });
      }
      entry.reported = true;
      continue;
    }
    const stops = up.filter((c) => c !== keep);
    const why = `keeping the copy on ${keep.hostId} (${shortId(keep)}, created ${keep.createdAt}), the one created last: a migration's target is created after its source and restored from the last hand-over, while a copy that runs again in an older container resumed from older state`;
    for (const c of stops) {
      repairs.push({
        kind: 'stop',
        hostId: c.hostId,
        container: c.dockerId === '' ? c.name : c.dockerId,
        herdId,
        name,
        keep: { hostId: keep.hostId, container: keep.dockerId === '' ? keep.name : keep.dockerId },
        reason: `stop ${name} (${herdId}) on ${c.hostId} (${shortId(c)}, created ${c.createdAt}), a duplicate; ${why}`,
      });
    }
    if (!entry.reported) {
      findings.push({ kind: 'duplicate', herdId, name, hosts, reason: `${seen}; repair: stop the cop${stops.length > 1 ? 'ies' : 'y'} on ${stops.map((c) => c.hostId).join(', ')}, ${why}` });
    }
    entry.reported = true;
  }

  // Herd ids running at the last check (or missing since), running nowhere now.
  const candidates = new Map<string, MissingMemory>(previous?.missing ?? []);
  for (const [herdId, r] of previous?.running ?? []) {
    if (!candidates.has(herdId)) candidates.set(herdId, { name: r.name, hosts: r.hosts, situation: 'new', sinceMs: atMs, reportedOffline: false });
  }
  for (const [herdId, m] of [...candidates].sort(([a], [b]) => a.localeCompare(b))) {
    if (running.has(herdId)) continue; // running (again)
    const copies = byHerdId.get(herdId) ?? [];
    if (copies.some((c) => c.migrationId !== undefined)) {
      // A migration in flight: judged again, from scratch, once it is over.
      missing.set(herdId, { ...m, situation: 'migrating', sinceMs: atMs, reportedOffline: false });
      continue;
    }
    const away = m.hosts.filter((h) => !online(h));
    const situation = away.length > 0 ? 'away' : 'here';
    if (situation === 'here' && copies.length === 0) continue; // removed on purpose: nothing left of it on its hosts, which are online
    if (situation === 'away' && m.reportedOffline) {
      // Said once; kept until its hosts are back (or forgotten by the broker).
      if (m.hosts.some((h) => hostState.has(h))) missing.set(herdId, m);
      continue;
    }
    const entry: MissingMemory = m.situation === situation ? m : { ...m, situation, sinceMs: atMs, reportedOffline: false };
    if (atMs - entry.sinceMs < graceMs || entry.sinceMs === atMs) {
      missing.set(herdId, entry);
      continue;
    }
    if (situation === 'away') {
      const states = away.map((h) => {
        const s = hostState.get(h);
        return s === undefined ? `${h} (no longer known)` : `${h} (offline since ${s.since}${s.reason === undefined ? '' : `: ${s.reason}`})`;
      });
      findings.push({
        kind: 'host-offline',
        herdId,
        name: m.name,
        hosts: m.hosts,
        reason: `${m.name} (${herdId}) ran on ${states.join(', ')} and has run on no online host for ${lasted(entry.sinceMs)}: it may still run there unseen, so it is not reported lost; it is judged again when the host is back`,
      });
      missing.set(herdId, { ...entry, reportedOffline: true });
      continue;
    }
    const left = copies.map((c) => `${c.state} on ${c.hostId} (${shortId(c)})`).join(', ');
    findings.push({
      kind: 'not-running',
      herdId,
      name: m.name,
      hosts: m.hosts,
      reason: `${m.name} (${herdId}) ran on ${m.hosts.join(', ')} and has run nowhere for ${lasted(entry.sinceMs)} (${left}; no migration in flight, ${m.hosts.length > 1 ? 'its hosts are' : 'its host is'} online); not restarted automatically: it may have been stopped on purpose (herd stop, docker stop)`,
    });
    // Reported once: no longer remembered, so nothing more is said until it runs again.
  }

  return { findings, repairs, memory: { atMs, running, duplicates, missing } };
}

/** Forgets what the checks saw of a Herd id's duplicate, so that it is confirmed afresh (over the grace period) before it is reported or repaired again. */
export function forgetDuplicate(memory: PlacementMemory, herdId: string): PlacementMemory {
  if (!memory.duplicates.has(herdId)) return memory;
  const duplicates = new Map(memory.duplicates);
  duplicates.delete(herdId);
  return { ...memory, duplicates };
}

/** The running copy created last, or undefined when that cannot be told. */
function newest(copies: ContainerSummary[]): ContainerSummary | undefined {
  const times = copies.map((c) => (c.createdAt === undefined ? Number.NaN : Date.parse(c.createdAt)));
  if (times.some((t) => Number.isNaN(t))) return undefined;
  const max = Math.max(...times);
  const at = times.flatMap((t, i) => (t === max ? [i] : []));
  return at.length === 1 ? copies[at[0] as number] : undefined;
}

const unique = (xs: string[]) => [...new Set(xs)];
const shortId = (c: ContainerSummary) => (c.dockerId === '' ? c.name : c.dockerId.slice(0, 12));
