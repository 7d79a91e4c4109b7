import { describe, expect, it } from 'vitest';
import type { ContainerSummary, HostStatus } from '../../protocol/messages.ts';
import { checkPlacement, forgetDuplicate, type PlacementFinding, type PlacementMemory, type Repair } from './placement-check.ts';

const T0 = Date.parse('2026-11-26T12:00:00.000Z');
const iso = (s: number) => new Date(T0 + s * 1000).toISOString();

type Hosts = Record<string, 'online' | 'offline'>;
const hostList = (hosts: Hosts): HostStatus[] => Object.entries(hosts).map(([hostId, state]) => ({ v: 1, hostId, state, since: iso(-100), ...(state === 'offline' ? { reason: 'connection lost' } : {}) }));

/** A copy of container "web" (Herd id id-web) on a host. */
const web = (hostId: string, o: Partial<ContainerSummary> = {}): ContainerSummary => ({ herdId: 'id-web', name: 'web', hostId, dockerId: `${hostId}-web-docker-id`, image: 'busybox:1.36', state: 'running', createdAt: iso(-3600), ...o });

const BOTH: Hosts = { h1: 'online', h2: 'online' };
/** The usual split brain: the migration's target on h2 (created later) and the source on h1, running again. */
const SPLIT = [web('h1', { createdAt: iso(-3600) }), web('h2', { createdAt: iso(-60) })];

interface Step {
  /** Seconds after T0. */
  t: number;
  hosts: Hosts;
  containers: ContainerSummary[];
}

function run(steps: Step[], graceMs?: number): Array<{ findings: PlacementFinding[]; repairs: Repair[]; memory: PlacementMemory }> {
  let memory: PlacementMemory | undefined;
  return steps.map((s) => {
    const r = checkPlacement(memory, { hosts: hostList(s.hosts), containers: s.containers }, T0 + s.t * 1000, graceMs === undefined ? {} : { graceMs });
    memory = r.memory;
    return r;
  });
}

const summary = (r: { findings: PlacementFinding[]; repairs: Repair[] }) => [...r.findings.map((f) => `${f.kind} ${f.herdId} [${f.hosts.join(',')}]`), ...r.repairs.map((x) => `stop ${x.hostId}/${x.container} keep ${x.keep.hostId}`)];

describe('checkPlacement', () => {
  const cases: Array<{ name: string; steps: Step[]; expected: string[][]; graceMs?: number }> = [
    {
      name: 'duplicate: the copy created last (the migration target) is kept, the older one stopped',
      steps: [
        { t: 0, hosts: BOTH, containers: SPLIT },
        { t: 15, hosts: BOTH, containers: SPLIT },
      ],
      expected: [[], ['duplicate id-web [h1,h2]', 'stop h1/h1-web-docker-id keep h2']],
    },
    {
      name: 'duplicate: the keep choice follows creation time, not host order',
      steps: [
        { t: 0, hosts: BOTH, containers: [web('h1', { createdAt: iso(-5) }), web('h2', { createdAt: iso(-500) })] },
        { t: 15, hosts: BOTH, containers: [web('h1', { createdAt: iso(-5) }), web('h2', { createdAt: iso(-500) })] },
      ],
      expected: [[], ['duplicate id-web [h1,h2]', 'stop h2/h2-web-docker-id keep h1']],
    },
    {
      name: 'duplicate: three copies, the two older stopped; reported once, repairs returned on every check',
      steps: [0, 15, 30].map((t) => ({ t, hosts: { ...BOTH, h3: 'online' as const }, containers: [web('h1', { createdAt: iso(-300) }), web('h2', { createdAt: iso(-10) }), web('h3', { createdAt: iso(-200) })] })),
      expected: [[], ['duplicate id-web [h1,h2,h3]', 'stop h1/h1-web-docker-id keep h2', 'stop h3/h3-web-docker-id keep h2'], ['stop h1/h1-web-docker-id keep h2', 'stop h3/h3-web-docker-id keep h2']],
    },
    {
      name: 'migration in flight: a running source and a created target (both with migrationId) is no duplicate',
      steps: [0, 15, 30].map((t) => ({ t, hosts: BOTH, containers: [web('h1', { migrationId: 'm-1' }), web('h2', { state: 'created', createdAt: iso(-5), migrationId: 'm-1' })] })),
      expected: [[], [], []],
    },
    {
      name: 'migration in flight: both copies running but one still carries the migrationId (target restored, source not yet cleaned up)',
      steps: [0, 15, 30].map((t) => ({ t, hosts: BOTH, containers: [web('h1', { migrationId: 'm-1' }), web('h2', { createdAt: iso(-5) })] })),
      expected: [[], [], []],
    },
    {
      name: 'after a migration ends, a duplicate must last the grace period again before it is reported',
      steps: [
        { t: 0, hosts: BOTH, containers: [web('h1', { migrationId: 'm-1' }), web('h2', { createdAt: iso(-5) })] },
        { t: 15, hosts: BOTH, containers: SPLIT },
        { t: 30, hosts: BOTH, containers: SPLIT },
      ],
      expected: [[], [], ['duplicate id-web [h1,h2]', 'stop h1/h1-web-docker-id keep h2']],
    },
    {
      name: 'grace: a duplicate seen once (retained-list lag) is not reported',
      steps: [
        { t: 0, hosts: BOTH, containers: SPLIT },
        { t: 15, hosts: BOTH, containers: [web('h1', { state: 'exited' }), web('h2', { createdAt: iso(-60) })] },
        { t: 30, hosts: BOTH, containers: [web('h1', { state: 'exited' }), web('h2', { createdAt: iso(-60) })] },
      ],
      expected: [[], [], []],
    },
    {
      name: 'grace: two checks less than the grace period apart are not enough',
      steps: [
        { t: 0, hosts: BOTH, containers: SPLIT },
        { t: 5, hosts: BOTH, containers: SPLIT },
        { t: 10, hosts: BOTH, containers: SPLIT },
      ],
      expected: [[], [], ['duplicate id-web [h1,h2]', 'stop h1/h1-web-docker-id keep h2']],
    },
    {
      name: 'grace: two checks are needed even with no grace period',
      graceMs: 0,
      steps: [
        { t: 0, hosts: BOTH, containers: SPLIT },
        { t: 1, hosts: BOTH, containers: SPLIT },
      ],
      expected: [[], ['duplicate id-web [h1,h2]', 'stop h1/h1-web-docker-id keep h2']],
    },
    {
      name: 'grace: other running copies (new docker ids) start the clock again',
      steps: [
        { t: 0, hosts: BOTH, containers: SPLIT },
        { t: 15, hosts: BOTH, containers: [web('h1', { dockerId: 'other-id' }), web('h2', { createdAt: iso(-60) })] },
        { t: 30, hosts: BOTH, containers: [web('h1', { dockerId: 'other-id' }), web('h2', { createdAt: iso(-60) })] },
      ],
      expected: [[], [], ['duplicate id-web [h1,h2]', 'stop h1/other-id keep h2']],
    },
    {
      name: "offline host: its retained list does not count, so a copy there is no duplicate",
      steps: [0, 15, 30].map((t) => ({ t, hosts: { h1: 'offline' as const, h2: 'online' as const }, containers: SPLIT })),
      expected: [[], [], []],
    },
    {
      name: 'duplicate without creation times: reported, not repaired',
      steps: [0, 15, 30].map((t) => ({ t, hosts: BOTH, containers: [web('h1', { createdAt: undefined }), web('h2')] })),
      expected: [[], ['duplicate id-web [h1,h2]'], []],
    },
    {
      name: 'duplicate created in the same second: reported, not repaired',
      steps: [0, 15].map((t) => ({ t, hosts: BOTH, containers: [web('h1'), web('h2')] })),
      expected: [[], ['duplicate id-web [h1,h2]']],
    },
    {
      name: 'not-running: ran, now exited on its (online) host: reported once after the grace period, no repair',
      steps: [
        { t: 0, hosts: BOTH, containers: [web('h1')] },
        { t: 15, hosts: BOTH, containers: [web('h1', { state: 'exited' })] },
        { t: 30, hosts: BOTH, containers: [web('h1', { state: 'exited' })] },
        { t: 45, hosts: BOTH, containers: [web('h1', { state: 'exited' })] },
      ],
      expected: [[], [], ['not-running id-web [h1]'], []],
    },
    {
      name: 'not-running: running again within the grace period is nothing',
      steps: [
        { t: 0, hosts: BOTH, containers: [web('h1')] },
        { t: 15, hosts: BOTH, containers: [web('h1', { state: 'exited' })] },
        { t: 30, hosts: BOTH, containers: [web('h1')] },
        { t: 45, hosts: BOTH, containers: [web('h1')] },
      ],
      expected: [[], [], [], []],
    },
    {
      name: 'not-running: removed altogether (herd rm) while its host is online is nothing',
      steps: [
        { t: 0, hosts: BOTH, containers: [web('h1')] },
        { t: 15, hosts: BOTH, containers: [] },
        { t: 30, hosts: BOTH, containers: [] },
      ],
      expected: [[], [], []],
    },
    {
      name: 'not-running: a migration between checkpoint and restore (exited source, created target, both in the migration) is nothing',
      steps: [
        { t: 0, hosts: BOTH, containers: [web('h1')] },
        ...[15, 30, 45].map((t) => ({ t, hosts: BOTH, containers: [web('h1', { state: 'exited', migrationId: 'm-1' }), web('h2', { state: 'created', createdAt: iso(-5), migrationId: 'm-1' })] })),
        { t: 60, hosts: BOTH, containers: [web('h1', { state: 'exited' }), web('h2', { createdAt: iso(-5) })] },
      ],
      expected: [[], [], [], [], []],
    },
    {
      name: 'not-running: a migration that left nothing running is reported once the grace period after it ended has passed',
      steps: [
        { t: 0, hosts: BOTH, containers: [web('h1')] },
        { t: 15, hosts: BOTH, containers: [web('h1', { state: 'exited', migrationId: 'm-1' })] },
        { t: 30, hosts: BOTH, containers: [web('h1', { state: 'exited' })] },
        { t: 45, hosts: BOTH, containers: [web('h1', { state: 'exited' })] },
      ],
      expected: [[], [], [], ['not-running id-web [h1]']],
    },
    {
      name: 'host-offline: vanished with its host is reported as host-offline (not lost), once',
      steps: [
        { t: 0, hosts: BOTH, containers: [web('h1')] },
        { t: 15, hosts: { h1: 'offline', h2: 'online' }, containers: [web('h1')] },
        { t: 30, hosts: { h1: 'offline', h2: 'online' }, containers: [web('h1')] },
        { t: 45, hosts: { h1: 'offline', h2: 'online' }, containers: [web('h1')] },
      ],
      expected: [[], [], ['host-offline id-web [h1]'], []],
    },
    {
      name: 'host-offline: a host back within the grace period, running it, is nothing',
      steps: [
        { t: 0, hosts: BOTH, containers: [web('h1')] },
        { t: 15, hosts: { h1: 'offline', h2: 'online' }, containers: [] },
        { t: 30, hosts: BOTH, containers: [web('h1')] },
        { t: 45, hosts: BOTH, containers: [web('h1')] },
      ],
      expected: [[], [], [], []],
    },
    {
      name: 'host-offline, then the host is back with the container exited (a reboot): not-running',
      steps: [
        { t: 0, hosts: BOTH, containers: [web('h1')] },
        { t: 15, hosts: { h1: 'offline', h2: 'online' }, containers: [] },
        { t: 30, hosts: { h1: 'offline', h2: 'online' }, containers: [] },
        { t: 45, hosts: BOTH, containers: [web('h1', { state: 'exited' })] },
        { t: 60, hosts: BOTH, containers: [web('h1', { state: 'exited' })] },
      ],
      expected: [[], [], ['host-offline id-web [h1]'], [], ['not-running id-web [h1]']],
    },
    {
      name: 'host-offline: an exited copy left on another (online) host does not make it not-running',
      steps: [
        { t: 0, hosts: BOTH, containers: [web('h1'), web('h2', { state: 'exited', createdAt: iso(-9000) })] },
        { t: 15, hosts: { h1: 'offline', h2: 'online' }, containers: [web('h2', { state: 'exited', createdAt: iso(-9000) })] },
        { t: 30, hosts: { h1: 'offline', h2: 'online' }, containers: [web('h2', { state: 'exited', createdAt: iso(-9000) })] },
      ],
      expected: [[], [], ['host-offline id-web [h1]']],
    },
  ];

  it.each(cases)('$name', ({ steps, expected, graceMs }) => {
    expect(run(steps, graceMs).map(summary)).toEqual(expected);
  });

  it('says which copy is kept and why, and what was seen', () => {
    const [, second] = run([
      { t: 0, hosts: BOTH, containers: SPLIT },
      { t: 15, hosts: BOTH, containers: SPLIT },
    ]);
    const finding = second!.findings[0]!;
    expect(finding.reason).toContain('web (id-web) runs 2 times, on h1 (h1-web-docke, created 2026-11-26T11:00:00.000Z), h2 (h2-web-docke, created 2026-11-26T11:59:00.000Z)');
    expect(finding.reason).toContain('for 15 s');
    expect(finding.reason).toContain('repair: stop the copy on h1, keeping the copy on h2');
    expect(finding.reason).toContain('the one created last');
    expect(second!.repairs).toEqual([
      {
        kind: 'stop',
        hostId: 'h1',
        container: 'h1-web-docker-id',
        herdId: 'id-web',
        name: 'web',
        keep: { hostId: 'h2', container: 'h2-web-docker-id' },
        reason: expect.stringMatching(/^stop web \(id-web\) on h1 .*a duplicate; keeping the copy on h2 .*created 2026-11-26T11:59:00.000Z\), the one created last: a migration's target is created after its source/),
      },
    ]);
  });

  it('explains a not-running and a host-offline finding', () => {
    const lost = run([
      { t: 0, hosts: BOTH, containers: [web('h1')] },
      { t: 15, hosts: BOTH, containers: [web('h1', { state: 'exited' })] },
      { t: 30, hosts: BOTH, containers: [web('h1', { state: 'exited' })] },
    ])[2]!;
    expect(lost.repairs).toEqual([]);
    expect(lost.findings[0]!.reason).toMatch(/^web \(id-web\) ran on h1 and has run nowhere for 15 s \(exited on h1 \(h1-web-docke\); no migration in flight, its host is online\); not restarted automatically/);
    const away = run([
      { t: 0, hosts: BOTH, containers: [web('h1')] },
      { t: 15, hosts: { h1: 'offline', h2: 'online' }, containers: [] },
      { t: 30, hosts: { h1: 'offline', h2: 'online' }, containers: [] },
    ])[2]!;
    expect(away.findings[0]!.reason).toContain(`ran on h1 (offline since ${iso(-100)}: connection lost) and has run on no online host for 15 s: it may still run there unseen, so it is not reported lost`);
  });

  it('judges every Herd id on its own', () => {
    const db = (hostId: string, o: Partial<ContainerSummary> = {}) => web(hostId, { herdId: 'id-db', name: 'db', dockerId: `${hostId}-db`, ...o });
    const steps: Step[] = [
      { t: 0, hosts: BOTH, containers: [...SPLIT, db('h1')] },
      { t: 15, hosts: BOTH, containers: [...SPLIT, db('h1', { state: 'exited' })] },
      { t: 30, hosts: BOTH, containers: [...SPLIT, db('h1', { state: 'exited' })] },
    ];
    expect(run(steps).map(summary)).toEqual([[], ['duplicate id-web [h1,h2]', 'stop h1/h1-web-docker-id keep h2'], ['not-running id-db [h1]', 'stop h1/h1-web-docker-id keep h2']]);
  });

  it('forgetDuplicate makes a duplicate wait the grace period again; the previous memory is not changed', () => {
    const [first, second] = run([
      { t: 0, hosts: BOTH, containers: SPLIT },
      { t: 15, hosts: BOTH, containers: SPLIT },
    ]);
    expect(first!.memory.duplicates.get('id-web')?.reported).toBe(false);
    const forgotten = forgetDuplicate(second!.memory, 'id-web');
    expect(second!.memory.duplicates.has('id-web')).toBe(true);
    const third = checkPlacement(forgotten, { hosts: hostList(BOTH), containers: SPLIT }, T0 + 30_000);
    expect(summary(third)).toEqual([]);
    const fourth = checkPlacement(third.memory, { hosts: hostList(BOTH), containers: SPLIT }, T0 + 45_000);
    expect(summary(fourth)).toEqual(['duplicate id-web [h1,h2]', 'stop h1/h1-web-docker-id keep h2']);
  });
});
