/**
 * Helpers for integration tests against a real MQTT broker: an inbox that records what a
 * client receives, polling for a condition, free loopback ports, and a small in-memory
 * ContainerRuntime so the compute daemon's command path runs without Docker.
 */
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { HerdError } from '../../protocol/errors.ts';
import type { ContainerSpec, ContainerSummary } from '../../protocol/messages.ts';
import type { MqttClient } from '../../protocol/mqtt.ts';
import type { ContainerDetails, ContainerRuntime, RuntimeInfo } from '../../compute/runtime/container-runtime.ts';

/** A guard against hangs only (the test fails with a message instead of at the test timeout); never a performance assertion. */
const HANG_GUARD_MS = 15_000;

/** MQTT topic filter matching (`+` one level, `#` the rest). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

export interface Received {
  topic: string;
  text: string;
  /** JSON-parsed payload, or undefined when it is not JSON. */
  json: any;
  retain: boolean;
}

/** Records every message a client receives on a filter; `next` finds a past or future one. */
export class Inbox {
  readonly messages: Received[] = [];
  private waiters: Array<{ match: (m: Received) => boolean; resolve: (m: Received) => void }> = [];
  private readonly listener: (topic: string, payload: Buffer, packet: { retain?: boolean }) => void;

  private constructor(private readonly client: MqttClient, readonly filter: string) {
    this.listener = (topic, payload, packet) => {
      if (!topicMatches(filter, topic)) return;
      const text = payload.toString('utf8');
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      const message: Received = { topic, text, json, retain: packet.retain === true };
      this.messages.push(message);
      this.waiters = this.waiters.filter((w) => {
        if (!w.match(message)) return true;
        w.resolve(message);
        return false;
      });
    };
  }

  static async open(client: MqttClient, filter: string): Promise<Inbox> {
    const inbox = new Inbox(client, filter);
    client.on('message', inbox.listener);
    await client.subscribeAsync(filter, { qos: 1 });
    return inbox;
  }

  /** The first message (already received or still to come) that matches; `skip` earlier matches are passed over. */
  next(what: string, match: (m: Received) => boolean, skip = 0): Promise<Received> {
    const seen = this.messages.filter(match);
    if (seen.length > skip) return Promise.resolve(seen[skip] as Received);
    let remaining = skip - seen.length;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no message on ${this.filter} where ${what} (received: ${this.messages.map((m) => m.text).join(' | ') || 'nothing'})`)), HANG_GUARD_MS);
      this.waiters.push({
        match: (m) => match(m) && remaining-- <= 0,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
  }

  async close(): Promise<void> {
    this.client.off('message', this.listener);
    if (this.client.connected) await this.client.unsubscribeAsync(this.filter).catch(() => undefined);
  }
}

/** Polls until `condition` holds. */
export async function eventually(what: string, condition: () => boolean | Promise<boolean>): Promise<void> {
  const giveUpAt = Date.now() + HANG_GUARD_MS;
  while (!(await condition())) {
    if (Date.now() > giveUpAt) throw new Error(`never true: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A loopback port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  await new Promise((r) => server.close(r));
  if (address === null || typeof address !== 'object') throw new Error('no port');
  return address.port;
}

/**
 * An in-memory ContainerRuntime for integration tests of the daemon's command path.
 * Supports info/list/inspect/create/start/stop/remove/hasImage; any other method
 * (checkpoint, transfer…) throws, so a test cannot silently rely on a fake migration.
 */
export function fakeRuntime(options: { images?: string[] } = {}): ContainerRuntime & { calls: string[] } {
  const images = new Set(options.images ?? ['busybox:1.36']);
  const containers = new Map<string, ContainerDetails>();
  const calls: string[] = [];
  let next = 1;
  const find = (ref: string, hostId: string): ContainerDetails => {
    for (const c of containers.values()) {
      if (c.dockerId === ref || c.name === ref || c.herdId === ref) return { ...c, hostId };
    }
    throw new HerdError('UNKNOWN_CONTAINER', `no container "${ref}" on host ${hostId}`);
  };
  const summary = ({ spec: _s, running: _r, ...rest }: ContainerDetails): ContainerSummary => rest;
  const implemented = {
    calls,
    async info(): Promise<RuntimeInfo> {
      calls.push('info');
      return { dockerVersion: 'fake-1.0', dataRoot: '/nonexistent', storageDriver: 'overlay2', experimental: true, runtimes: ['runc'] };
    },
    async list(hostId: string): Promise<ContainerSummary[]> {
      calls.push('list');
      return [...containers.values()].map((c) => summary({ ...c, hostId }));
    },
    async inspect(ref: string, hostId: string): Promise<ContainerDetails> {
      calls.push(`inspect ${ref}`);
      return find(ref, hostId);
    },
    async hasImage(image: string): Promise<boolean> {
      return images.has(image);
    },
    async create(spec: ContainerSpec & { herdId: string }): Promise<string> {
      calls.push(`create ${spec.name}`);
      if (!images.has(spec.image)) throw new HerdError('IMAGE_MISSING', `image ${spec.image} is not present`);
      if ([...containers.values()].some((c) => c.name === spec.name)) throw new HerdError('CONFLICT', `name "${spec.name}" is in use`);
      const dockerId = `fake${String(next++).padStart(60, '0')}`;
      containers.set(dockerId, { herdId: spec.herdId, name: spec.name, hostId: '', dockerId, image: spec.image, state: 'created', spec, running: false, mounts: [] });
      return dockerId;
    },
    async start(dockerId: string): Promise<void> {
      calls.push(`start ${dockerId}`);
      const c = containers.get(dockerId);
      if (c === undefined) throw new HerdError('UNKNOWN_CONTAINER', `no container ${dockerId}`);
      containers.set(dockerId, { ...c, state: 'running', running: true });
    },
    async stop(dockerId: string): Promise<void> {
      calls.push(`stop ${dockerId}`);
      const c = containers.get(dockerId);
      if (c !== undefined) containers.set(dockerId, { ...c, state: 'exited', running: false });
    },
    async remove(dockerId: string): Promise<void> {
      calls.push(`remove ${dockerId}`);
      containers.delete(dockerId);
    },
    // Nothing changes behind the fake's back: there is nothing to watch.
    watchChanges(): () => void {
      return () => undefined;
    },
  };
  return new Proxy(implemented, {
    get(target, prop, receiver) {
      if (typeof prop === 'string' && !(prop in target) && prop !== 'then') {
        return () => {
          throw new HerdError('INTERNAL', `the fake runtime does not implement ${prop}`);
        };
      }
      return Reflect.get(target, prop, receiver);
    },
  }) as unknown as ContainerRuntime & { calls: string[] };
}

export const MOSQUITTO = '/usr/sbin/mosquitto';

export interface MosquittoProcess {
  output(): string;
  stop(): Promise<void>;
}

/**
 * Starts Debian's mosquitto with `conf` (written to dir/mosquitto.conf) and resolves once
 * `ready` succeeds; rejects with its output if it exits first. Stopped by its pid.
 */
export async function startMosquitto(dir: string, conf: string[], ready: () => Promise<void>): Promise<MosquittoProcess> {
  // Never skip: a machine without mosquitto is not set up for these suites.
  if (!existsSync(MOSQUITTO)) throw new Error('mosquitto not installed: run scripts/setup');
  const file = join(dir, 'mosquitto.conf');
  writeFileSync(file, [...conf, 'persistence false', 'log_dest stderr', ''].join('\n'));
  const proc = spawn(MOSQUITTO, ['-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout?.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  let exited: string | undefined;
  proc.once('exit', (code, signal) => (exited = `mosquitto exited (code ${code}, signal ${signal}):\n${log}`));
  proc.once('error', (err) => (exited = `mosquitto could not start: ${err.message}`));
  const stop = async () => {
    if (proc.pid !== undefined && proc.exitCode === null && proc.signalCode === null) {
      const gone = new Promise((r) => proc.once('exit', r));
      process.kill(proc.pid, 'SIGTERM');
      await gone;
    }
  };
  for (let attempt = 0; ; attempt++) {
    if (exited !== undefined) throw new Error(exited);
    try {
      await ready();
      return { output: () => log, stop };
    } catch (err) {
      if (attempt >= 100) {
        await stop();
        throw new Error(`mosquitto did not accept connections: ${(err as Error).message}\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
