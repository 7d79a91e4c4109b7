/**
 * Connecting to the MQTT broker (the control daemon's embedded aedes, or any MQTT 3.1.1
 * broker such as Mosquitto). One place sets the options every Herd client needs:
 * protocol version 4 (aedes speaks 3.1.1 only), a unique stable client id, an optional
 * retained last will, and a bounded reconnect.
 */
import type { Socket } from 'node:net';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { HerdError } from './errors.ts';
import { encode } from './codec.ts';
import { ID_PATTERN } from './topics.ts';
import { brokerUrlProblem } from './config.ts';
import { loadCredentialsFile } from './credentials.ts';

export type { MqttClient };

/** Where a client connects and as whom (the CLI resolves one from flags, environment and the lab). */
export interface BrokerEndpoint {
  url: string;
  username?: string;
  password?: string;
  /** Where username and password came from: read again at each reconnect (a rotated password, herd auth rotate). */
  credentialsFile?: string;
  ca?: Buffer;
}

export interface BrokerConnectOptions {
  /** mqtt://host:port (or mqtts://). */
  url: string;
  clientId: string;
  username?: string;
  password?: string;
  /** Where username and password came from: read again at each reconnect (a rotated password, herd auth rotate). */
  credentialsFile?: string;
  /** CA certificate(s) (PEM) the broker's TLS certificate must chain to (mqtts://). */
  ca?: Buffer;
  /** Retained message the broker publishes for us if our connection drops. */
  will?: { topic: string; payload: unknown };
  connectTimeoutMs?: number;
  /** Reconnect delay after a lost connection; 0 disables reconnecting (CLI). */
  reconnectPeriodMs?: number;
}

export async function connectBroker(options: BrokerConnectOptions): Promise<MqttClient> {
  if (!ID_PATTERN.test(options.clientId)) {
    throw new HerdError('BAD_CONFIG', `MQTT client id "${options.clientId}" is invalid: must match ${ID_PATTERN}`);
  }
  const problem = brokerUrlProblem(options.url);
  if (problem !== undefined) throw new HerdError('BAD_CONFIG', `broker URL "${options.url}" ${problem}`);
  // mqtt.js mutates the options object it is given: build a fresh one per connection.
  const clientOptions: IClientOptions = {
    protocolVersion: 4,
    clientId: options.clientId,
    clean: true,
    connectTimeout: options.connectTimeoutMs ?? 5000,
    reconnectPeriod: options.reconnectPeriodMs ?? 1000,
    queueQoSZero: false,
    // A reconnect refused (a rotated password not yet read, the broker's users file not yet reloaded) is tried again
    // like a lost connection, not given up for good; the first connect's refusal is an error (below).
    reconnectOnConnackError: true,
    ...(options.username === undefined ? {} : { username: options.username }),
    ...(options.password === undefined ? {} : { password: options.password }),
    ...(options.ca === undefined ? {} : { ca: options.ca, rejectUnauthorized: true }),
    ...(options.will === undefined
      ? {}
      : { will: { topic: options.will.topic, payload: Buffer.from(encode(options.will.payload)), qos: 1, retain: true } }),
  };
  const client = mqtt.connect(options.url, clientOptions);
  const file = options.credentialsFile;
  if (file !== undefined) {
    client.on('reconnect', () => {
      try {
        Object.assign(client.options, loadCredentialsFile(file));
      } catch (err) {
        client.emit('error', new HerdError('BAD_CONFIG', `reconnecting with the credentials it had: ${(err as Error).message}`, { cause: err }));
      }
    });
  }
  // Requests and replies are small packets: without it, Nagle and delayed ACKs hold each for up to 40 ms (set again on every reconnect).
  client.on('connect', () => (client.stream as Partial<Socket>).setNoDelay?.(true));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no CONNACK within ${clientOptions.connectTimeout} ms`)), (clientOptions.connectTimeout ?? 5000) + 500);
      const onError = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      client.once('connect', () => {
        clearTimeout(timer);
        client.off('error', onError);
        resolve();
      });
      client.once('error', onError);
      if (options.reconnectPeriodMs === 0) client.once('close', () => onError(new Error('connection closed')));
    });
  } catch (err) {
    client.end(true);
    // CONNACK 2 (identifier rejected), 4 (bad username or password), 5 (not authorized): retrying cannot help.
    const refused = (err as { code?: unknown }).code;
    if (refused === 2 || refused === 4 || refused === 5) {
      const who = options.username === undefined ? 'without credentials' : `as ${options.username}`;
      throw new HerdError('NOT_AUTHORIZED', `MQTT broker ${options.url} refused client ${options.clientId} ${who}: ${(err as Error).message} (check the credentials file; herd auth init writes one per identity)`, { cause: err });
    }
    // A TLS listener drops a plain MQTT connection at once, without a word.
    const tls = (err as Error).message === 'connection closed' && !/^(mqtts|wss):/.test(options.url) ? ' (the broker closed the connection at once: if it speaks TLS, use mqtts://)' : '';
    throw new HerdError('BROKER_UNAVAILABLE', `cannot connect to MQTT broker ${options.url}: ${(err as Error).message}${tls}`, { cause: err });
  }
  return client;
}

/**
 * For daemons: keeps trying for `maxWaitMs` when the broker is not there yet (it may be
 * starting at the same moment), instead of exiting at the first refusal.
 */
export async function connectBrokerPatiently(options: BrokerConnectOptions, maxWaitMs = 60_000): Promise<MqttClient> {
  const deadline = Date.now() + maxWaitMs;
  for (;;) {
    try {
      return await connectBroker(options);
    } catch (err) {
      if (!(err instanceof HerdError) || err.code !== 'BROKER_UNAVAILABLE' || Date.now() >= deadline) throw err;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/** Publishes JSON with QoS 1 and resolves when the broker acknowledged it. */
export async function publishJson(client: MqttClient, topic: string, message: unknown, opts: { retain?: boolean; qos?: 0 | 1 } = {}): Promise<void> {
  await client.publishAsync(topic, encode(message), { qos: opts.qos ?? 1, retain: opts.retain ?? false });
}

/** Ends a client, waiting at most timeoutMs for in-flight packets. */
export async function closeBroker(client: MqttClient, timeoutMs = 2000): Promise<void> {
  await Promise.race([client.endAsync(false), new Promise((r) => setTimeout(r, timeoutMs))]);
  if (client.connected) await client.endAsync(true);
}
