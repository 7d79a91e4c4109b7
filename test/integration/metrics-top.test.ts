/**
 * `herd metrics top` as a user runs it (the herd executable), against a real in-process
 * aedes broker on which this test publishes what a monitor publishes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../control/broker/embedded-broker.ts';
import { silentLogger } from '../../protocol/log.ts';
import { PROTOCOL_VERSION } from '../../protocol/messages.ts';
import { closeBroker, connectBroker, type MqttClient } from '../../protocol/mqtt.ts';
import { topics } from '../../protocol/topics.ts';
import { herd } from '../support/herd-cli.ts';

describe('herd metrics top', () => {
  let broker: EmbeddedBroker;
  let publisher: MqttClient;
  let timer: NodeJS.Timeout | undefined;

  beforeAll(async () => {
    broker = await startEmbeddedBroker({ host: '127.0.0.1', port: 0 }, silentLogger);
    publisher = await connectBroker({ url: broker.url, clientId: 'metrics-top-test' });
  });

  afterAll(async () => {
    if (timer !== undefined) clearInterval(timer);
    await closeBroker(publisher);
    await broker.close();
  });

  it('says so when no monitor publishes, exit 1', async () => {
    const r = await herd(['metrics', 'top', '--broker', broker.url, '--seconds', '0.5']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('[TIMEOUT]');
    expect(r.stderr).toContain('is a monitor running');
  });

  it('rejects a bad --seconds, exit 2', async () => {
    const r = await herd(['metrics', 'top', '--seconds', 'soon']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--seconds must be a number of seconds');
  });

  it('prints the latest host and container samples a monitor publishes', async () => {
    const at = new Date().toISOString();
    timer = setInterval(() => {
      publisher.publish(topics.hostMetrics('h1'), JSON.stringify({ v: PROTOCOL_VERSION, hostId: 'h1', at, stale: false, cpuUtil: 0.25, load1: 0.5 }));
      publisher.publish(topics.containerMetrics('h1'), JSON.stringify({ v: PROTOCOL_VERSION, hostId: 'h1', at, samples: [{ v: PROTOCOL_VERSION, herdId: 'web1', hostId: 'h1', name: 'web', dockerId: 'a'.repeat(64), at, state: 'running', cpuCores: 1.02, memoryBytes: 3 * 2 ** 20 }] }));
      publisher.publish(topics.containerMetrics('h2'), '{"not":"a batch"}');
    }, 100);
    const r = await herd(['metrics', 'top', '--broker', broker.url, '--seconds', '1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^h1\s+25\.0 %\s+0\.50/m);
    expect(r.stdout).toMatch(/^web\s+web1\s+h1\s+running\s+1\.02\s+-\s+3\.0 MiB/m);
    expect(r.stdout).toMatch(/\d+ message\(s\) rejected/);
    const json = await herd(['metrics', 'top', '--broker', broker.url, '--seconds', '1', '--json']);
    expect(json.code, json.stderr).toBe(0);
    const parsed = JSON.parse(json.stdout) as { hosts: Array<{ hostId: string }>; containers: Array<{ herdId: string }> };
    expect(parsed.hosts.map((h) => h.hostId)).toEqual(['h1']);
    expect(parsed.containers.map((c) => c.herdId)).toEqual(['web1']);
  });
});
