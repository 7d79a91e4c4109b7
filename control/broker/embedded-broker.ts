/**
 * The embedded MQTT 3.1.1 broker (aedes) that the control daemon runs by default.
 * Built separately from listening so that tests can attach clients over any stream.
 *
 * With a users file it admits only those identities (password checked against its hash),
 * binds each client id to its identity and applies protocol/access.ts's rules to every
 * publish and subscribe; every denial is logged with the identity and topic. Without one it
 * is open to anyone (allowed only when the config says so explicitly). Packets larger than
 * `maxPacketBytes` close the connection before they are buffered. TLS when given a
 * certificate and key.
 *
 * What one client may make the broker hold is bounded (BROKER_LIMITS): before it has
 * authenticated, packets of a few KiB (a CONNECT) and a capped number of such connections,
 * in all and per remote address; no persistent sessions (`clean: false`); retained messages
 * only on the topics Herd retains (RETAINED_KINDS), which are kept and replayed forever;
 * and a capped number of subscriptions.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import type { Logger } from 'pino';
import { clientIdAllowed, mayPublish, maySubscribe } from '../../protocol/access.ts';
import { verifyPassword, type UserEntry } from '../../protocol/credentials.ts';
import { MAX_MESSAGE_BYTES } from '../../protocol/codec.ts';
import { HerdError } from '../../protocol/errors.ts';
import { listenOn } from '../../protocol/listen.ts';
import { parseTopic, type TopicKind } from '../../protocol/topics.ts';
import { PacketSizeMeter } from './packet-size-guard.ts';

/**
 * Bounds on what clients may make the broker hold in memory: constants, generous for Herd's
 * own clients (a daemon holds a handful of subscriptions and authenticates in milliseconds),
 * small against a flood. Tests pass smaller ones.
 */
export interface BrokerLimits {
  /** Largest packet before the client has authenticated: its CONNECT (client id, credentials and a host's last will fit several times over). */
  preAuthPacketBytes: number;
  /** Connections not yet authenticated, in all and per remote address; more are closed at once. */
  maxUnauthenticated: number;
  maxUnauthenticatedPerAddress: number;
  /** Subscription filters one client may hold; more are refused (SUBACK 0x80). */
  maxSubscriptions: number;
}

export const BROKER_LIMITS: BrokerLimits = { preAuthPacketBytes: 16 * 1024, maxUnauthenticated: 512, maxUnauthenticatedPerAddress: 64, maxSubscriptions: 1000 };

/** A connection must send its CONNECT, and a TLS client finish its handshake, within this (aedes' default is 30 s, Node's TLS 120 s). */
const CONNECT_TIMEOUT_MS = 10_000;

/** The topics Herd retains (protocol/topics.ts): a host's status and container list, a control daemon's status (and their last wills). A retained message anywhere else is refused. */
export const RETAINED_KINDS: ReadonlySet<TopicKind> = new Set(['hostStatus', 'hostContainers', 'controlStatus']);

export interface EmbeddedBrokerOptions {
  host: string;
  port: number;
  /** Identities admitted; undefined: anyone, anonymous included. */
  users?: readonly UserEntry[];
  /** PEM certificate (chain) and key: the listener speaks TLS (mqtts://). */
  tls?: { cert: Buffer; key: Buffer };
  /** Connections that send a larger MQTT packet are closed (default 8 MiB). */
  maxPacketBytes?: number;
  /** Default BROKER_LIMITS. */
  limits?: Partial<BrokerLimits>;
}

export interface EmbeddedBroker {
  readonly aedes: Aedes;
  /** host:port actually bound (port 0 in the config picks a free one). */
  readonly address: { host: string; port: number };
  readonly url: string;
  /**
   * Admits these identities from now on (a reloaded users file) and closes the sessions of
   * those removed or changed (a rotated password): they must connect again to stay.
   * Returns the client ids closed.
   */
  setUsers(users: readonly UserEntry[]): string[];
  close(): Promise<void>;
}

/** Commands and replies name their sender in `from`: it must be the publishing client's own id. */
function senderMismatch(client: Client, payload: Buffer | string): string | undefined {
  let from: unknown;
  try {
    from = (JSON.parse(payload.toString()) as { from?: unknown } | null)?.from;
  } catch {
    return undefined; // not JSON: the receiver rejects it, naming the problem
  }
  return from === undefined || from === client.id ? undefined : `message claims to be from ${String(from)}`;
}

const sameIdentity = (a: UserEntry, b: UserEntry) => a.passwordHash === b.passwordHash && a.role === b.role && a.host === b.host && a.node === b.node;

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

export async function startEmbeddedBroker(options: EmbeddedBrokerOptions, log: Logger): Promise<EmbeddedBroker> {
  let users = options.users === undefined ? undefined : new Map(options.users.map((u) => [u.username, u]));
  const identities = new WeakMap<Client, UserEntry>();
  const denied = (client: Client | null, what: string, reason: string, extra: Record<string, unknown> = {}) =>
    log.warn({ clientId: client?.id, username: client === null ? undefined : identities.get(client)?.username, ...extra, reason }, `mqtt ${what} denied`);

  const limits: BrokerLimits = { ...BROKER_LIMITS, ...options.limits };
  const maxPacketBytes = options.maxPacketBytes ?? MAX_MESSAGE_BYTES;
  /** Per connection (its socket): its packet meter and whether it still counts as unauthenticated. */
  const connections = new WeakMap<object, { meter: PacketSizeMeter; address: string; unauthenticated: boolean }>();
  const unauthenticated = new Map<string, number>();
  let unauthenticatedTotal = 0;
  const settle = (entry: { address: string; unauthenticated: boolean }) => {
    if (!entry.unauthenticated) return;
    entry.unauthenticated = false;
    unauthenticatedTotal--;
    const n = (unauthenticated.get(entry.address) ?? 1) - 1;
    if (n === 0) unauthenticated.delete(entry.address);
    else unauthenticated.set(entry.address, n);
  };
  /** Authenticated: full-size packets from now on, and no longer counted against the unauthenticated caps. */
  const admit = (client: Client) => {
    const entry = connections.get(client.conn);
    if (entry === undefined) return;
    settle(entry);
    entry.meter.maxBytes = maxPacketBytes;
  };
  const subscriptions = new WeakMap<Client, Set<string>>();
  const capped = new WeakSet<Client>();

  const aedes = await Aedes.createBroker({
    connectTimeout: CONNECT_TIMEOUT_MS,
    authenticate(client, username, password, done) {
      // Herd's clients connect with clean: true; a persistent session would keep its subscriptions and queued messages after it left.
      if (!client.clean) {
        denied(client, 'connect', 'persistent session (clean: false)', { username });
        done(authError('persistent sessions are not allowed (connect with clean: true)', 5), false);
        return;
      }
      if (users === undefined) {
        admit(client);
        done(null, true);
        return;
      }
      const user = username === undefined ? undefined : users.get(username);
      if (user === undefined || password === undefined) {
        denied(client, 'connect', username === undefined ? 'no credentials' : `unknown user ${username}`, { username });
        done(authError('bad username or password', 4), false);
        return;
      }
      verifyPassword(password.toString('utf8'), user.passwordHash).then(
        (ok) => {
          if (!ok) {
            denied(client, 'connect', 'wrong password', { username });
            done(authError('bad username or password', 4), false);
            return;
          }
          const bound = clientIdAllowed(user, client.id);
          if (!bound.allowed) {
            denied(client, 'connect', bound.reason ?? 'client id not allowed', { username });
            done(authError('client id not allowed for this identity', 2), false);
            return;
          }
          identities.set(client, user);
          admit(client);
          done(null, true);
        },
        (err: unknown) => done(authError(`cannot check password: ${String(err)}`, 3), false),
      );
    },
    authorizePublish(client, packet, done) {
      if (client === null) return done(null); // the broker's own ($SYS); a client's will is checked with its client
      const kind = parseTopic(packet.topic)?.kind;
      if (users !== undefined) {
        const identity = identities.get(client);
        if (identity === undefined) return done(new Error('not authenticated'));
        const decision = mayPublish(identity, client.id, packet.topic);
        if (!decision.allowed) {
          denied(client, 'publish', decision.reason ?? 'not allowed', { topic: packet.topic });
          return done(new Error(decision.reason));
        }
        const mismatch = kind === 'hostCommands' || kind === 'controlCommands' || kind === 'replies' ? senderMismatch(client, packet.payload) : undefined;
        if (mismatch !== undefined) {
          denied(client, 'publish', mismatch, { topic: packet.topic });
          return done(new Error(mismatch));
        }
      }
      if (packet.retain && (kind === undefined || !RETAINED_KINDS.has(kind))) {
        const reason = 'retained messages are kept only for host status, host containers and control status';
        denied(client, 'publish', reason, { topic: packet.topic });
        return done(new Error(reason));
      }
      done(null);
    },
    authorizeSubscribe(client, subscription, done) {
      if (users !== undefined) {
        const identity = identities.get(client);
        const decision = identity === undefined ? { allowed: false, reason: 'not authenticated' } : maySubscribe(identity, client.id, subscription.topic);
        if (!decision.allowed) {
          denied(client, 'subscribe', decision.reason ?? 'not allowed', { topic: subscription.topic });
          return done(null, null); // SUBACK 0x80 for this filter
        }
      }
      let held = subscriptions.get(client);
      if (held === undefined) subscriptions.set(client, (held = new Set()));
      if (!held.has(subscription.topic) && held.size >= limits.maxSubscriptions) {
        // Said once per client: a flood of filters would flood the log too.
        if (!capped.has(client)) denied(client, 'subscribe', `more than ${limits.maxSubscriptions} subscriptions`, { topic: subscription.topic });
        capped.add(client);
        return done(null, null);
      }
      held.add(subscription.topic);
      done(null, subscription);
    },
  });
  aedes.on('unsubscribe', (filters, client) => {
    const held = subscriptions.get(client);
    for (const f of filters) held?.delete(f);
  });
  aedes.on('clientError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'mqtt client error'));
  /** Connected clients (setUsers closes those whose identity changed). */
  const sessions = new Set<Client>();
  aedes.on('client', (client) => {
    sessions.add(client);
    log.debug({ clientId: client.id }, 'mqtt client connected');
  });
  aedes.on('clientDisconnect', (client) => {
    sessions.delete(client);
    log.debug({ clientId: client.id }, 'mqtt client disconnected');
  });

  // aedes pulls bytes with conn.read(): meter them there and close the connection at an oversized packet's header.
  const handle = (socket: Socket) => {
    const address = socket.remoteAddress ?? 'unknown';
    const fromAddress = unauthenticated.get(address) ?? 0;
    if (unauthenticatedTotal >= limits.maxUnauthenticated || fromAddress >= limits.maxUnauthenticatedPerAddress) {
      log.warn({ remote: address, fromAddress, total: unauthenticatedTotal, limits: { total: limits.maxUnauthenticated, perAddress: limits.maxUnauthenticatedPerAddress } }, 'mqtt connection refused: too many connections not yet authenticated');
      socket.destroy();
      return;
    }
    unauthenticatedTotal++;
    unauthenticated.set(address, fromAddress + 1);
    const entry = { meter: new PacketSizeMeter(Math.min(limits.preAuthPacketBytes, maxPacketBytes)), address, unauthenticated: true };
    connections.set(socket, entry);
    socket.once('close', () => settle(entry));
    // Requests and replies are small packets: without it, Nagle and delayed ACKs hold each for up to 40 ms.
    socket.setNoDelay(true);
    const read = socket.read.bind(socket);
    socket.read = (size?: number) => {
      const buf = read(size) as Buffer | null;
      if (buf === null || socket.destroyed) return buf;
      const tooLarge = entry.meter.feed(buf);
      if (tooLarge === undefined) return buf;
      const authenticated = !entry.unauthenticated;
      log.warn({ remote: address, bytes: tooLarge, maxPacketBytes: entry.meter.maxBytes, authenticated }, `mqtt packet too large${authenticated ? '' : ' before authentication'}: connection closed`);
      socket.destroy();
      return null;
    };
    aedes.handle(socket);
  };
  const server: Server =
    options.tls === undefined
      ? createServer(handle)
      : createTlsServer({ cert: options.tls.cert, key: options.tls.key, minVersion: 'TLSv1.2', handshakeTimeout: CONNECT_TIMEOUT_MS }, handle);
  let port: number;
  try {
    port = await listenOn(server, options.host, options.port, 'embedded broker');
  } catch (err) {
    aedes.close();
    throw err;
  }
  const host = options.host === '0.0.0.0' ? '127.0.0.1' : options.host;
  const scheme = options.tls === undefined ? 'mqtt' : 'mqtts';
  log.info({ host: options.host, port, tls: options.tls !== undefined, authentication: users !== undefined, maxPacketBytes }, 'embedded MQTT broker listening');
  if (users === undefined) log.warn('embedded MQTT broker admits anonymous clients (broker.auth.allowAnonymous): anyone who reaches it can run, stop and move containers');
  return {
    aedes,
    address: { host: options.host, port },
    url: `${scheme}://${host}:${port}`,
    setUsers(next) {
      if (users === undefined) throw new HerdError('BAD_CONFIG', 'the embedded broker runs without authentication (broker.auth.allowAnonymous): restart the control daemon to turn it on');
      users = new Map(next.map((u) => [u.username, u]));
      const closed: string[] = [];
      for (const client of sessions) {
        const was = identities.get(client);
        const now = was === undefined ? undefined : users.get(was.username);
        if (was === undefined || (now !== undefined && sameIdentity(was, now))) continue;
        log.warn({ clientId: client.id, username: was.username, reason: now === undefined ? 'identity removed' : 'identity changed (a new password?)' }, 'mqtt session closed: its identity changed in the users file');
        client.close();
        closed.push(client.id);
      }
      log.info({ users: users.size, closed: closed.length }, 'embedded MQTT broker: users file reloaded');
      return closed;
    },
    async close() {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
