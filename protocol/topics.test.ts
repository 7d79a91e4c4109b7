import { describe, expect, it } from 'vitest';
import { ID_PATTERN, parseTopic, topics, type TopicKind } from './topics.ts';

type Builder = Exclude<keyof typeof topics, `all${string}`>;

const BUILDERS: Array<{ builder: Builder; kind: TopicKind; id: string; topic: string }> = [
  { builder: 'hostStatus', kind: 'hostStatus', id: 'node-a', topic: 'herd/v1/hosts/node-a/status' },
  { builder: 'hostContainers', kind: 'hostContainers', id: 'node-a', topic: 'herd/v1/hosts/node-a/containers' },
  { builder: 'hostCommands', kind: 'hostCommands', id: 'node_b.lab', topic: 'herd/v1/hosts/node_b.lab/commands' },
  { builder: 'replies', kind: 'replies', id: 'herd-cli-laptop-4821', topic: 'herd/v1/replies/herd-cli-laptop-4821' },
  { builder: 'migrationEvents', kind: 'migrationEvents', id: 'm-20260302T092001-a1b2c3', topic: 'herd/v1/migrations/m-20260302T092001-a1b2c3/events' },
  { builder: 'hostMetrics', kind: 'hostMetrics', id: 'node-a', topic: 'herd/v1/metrics/hosts/node-a' },
  { builder: 'containerMetrics', kind: 'containerMetrics', id: 'h1', topic: 'herd/v1/metrics/hosts/h1/containers' },
  { builder: 'controlStatus', kind: 'controlStatus', id: 'lab', topic: 'herd/v1/control/lab/status' },
  { builder: 'controlCommands', kind: 'controlCommands', id: 'lab', topic: 'herd/v1/control/lab/commands' },
  { builder: 'controlEvents', kind: 'controlEvents', id: 'control', topic: 'herd/v1/control/control/events' },
  // An id that equals a fixed segment name must not confuse the parser.
  { builder: 'hostStatus', kind: 'hostStatus', id: 'hosts', topic: 'herd/v1/hosts/hosts/status' },
  { builder: 'hostMetrics', kind: 'hostMetrics', id: 'containers', topic: 'herd/v1/metrics/hosts/containers' },
];

describe('topic builders', () => {
  it.each(BUILDERS)('$builder($id) → $topic', ({ builder, id, topic }) => {
    expect(topics[builder](id)).toBe(topic);
  });

  it.each(BUILDERS)('parseTopic($topic) round-trips to $kind/$id', ({ builder, kind, id }) => {
    expect(parseTopic(topics[builder](id))).toEqual({ kind, id });
  });

  const BAD_IDS: Array<[string, string]> = [
    ['a slash', 'a/b'],
    ['a single-level wildcard', 'node+'],
    ['a multi-level wildcard', '#'],
    ['an empty id', ''],
    ['65 characters', 'a'.repeat(65)],
    ['a leading dot', '.hidden'],
    ['a space', 'node a'],
    ['a NUL', 'a\u0000b'],
  ];
  const builders = [...new Set(BUILDERS.map((b) => b.builder))];
  it.each(BAD_IDS)('every builder rejects %s', (_what, id) => {
    for (const builder of builders) expect(() => topics[builder](id), builder).toThrow(/invalid .* id/);
  });

  it('accepts exactly 64 characters', () => {
    const id = 'a'.repeat(64);
    expect(ID_PATTERN.test(id)).toBe(true);
    expect(parseTopic(topics.hostStatus(id))).toEqual({ kind: 'hostStatus', id });
  });

  it('names the kind of id in the error', () => {
    expect(() => topics.replies('a/b')).toThrow('invalid client id "a/b"');
    expect(() => topics.migrationEvents('')).toThrow('invalid migration id ""');
  });

  it('subscription filters match the concrete topics they are for', () => {
    const matches = (filter: string, topic: string) => new RegExp(`^${filter.replace(/\+/g, '[^/]+')}$`).test(topic);
    expect(matches(topics.allHostStatus, topics.hostStatus('x'))).toBe(true);
    expect(matches(topics.allHostContainers, topics.hostContainers('x'))).toBe(true);
    expect(matches(topics.allMigrationEvents, topics.migrationEvents('m1'))).toBe(true);
    expect(matches(topics.allHostMetrics, topics.hostMetrics('x'))).toBe(true);
    expect(matches(topics.allContainerMetrics, topics.containerMetrics('h1'))).toBe(true);
    expect(matches(topics.allHostMetrics, topics.containerMetrics('h1'))).toBe(false);
    expect(matches(topics.allHostStatus, topics.hostContainers('x'))).toBe(false);
  });
});

describe('parseTopic rejects topics that are not Herd v1', () => {
  it.each([
    'herd/v2/hosts/a/status',
    'other/v1/hosts/a/status',
    'herd/v1/hosts/a/status/extra',
    'herd/v1/hosts/a/status/',
    'herd/v1/hosts//status',
    'herd/v1/hosts/a',
    'herd/v1/hosts/a/unknown',
    'herd/v1/hosts/+/status',
    'herd/v1/replies',
    'herd/v1/replies/a/b',
    'herd/v1/migrations/m1',
    'herd/v1/metrics/hosts',
    'herd/v1/metrics/hosts/+',
    'herd/v1/metrics/disks/a',
    'herd/v1/metrics/containers/c1/extra',
    '',
  ])('%j', (topic) => {
    expect(parseTopic(topic)).toBeUndefined();
  });
});
