/**
 * Security on the lab: its broker speaks TLS and admits only the identities `herd auth init`
 * made; the real compute and control daemons refuse what they must. The attack that once
 * removed a running container with one `mosquitto_pub` is replayed in every variant; then
 * 10,000 fuzzed messages hit the real daemons' command topics.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { credentialsPath } from '../../control/auth/auth-init.ts';
import type { LabLayout } from '../../control/lab/layout.ts';
import { runCommand } from '../../control/lab/shell.ts';
import { operatorClientId } from '../../protocol/access.ts';
import { loadCredentialsFile } from '../../protocol/credentials.ts';
import { closeBroker } from '../../protocol/mqtt.ts';
import { topics } from '../../protocol/topics.ts';
import { COUNTER, placements } from '../support/containers.ts';
import { badFuzzReplies, fuzzCommandTopics } from '../support/command-fuzz.ts';
import { herdOk } from '../support/herd-cli.ts';
import { connectLabBroker, readyLab } from '../support/lab.ts';
import { eventually, Inbox } from '../integration/helpers.ts';

let layout: LabLayout;
const VICTIM = 'sec-victim';

/** The command, as `from` and `sentAt` say. */
function removeCommand(from: string, sentAt = new Date().toISOString()): string {
  return JSON.stringify({ v: 1, id: `attack-${Math.random().toString(36).slice(2)}`, type: 'container.remove', from, sentAt, args: { container: VICTIM, force: true } });
}

/** mosquitto_pub to the lab's broker; `as` picks an identity's credentials from the lab's auth dir. */
async function mosquittoPub(opts: { tls: boolean; as?: string; clientId: string; message: string; host?: string }) {
  const args = ['-h', layout.gateway, '-p', String(layout.brokerPort), '-i', opts.clientId, '-q', '1', '-t', topics.hostCommands(opts.host ?? 'h2'), '-m', opts.message];
  if (opts.tls) args.push('--cafile', `${layout.authDir}/ca.pem`);
  if (opts.as !== undefined) {
    const c = loadCredentialsFile(credentialsPath(layout.authDir, opts.as));
    args.push('-u', c.username, '-P', c.password);
  }
  return runCommand('mosquitto_pub', args, { timeoutMs: 15_000 });
}

describe('security (lab: TLS broker with identities, real daemons)', () => {
  beforeAll(async () => {
    layout = await readyLab(2);
    await herdOk(['run', '--host', 'h2', '--name', VICTIM, 'herd/busybox', ...COUNTER]);
  });

  it('the one-message removal from the issue removes nothing, with or without credentials', async () => {
    const attempts: [string, Parameters<typeof mosquittoPub>[0], RegExp][] = [
      ['anonymous, plain TCP (as in the issue)', { tls: false, clientId: 'evil', message: removeCommand('evil') }, /connection|lost|refused|error/i],
      ['anonymous over TLS', { tls: true, clientId: 'evil', message: removeCommand('evil') }, /not authori[sz]ed|bad user name or password/i],
      ["the operator's credentials with a made-up client id", { tls: true, as: 'operator', clientId: 'evil', message: removeCommand('evil') }, /identifier rejected/i],
      ["the operator's credentials and client id, claiming another sender", { tls: true, as: 'operator', clientId: 'operator.x', message: removeCommand('evil') }, /lost|error/i],
      ["the monitor's credentials", { tls: true, as: 'monitor', clientId: 'herd-monitor-x', message: removeCommand('herd-monitor-x') }, /lost|error/i],
    ];
    for (const [what, attempt, refusal] of attempts) {
      const r = await mosquittoPub(attempt);
      expect(r.code, `${what}: mosquitto_pub should fail`).not.toBe(0);
      expect(`${r.stdout}${r.stderr}`, what).toMatch(refusal);
    }
    // Accepted by the broker, refused by the daemons: a captured command replayed later, and a peer's command a compute host may not send.
    const controlLog = readFileSync(layout.controlLog, 'utf8');
    expect(controlLog).toMatch(/"clientId":"evil".*"reason":"no credentials".*mqtt connect denied/);
    expect(controlLog).toMatch(/"username":"monitor".*"topic":"herd\/v1\/hosts\/h2\/commands".*may publish metrics only.*mqtt publish denied/);
    expect((await mosquittoPub({ tls: true, as: 'operator', clientId: 'operator.x', message: removeCommand('operator.x', new Date(Date.now() - 3_600_000).toISOString()) })).code).toBe(0);
    expect((await mosquittoPub({ tls: true, as: 'compute-h1', clientId: 'herd-compute-h3', message: removeCommand('herd-compute-h3') })).code).not.toBe(0);
    const h2Log = `${layout.hosts.find((h) => h.id === 'h2')?.computeLog}`;
    await eventually('h2 to log the stale command it refused', () => /STALE_COMMAND.*container\.remove/.test(readFileSync(h2Log, 'utf8')) || /"code":"STALE_COMMAND"/.test(readFileSync(h2Log, 'utf8')));
    const where = await placements(layout, VICTIM);
    expect(where.map((p) => [p.hostId, p.running])).toEqual([['h2', true]]);
  });

  it("rotates h1's password without restarting anything: herd auth rotate, then SIGHUP to the control daemon; h1's daemon comes back with its new password and serves, the old one is refused", async () => {
    const file = credentialsPath(layout.authDir, 'compute-h1');
    const old = loadCredentialsFile(file).password;
    const rotated = JSON.parse(await herdOk(['auth', 'rotate', '--dir', layout.authDir, 'compute-h1', '--json'])) as { credentials: Record<string, string> };
    expect(rotated.credentials).toEqual({ 'compute-h1': file });
    expect(loadCredentialsFile(file).password).not.toBe(old);
    const logged = () => readFileSync(layout.controlLog, 'utf8').split('\n').filter((l) => l.includes('SIGHUP: users file reloaded')).length;
    const before = logged();
    const h1Log = layout.hosts.find((h) => h.id === 'h1')?.computeLog as string;
    const backs = () => readFileSync(h1Log, 'utf8').split('\n').filter((l) => l.includes('broker connection back')).length;
    const backsBefore = backs();
    process.kill(Number(readFileSync(layout.controlPidFile, 'utf8').trim()), 'SIGHUP');
    await eventually('the control daemon to reload its users file', () => logged() > before);
    expect(readFileSync(layout.controlLog, 'utf8')).toMatch(/"sessionsClosed":\["herd-compute-h1"\].*SIGHUP: users file reloaded/);
    // h1's daemon reconnects by itself, reading its credentials file again, and serves commands.
    await eventually("h1's daemon to reconnect", () => backs() > backsBefore);
    await herdOk(['run', '--host', 'h1', '--name', 'sec-rotated', 'herd/busybox', 'sleep', '600']);
    await herdOk(['rm', 'sec-rotated', '--force']);
    const hosts = JSON.parse(await herdOk(['hosts', '--json'])) as { hostId: string; state: string }[];
    expect(hosts.map((h) => [h.hostId, h.state])).toEqual([['h1', 'online'], ['h2', 'online']]);
    // The old password no longer gets in (it is checked before the client id, which only h1's daemon may use).
    const args = ['-h', layout.gateway, '-p', String(layout.brokerPort), '--cafile', `${layout.authDir}/ca.pem`, '-i', 'herd-compute-h1-probe', '-u', 'compute-h1', '-t', 'herd/v1/x', '-m', 'x'];
    const refused = await runCommand('mosquitto_pub', [...args, '-P', old], { timeoutMs: 15_000 });
    expect(refused.code).not.toBe(0);
    expect(`${refused.stdout}${refused.stderr}`).toMatch(/not authori[sz]ed|bad user name or password/i);
  });

  it('10,000 fuzzed messages to the real daemons: each addressed one gets an error reply, nothing changes, the daemons keep serving', async () => {
    const client = await connectLabBroker(layout, 'e2e-fuzz');
    const clientId = client.options.clientId as string;
    expect(clientId).toBe(operatorClientId('operator', 'e2e-fuzz', 'e2e'));
    try {
      const replies = await Inbox.open(client, topics.replies(clientId));
      const targets = [topics.hostCommands('h1'), topics.hostCommands('h2'), topics.controlCommands('lab')];
      const addressed = await fuzzCommandTopics(client, clientId, targets, 10_000, 7);
      await eventually(`error replies to the ${addressed} addressed messages`, () => replies.messages.filter((r) => String(r.json?.id).startsWith('fz-')).length >= addressed);
      expect(badFuzzReplies(replies.messages).slice(0, 3)).toEqual([]);
    } finally {
      await closeBroker(client);
    }
    const hosts = JSON.parse(await herdOk(['hosts', '--json'])) as { hostId: string; state: string }[];
    expect(hosts.map((h) => [h.hostId, h.state])).toEqual([['h1', 'online'], ['h2', 'online']]);
    expect(JSON.parse(await herdOk(['status', '--json']))).toMatchObject({ control: { nodeId: 'lab', paused: true } });
    const where = await placements(layout, VICTIM);
    expect(where.map((p) => [p.hostId, p.running])).toEqual([['h2', true]]);
  }, 300_000);
});
