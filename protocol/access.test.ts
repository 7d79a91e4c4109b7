import { describe, expect, it } from 'vitest';
import { clientIdAllowed, computeClientId, controlClientId, mayCommand, mayPublish, maySubscribe, operatorClientId, senderOf, type Identity } from './access.ts';
import { COMMAND_TYPES } from './messages.ts';
import { topics } from './topics.ts';

const h1: Identity = { username: 'compute-h1', role: 'compute', host: 'h1' };
const monitor: Identity = { username: 'monitor', role: 'monitor' };
const control: Identity = { username: 'control', role: 'control', node: 'lab' };
const alice: Identity = { username: 'alice', role: 'operator' };

describe('client ids are bound to identities', () => {
  it.each([
    [h1, 'herd-compute-h1', true],
    [h1, 'herd-compute-h2', false],
    [h1, 'evil', false],
    [control, controlClientId('lab'), true],
    [control, controlClientId('control'), false],
    [monitor, 'herd-monitor-1234', true],
    [monitor, 'herd-compute-h1', false],
    [alice, operatorClientId('alice', 'herd-cli', 'box', 7), true],
    [alice, 'alice', false],
    [alice, 'bob.herd-cli-box-7', false],
    [alice, 'herd-compute-h1', false],
    [alice, 'evil', false],
  ] as const)('%o as %s: %s', (identity, clientId, allowed) => {
    const d = clientIdAllowed(identity, clientId);
    expect(d.allowed).toBe(allowed);
    if (!allowed) expect(d.reason).toContain(identity.username);
  });

  it('tells a sender by its client id', () => {
    expect(senderOf(computeClientId('h2'))).toEqual({ role: 'compute', host: 'h2' });
    expect(senderOf(controlClientId('lab'))).toEqual({ role: 'control', node: 'lab' });
    expect(senderOf('herd-monitor-9').role).toBe('monitor');
    expect(senderOf('alice.herd-cli-box-7').role).toBe('operator');
  });
});

describe('publish rules', () => {
  const cases: [string, Identity, string, boolean][] = [
    ['compute: own status', h1, topics.hostStatus('h1'), true],
    ['compute: another host status', h1, topics.hostStatus('h2'), false],
    ['compute: own containers', h1, topics.hostContainers('h1'), true],
    ['compute: another host containers', h1, topics.hostContainers('h2'), false],
    ['compute: replies', h1, topics.replies('alice.x'), true],
    ['compute: migration events', h1, topics.migrationEvents('m-1'), true],
    ['compute: commands to a peer', h1, topics.hostCommands('h2'), true],
    ['compute: commands to itself', h1, topics.hostCommands('h1'), false],
    ['compute: control commands', h1, topics.controlCommands('lab'), false],
    ['compute: metrics', h1, topics.hostMetrics('h1'), false],
    ['monitor: host metrics', monitor, topics.hostMetrics('h1'), true],
    ['monitor: container metrics', monitor, topics.containerMetrics('h2'), true],
    ['monitor: host commands', monitor, topics.hostCommands('h1'), false],
    ['monitor: host status', monitor, topics.hostStatus('h1'), false],
    ['control: own status', control, topics.controlStatus('lab'), true],
    ['control: another node status', control, topics.controlStatus('other'), false],
    ['control: own events', control, topics.controlEvents('lab'), true],
    ['control: host commands', control, topics.hostCommands('h1'), true],
    ['control: replies', control, topics.replies('alice.x'), true],
    ['control: host status', control, topics.hostStatus('h1'), false],
    ['operator: host commands', alice, topics.hostCommands('h1'), true],
    ['operator: control commands', alice, topics.controlCommands('lab'), true],
    ['operator: host status', alice, topics.hostStatus('h1'), false],
    ['operator: replies', alice, topics.replies('herd-compute-h1'), false],
    ['operator: migration events', alice, topics.migrationEvents('m-1'), false],
    ['anyone: $SYS', control, '$SYS/broker/x', false],
    ['anyone: not a Herd topic', alice, 'other/topic', false],
  ];
  it.each(cases)('%s', (_what, identity, topic, allowed) => {
    const clientId = identity.role === 'compute' ? computeClientId(identity.host ?? '') : `${identity.username}.x`;
    const d = mayPublish(identity, clientId, topic);
    expect(d.allowed).toBe(allowed);
    if (!allowed) expect(d.reason).toBeTruthy();
  });
});

describe('subscribe rules', () => {
  const cases: [string, Identity, string, string, boolean][] = [
    ['compute: own commands', h1, 'herd-compute-h1', topics.hostCommands('h1'), true],
    ['compute: another host commands', h1, 'herd-compute-h1', topics.hostCommands('h2'), false],
    ['compute: own replies', h1, 'herd-compute-h1', topics.replies('herd-compute-h1'), true],
    ['compute: all replies', h1, 'herd-compute-h1', 'herd/v1/replies/+', false],
    ['compute: cluster state', h1, 'herd-compute-h1', topics.allHostStatus, true],
    ['compute: container lists', h1, 'herd-compute-h1', topics.allHostContainers, true],
    ['operator: metrics', alice, 'alice.x', topics.allContainerMetrics, true],
    ['operator: host metrics', alice, 'alice.x', topics.allHostMetrics, true],
    ['operator: own replies', alice, 'alice.x', topics.replies('alice.x'), true],
    ['operator: another client replies', alice, 'alice.x', topics.replies('herd-compute-h1'), false],
    ['operator: migration events', alice, 'alice.x', topics.allMigrationEvents, true],
    ['operator: control events', alice, 'alice.x', topics.controlEvents('lab'), true],
    ['operator: host commands', alice, 'alice.x', topics.hostCommands('h1'), false],
    ['operator: every host commands', alice, 'alice.x', 'herd/v1/hosts/+/commands', false],
    ['operator: $SYS', alice, 'alice.x', '$SYS/#', true],
    ['monitor: $SYS', monitor, 'herd-monitor-1', '$SYS/#', false],
    ['anyone: everything', control, controlClientId('lab'), '#', false],
    ['anyone: everything of Herd', alice, 'alice.x', 'herd/v1/#', false],
    ['anyone: a wildcard area', alice, 'alice.x', 'herd/v1/+/h1/commands', false],
    ['control: own commands', control, controlClientId('lab'), topics.controlCommands('lab'), true],
    ['control: another node commands', control, controlClientId('lab'), topics.controlCommands('other'), false],
  ];
  it.each(cases)('%s', (_what, identity, clientId, filter, allowed) => {
    expect(maySubscribe(identity, clientId, filter).allowed).toBe(allowed);
  });
});

describe('which commands a sender may send', () => {
  it('control daemons and operators: every command', () => {
    for (const type of COMMAND_TYPES) {
      expect(mayCommand(controlClientId('lab'), type).allowed).toBe(true);
      expect(mayCommand('alice.herd-cli-box-1', type).allowed).toBe(true);
    }
  });

  it('a compute host: only the target side of a migration', () => {
    const allowed = COMMAND_TYPES.filter((t) => mayCommand(computeClientId('h2'), t).allowed);
    expect(allowed.sort()).toEqual(['migration.abort', 'migration.check', 'migration.commit', 'migration.prepare', 'migration.restore', 'migration.status']);
    expect(mayCommand(computeClientId('h2'), 'container.remove').reason).toMatch(/compute host h2 may send its peers only/);
  });

  it('a monitor: none', () => {
    for (const type of COMMAND_TYPES) expect(mayCommand('herd-monitor-1', type).allowed).toBe(false);
  });
});
