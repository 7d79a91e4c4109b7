/**
 * Request/reply over MQTT. A command is published (QoS 1) on the target host's command
 * topic with a unique id and the sender's client id; the daemon replies (QoS 1) on
 * herd/v1/replies/{sender} with the same id. QoS 1 may deliver a command twice: the
 * server remembers recent ids and answers a duplicate with the first answer instead
 * of running it again.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { decode, decodeCommand, describeIssues, salvageReplyAddress } from './codec.ts';
import { HerdError, toHerdError } from './errors.ts';
import { COMMAND_RESULTS, PROTOCOL_VERSION, replySchema, type Command, type CommandArgsInput, type CommandType, type Reply } from './messages.ts';
import { hostname } from 'node:os';
import { z } from 'zod';
import { computeClientId, controlClientId, mayCommand, operatorClientId } from './access.ts';
import { connectBroker, publishJson, type BrokerEndpoint, type MqttClient } from './mqtt.ts';
import { topics } from './topics.ts';

export type CommandHandler<T extends CommandType> = (command: Command<T>) => Promise<unknown>;
export type CommandHandlers = { [T in CommandType]?: CommandHandler<T> };

export interface CommandServer {
  close(): Promise<void>;
}

/** What a daemon accepts: the `commands` block of the compute and control configs. */
export const commandLimitsSchema = z
  .strictObject({
    /** Commands sent longer ago than this (or dated this far in the future) are refused as STALE_COMMAND: replays and badly skewed clocks. */
    maxAgeSeconds: z.number().positive().max(86_400).default(120),
    /** Commands run at once; more are refused as BUSY (retryable). */
    maxConcurrent: z.number().int().positive().default(16),
    /** Ids remembered (for the age window) to answer a redelivered or replayed command with its first reply instead of running it again; when full of fresh ids, new commands are refused as BUSY. */
    maxRemembered: z.number().int().positive().default(10_000),
  })
  .prefault({});
export type CommandLimits = z.infer<typeof commandLimitsSchema>;

export interface ServeOptions {
  /** Where commands arrive (default: the host's command topic). */
  topic?: string;
  limits?: Partial<CommandLimits>;
  /** For tests: the clock. */
  now?: () => number;
}

/**
 * Serves commands addressed to `hostId`. A handler's throw becomes an error reply; nothing a
 * message contains can stop the server. Before a handler runs: the sender must be allowed
 * the command (protocol/access.ts mayCommand), the command must be fresh (sentAt within
 * maxAgeSeconds), and no more than maxConcurrent may run. A command id seen within the
 * age window is answered with its first reply and not run again.
 */
export async function serveCommands(client: MqttClient, hostId: string, ownClientId: string, handlers: CommandHandlers, log: Logger, options: ServeOptions = {}): Promise<CommandServer> {
  const topic = options.topic ?? topics.hostCommands(hostId);
  const limits = commandLimitsSchema.parse(options.limits ?? {});
  const maxAgeMs = limits.maxAgeSeconds * 1000;
  const now = options.now ?? Date.now;
  /** id → first reply and when it was received; ids older than twice the age window cannot come back fresh. */
  const seen = new Map<string, { reply: Promise<Reply>; at: number }>();
  let running = 0;

  const refuse = (command: Command, error: HerdError): Promise<Reply> => {
    log.warn({ commandId: command.id, type: command.type, from: command.from, code: error.code, err: error.message }, 'refused command');
    return Promise.resolve({ v: PROTOCOL_VERSION, id: command.id, ok: false, from: ownClientId, error: error.toWire() });
  };

  const answer = async (command: Command): Promise<Reply> => {
    const handler = handlers[command.type] as CommandHandler<CommandType> | undefined;
    running++;
    try {
      if (handler === undefined) throw new HerdError('UNKNOWN_COMMAND', `host ${hostId} does not implement command "${command.type}"`);
      const result = await handler(command);
      return { v: PROTOCOL_VERSION, id: command.id, ok: true, from: ownClientId, result: result ?? null };
    } catch (err) {
      const error = toHerdError(err);
      log.warn({ commandId: command.id, type: command.type, code: error.code, err: error.message }, 'command failed');
      return { v: PROTOCOL_VERSION, id: command.id, ok: false, from: ownClientId, error: error.toWire() };
    } finally {
      running--;
    }
  };

  /** The reply to a decoded command: the first one for a known id, else a check and a run. */
  const reply = (command: Command): Promise<Reply> => {
    const t = now();
    for (const [id, entry] of seen) {
      if (t - entry.at <= 2 * maxAgeMs) break;
      seen.delete(id);
    }
    const known = seen.get(command.id);
    if (known !== undefined) {
      log.info({ commandId: command.id }, 'duplicate command: answering with the first reply');
      return known.reply;
    }
    const sentAt = Date.parse(command.sentAt);
    if (Math.abs(t - sentAt) > maxAgeMs) {
      const ageS = Math.round((t - sentAt) / 1000);
      return refuse(command, new HerdError('STALE_COMMAND', `command ${command.id} (${command.type}) was sent ${ageS >= 0 ? `${ageS} s ago` : `${-ageS} s in the future`}; host ${hostId} accepts commands at most ${limits.maxAgeSeconds} s old (a replay, or clocks out of sync)`));
    }
    const allowed = mayCommand(command.from, command.type);
    if (!allowed.allowed) return refuse(command, new HerdError('NOT_AUTHORIZED', allowed.reason ?? `${command.from} may not send ${command.type}`));
    if (running >= limits.maxConcurrent) return refuse(command, new HerdError('BUSY', `host ${hostId} already runs ${running} commands (commands.maxConcurrent); try again`));
    if (seen.size >= limits.maxRemembered) return refuse(command, new HerdError('BUSY', `host ${hostId} received more than ${limits.maxRemembered} commands within ${2 * limits.maxAgeSeconds} s (commands.maxRemembered); try again`));
    log.debug({ commandId: command.id, type: command.type, from: command.from }, 'command received');
    const pending = answer(command);
    seen.set(command.id, { reply: pending, at: t });
    return pending;
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
        const bad: Reply = { v: PROTOCOL_VERSION, id: address.id, ok: false, from: ownClientId, error: error.toWire() };
        publishJson(client, topics.replies(address.from), bad).catch((e: unknown) => log.warn({ err: String(e) }, 'could not send error reply'));
      }
      return;
    }
    reply(command)
      .then((r) => publishJson(client, topics.replies(command.from), r))
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
  private readonly pending = new Map<string, { resolve: (r: unknown) => void; reject: (e: HerdError) => void; timer: NodeJS.Timeout; peer: string; type: CommandType }>();
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
      if (reply.from !== waiter.peer) {
        // Only the daemon asked may answer (the broker binds client ids to identities): a forgery is ignored, the real reply may still come.
        this.log.warn({ commandId: reply.id, from: reply.from, expected: waiter.peer }, 'ignored a reply from the wrong peer');
        return;
      }
      this.pending.delete(reply.id);
      clearTimeout(waiter.timer);
      if (!reply.ok) return waiter.reject(HerdError.fromWire(reply.error as never));
      const schema = COMMAND_RESULTS[waiter.type];
      if (schema === undefined) return waiter.resolve(reply.result);
      const checked = schema.safeParse(reply.result);
      if (checked.success) waiter.resolve(checked.data);
      else waiter.reject(new HerdError('BAD_MESSAGE', `reply of ${reply.from} to "${waiter.type}" is invalid: ${describeIssues(checked.error.issues, 'result')}`));
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
    /** Whether the broker acknowledged the command (PUBACK): a timeout before it is the broker's, not the host's. */
    let acknowledged = false;
    const result = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          noReply(
            acknowledged
              ? new HerdError('TIMEOUT', `no reply from host ${hostId} to "${type}" within ${timeoutMs} ms`)
              : new HerdError('BROKER_UNAVAILABLE', `the MQTT broker did not take "${type}" for host ${hostId} within ${timeoutMs} ms (${this.client.connected ? 'no acknowledgement' : 'not connected: reconnecting'})`),
          ),
        );
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, type, peer: type.startsWith('control.') ? controlClientId(hostId) : computeClientId(hostId) });
    });
    const envelope = { v: PROTOCOL_VERSION, id, type, from: this.clientId, sentAt: new Date().toISOString(), args };
    // The publish and the wait for the reply run side by side, and only `result` is awaited:
    // a reconnecting client queues the publish while the broker is away, so it may never
    // settle before the timer fires, and a `result` created but not yet awaited would then
    // reject unobserved (an unhandled rejection kills the CLI with a stack trace). A failed
    // publish ends the wait at once.
    publishJson(this.client, options.topic ?? topics.hostCommands(hostId), envelope).then(
      () => {
        acknowledged = true;
      },
      (err: unknown) => {
        const waiter = this.pending.get(id);
        if (waiter === undefined) return; // timed out (or answered) already
        clearTimeout(waiter.timer);
        this.pending.delete(id);
        waiter.reject(noReply(new HerdError('BROKER_UNAVAILABLE', `could not publish "${type}" to host ${hostId}: ${(err as Error).message}`, { cause: err })));
      },
    );
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

/** What an operator can do when a CLI command finds no broker (a broker that closed the connection got its own hint). */
const NO_BROKER_HINT = 'Is a control daemon running (herd lab up, or herd control)? Otherwise name the broker with --broker URL or $HERD_BROKER';

/**
 * A short-lived client for one CLI command (`what` names its client id): no reconnecting, a
 * clear error when the broker is not there, saying what to do. A refused connection fails
 * at once; `connectTimeoutMs` is how long a broker that accepted the connection may take to
 * answer it: as long as the broker itself waits for a client's CONNECT, since a busy
 * broker (or a busy machine) can be seconds late without being gone.
 */
export async function connectCommandClient(endpoint: BrokerEndpoint, what: string, connectTimeoutMs = 10_000): Promise<MqttClient> {
  try {
    return await connectBroker({ ...endpoint, clientId: operatorClientId(endpoint.username, what, hostname()), reconnectPeriodMs: 0, connectTimeoutMs });
  } catch (err) {
    if (!(err instanceof HerdError) || err.code !== 'BROKER_UNAVAILABLE' || (err.cause as Error | undefined)?.message === 'connection closed') throw err;
    throw new HerdError('BROKER_UNAVAILABLE', `${err.message}. ${NO_BROKER_HINT}`, { cause: err });
  }
}
