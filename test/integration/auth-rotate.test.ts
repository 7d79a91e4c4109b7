/**
 * Rotating a broker password without restarting anything: `herd auth rotate` writes the new
 * password, the embedded broker takes the users file again (the control daemon's SIGHUP)
 * and closes the rotated identity's sessions, and a daemon's connection comes back by
 * itself with its credentials file read again. A real aedes on a loopback port.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initAuth, rotatePasswords, type AuthFiles } from '../../control/auth/auth-init.ts';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../control/broker/embedded-broker.ts';
import { computeClientId, operatorClientId } from '../../protocol/access.ts';
import { brokerCredentials } from '../../protocol/config.ts';
import { loadCredentialsFile, loadUsersFile } from '../../protocol/credentials.ts';
import { silentLogger } from '../../protocol/log.ts';
import { closeBroker, connectBroker, type MqttClient } from '../../protocol/mqtt.ts';
import { thrown } from '../support/thrown.ts';
import { eventually } from './helpers.ts';

let dir: string;
let auth: AuthFiles;
let broker: EmbeddedBroker;
const clients: MqttClient[] = [];

/** A daemon's connection: its credentials file, reconnecting after a loss. */
async function daemonAs(username: string, clientId: string, reconnectPeriodMs = 200): Promise<MqttClient> {
  const client = await connectBroker({ url: broker.url, clientId, reconnectPeriodMs, connectTimeoutMs: 3000, ...brokerCredentials({ credentialsFile: auth.credentials[username] }) });
  clients.push(client);
  return client;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'herd-itest-rotate-'));
  auth = initAuth({ dir, computeHosts: ['h1', 'h2'] });
  broker = await startEmbeddedBroker({ host: '127.0.0.1', port: 0, users: loadUsersFile(auth.usersFile) }, silentLogger);
});

afterAll(async () => {
  for (const c of clients) await closeBroker(c, 500).catch(() => undefined);
  await broker?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('herd auth rotate with the embedded broker', () => {
  it('closes the rotated identity sessions only; its daemon comes back with the new password read from its file; the old one is refused', async () => {
    const h1 = await daemonAs('compute-h1', computeClientId('h1'));
    const h2 = await daemonAs('compute-h2', computeClientId('h2'));
    const oldPassword = loadCredentialsFile(auth.credentials['compute-h1'] as string).password;
    let h1Connects = 0;
    let h2Closes = 0;
    h1.on('connect', () => h1Connects++);
    h2.on('close', () => h2Closes++);
    h1.on('error', () => undefined); // a refused reconnect, if any, is an error event

    const rotated = rotatePasswords(dir, ['compute-h1']);
    expect(Object.keys(rotated.credentials)).toEqual(['compute-h1']);
    expect(loadCredentialsFile(rotated.credentials['compute-h1'] as string).password).not.toBe(oldPassword);
    // Until the broker takes the users file again, nothing changes.
    expect(h1.connected).toBe(true);

    expect(broker.setUsers(loadUsersFile(auth.usersFile))).toEqual([computeClientId('h1')]);
    await eventually('h1 reconnected with its new password', () => h1Connects >= 1);
    expect(h1.connected).toBe(true);
    expect(h2Closes).toBe(0);
    expect(h2.connected).toBe(true);

    const old = await thrown(connectBroker({ url: broker.url, clientId: computeClientId('h1'), username: 'compute-h1', password: oldPassword, reconnectPeriodMs: 0, connectTimeoutMs: 3000 }));
    expect(old).toMatchObject({ code: 'NOT_AUTHORIZED' });
  });

  it('closes the sessions of an identity removed from the users file, and refuses it from then on', async () => {
    const operator = await daemonAs('operator', operatorClientId('operator', 'itest', 'box'), 0);
    const closed = new Promise<void>((resolve) => operator.once('close', () => resolve()));
    const remaining = loadUsersFile(auth.usersFile).filter((u) => u.username !== 'operator');
    expect(broker.setUsers(remaining)).toEqual([operatorClientId('operator', 'itest', 'box')]);
    await closed;
    const again = await thrown(connectBroker({ url: broker.url, clientId: operatorClientId('operator', 'itest', 'box2'), reconnectPeriodMs: 0, ...brokerCredentials({ credentialsFile: auth.credentials.operator }) }));
    expect(again).toMatchObject({ code: 'NOT_AUTHORIZED' });
  });
});
