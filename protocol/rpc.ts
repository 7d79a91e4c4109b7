/**
 * Request/reply over MQTT. A command is published (QoS 1) on the target host's command
 * topic with a unique id and the sender's client id; the daemon replies (QoS 1) on
 * herd/v1/replies/{sender} with the same id. QoS 1 may deliver a command twice: the
 * server remembers recent ids and answers a duplicate with the first answer instead
 * of running it again.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { decode, decodeCommand, salvageReplyAddress } from './codec.ts';
import { HerdError, toHerdError } from './errors.ts';
import { PROTOCOL_VERSION, replySchema, type Command, type CommandArgsInput, type CommandType, type Reply } from './messages.ts';
import { hostname } from 'node:os';
import { connectBroker, publishJson, type MqttClient } from './mqtt.ts';
import { topics } from './topics.ts';

export type CommandHandler<T extends CommandType> = (command: Command<T>) => Promise<unknown>;
export type CommandHandlers = { [T in CommandType]?: CommandHandler<T> };

export interface CommandServer {
  close(): Promise<void>;
}

const DUPLICATE_MEMORY = 500;

/** Serves commands addressed to `hostId`. A handler's throw becomes an error reply; nothing a message contains can stop the server. */
export async function serveCommands(client: MqttClient, hostId: string, ownClientId: string, handlers: CommandHandlers, log: Logger, topic = topics.hostCommands(hostId)): Promise<CommandServer> {
  const seen = new Map<string, Promise<Reply>>();

  const answer = async (command: Command): Promise<Reply> => {
    const handler = handlers[command.type] as CommandHandler<CommandType> | undefined;
    try {
      if (handler === undefined) throw new HerdError('UNKNOWN_COMMAND', `host ${hostId} does not implement command "${command.type}"`);
      const result = await handler(command);
      return { v: PROTOCOL_VERSION, id: command.id, ok: true, from: ownClientId, result: result ?? null };
    } catch (err) {
      const error = toHerdError(err);
      log.warn({ commandId: command.id, type: command.type, code: error.code, err: error.message }, 'command failed');
      return { v: PROTOCOL_VERSION, id: command.id, ok: false, from: ownClientId, error: error.toWire() };
    }
  };

  const onMessage = (received: string, payload: Buffer) => {
    if (received !== topic) return;
    let command: Command;
    try {
      command = decodeCommand(payload);
    } catch (err) {
      const error = toHerdError(err, 'BAD_MESSAGE');
      const address = salvageReplyAddress(payload);
      log.warn({ code: error.code, err: error.message, replyTo: address?.from }, 'rejected command');
      if (address !== undefined) {
        const reply: Reply = { v: PROTOCOL_VERSION, id: address.id, ok: false, from: ownClientId, error: error.toWire() };
        publishJson(client, topics.replies(address.from), reply).catch((e: unknown) => log.warn({ err: String(e) }, 'could not send error reply'));
      }
      return;
    }
    let pending = seen.get(command.id);
    if (pending === undefined) {
      log.debug({ commandId: command.id, type: command.type, from: command.from }, 'command received');
      pending = answer(command);
      seen.set(command.id, pending);
      if (seen.size > DUPLICATE_MEMORY) seen.delete(seen.keys().next().value as string);
    } else {
      log.info({ commandId: command.id }, 'duplicate command: answering with the first reply');
    }
    pending
      .then((reply) => publishJson(client, topics.replies(command.from), reply))
      .catch((e: unknown) => log.warn({ commandId: command.id, err: String(e) }, 'could not send reply'));
  };

  client.on('message', onMessage);
  await client.subscribeAsync(topic, { qos: 1 });
  return {
    async close() {
      client.off('message', onMessage);
      if (client.connected) await client.unsubscribeAsync(topic).catch(() => undefined);
    },
  };
}

export interface RequestOptions {
  timeoutMs?: number;
  /** Called for the id before publishing, e.g. to subscribe to migration events first. */
  id?: string;
  /** Where to publish instead of the host's command topic (a control daemon's). */
  topic?: string;
}

/**
 * Marks an error as "no reply was heard" (a local timeout, a publish that failed, the
 * client closed): the command may or may not have run. A reply with an error is not one.
 */
function noReply(error: HerdError): HerdError {
  Object.defineProperty(error, 'noReply', { value: true });
  return error;
}

/** True when the command's outcome is unknown because no reply was heard (see noReply). */
export function isNoReply(err: unknown): boolean {
  return err instanceof HerdError && (err as HerdError & { noReply?: boolean }).noReply === true;
}

/** Sends commands and matches replies by id. One per MQTT client. */
export class CommandClient {
  private readonly pending = new Map<string, { resolve: (r: unknown) => void; reject: (e: HerdError) => void; timer: NodeJS.Timeout }>();
  private readonly onMessage: (topic: string, payload: Buffer) => void;
  private readonly replyTopic: string;

  private constructor(private readonly client: MqttClient, private readonly clientId: string, private readonly log: Logger) {
    this.replyTopic = topics.replies(clientId);
    this.onMessage = (topic, payload) => {
      if (topic !== this.replyTopic) return;
      let reply: Reply;
      try {
        reply = decode(replySchema, payload, 'reply');
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'ignored malformed reply');
        return;
      }
      const waiter = this.pending.get(reply.id);
      if (waiter === undefined) return; // late or duplicate reply
      this.pending.delete(reply.id);
      clearTimeout(waiter.timer);
      if (reply.ok) waiter.resolve(reply.result);
      else waiter.reject(HerdError.fromWire(reply.error as never));
    };
  }

  static async create(client: MqttClient, clientId: string, log: Logger): Promise<CommandClient> {
    const rpc = new CommandClient(client, clientId, log);
    client.on('message', rpc.onMessage);
    await client.subscribeAsync(rpc.replyTopic, { qos: 1 });
    return rpc;
  }

  async request<R = unknown, T extends CommandType = CommandType>(hostId: string, type: T, args: CommandArgsInput<T>, options: RequestOptions = {}): Promise<R> {
    const id = options.id ?? randomUUID();
    const timeoutMs = options.timeoutMs ?? 30_000;
    const result = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(noReply(new HerdError('TIMEOUT', `no reply from host ${hostId} to "${type}" within ${timeoutMs} ms`)));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
    });
    const envelope = { v: PROTOCOL_VERSION, id, type, from: this.clientId, sentAt: new Date().toISOString(), args };
    try {
      await publishJson(this.client, options.topic ?? topics.hostCommands(hostId), envelope);
    } catch (err) {
      const waiter = this.pending.get(id);
      if (waiter !== undefined) clearTimeout(waiter.timer);
      this.pending.delete(id);
      throw noReply(new HerdError('BROKER_UNAVAILABLE', `could not publish "${type}" to host ${hostId}: ${(err as Error).message}`, { cause: err }));
    }
    return (await result) as R;
  }

  async close(): Promise<void> {
    this.client.off('message', this.onMessage);
    for (const [id, waiter] of this.pending) {
      clearTimeout(waiter.timer);
      waiter.reject(noReply(new HerdError('BROKER_UNAVAILABLE', `client closed before a reply to ${id}`)));
    }
    this.pending.clear();
  }
}

/** A unique client id that stays the same for the life of this process: `<role>-<host>-<pid>`. */
export function processClientId(role: string, host: string): string {
  return `${role}-${host}-${process.pid}`.replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 64);
}

/** A short-lived client for one CLI command: no reconnecting, a clear error within 3 s when the broker is not there. */
export function connectCommandClient(brokerUrl: string, role: string): Promise<MqttClient> {
  return connectBroker({ url: brokerUrl, clientId: processClientId(role, hostname()), reconnectPeriodMs: 0, connectTimeoutMs: 3000 });
}
