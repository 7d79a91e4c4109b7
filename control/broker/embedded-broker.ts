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
 */
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import type { Logger } from 'pino';
import { clientIdAllowed, mayPublish, maySubscribe, type Identity } from '../../protocol/access.ts';
import { verifyPassword, type UserEntry } from '../../protocol/credentials.ts';
import { MAX_MESSAGE_BYTES } from '../../protocol/codec.ts';
import { listenOn } from '../../protocol/listen.ts';
import { parseTopic } from '../../protocol/topics.ts';
import { PacketSizeMeter } from './packet-size-guard.ts';

export interface EmbeddedBrokerOptions {
  host: string;
  port: number;
  /** Identities admitted; undefined: anyone, anonymous included. */
  users?: readonly UserEntry[];
  /** PEM certificate (chain) and key: the listener speaks TLS (mqtts://). */
  tls?: { cert: Buffer; key: Buffer };
  /** Connections that send a larger MQTT packet are closed (default 8 MiB). */
  maxPacketBytes?: number;
}

export interface EmbeddedBroker {
  readonly aedes: Aedes;
  /** host:port actually bound (port 0 in the config picks a free one). */
  readonly address: { host: string; port: number };
  readonly url: string;
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

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

export async function startEmbeddedBroker(options: EmbeddedBrokerOptions, log: Logger): Promise<EmbeddedBroker> {
  const users = options.users === undefined ? undefined : new Map(options.users.map((u) => [u.username, u]));
  const identities = new WeakMap<Client, Identity>();
  const denied = (client: Client | null, what: string, reason: string, extra: Record<string, unknown> = {}) =>
    log.warn({ clientId: client?.id, username: client === null ? undefined : identities.get(client)?.username, ...extra, reason }, `mqtt ${what} denied`);

  const aedes = await Aedes.createBroker(
    users === undefined
      ? {}
      : {
          authenticate(client, username, password, done) {
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
                done(null, true);
              },
              (err: unknown) => done(authError(`cannot check password: ${String(err)}`, 3), false),
            );
          },
          authorizePublish(client, packet, done) {
            if (client === null) return done(null); // the broker's own ($SYS); a client's will is checked with its client
            const identity = identities.get(client);
            if (identity === undefined) return done(new Error('not authenticated'));
            const decision = mayPublish(identity, client.id, packet.topic);
            if (!decision.allowed) {
              denied(client, 'publish', decision.reason ?? 'not allowed', { topic: packet.topic });
              return done(new Error(decision.reason));
            }
            const kind = parseTopic(packet.topic)?.kind;
            const mismatch = kind === 'hostCommands' || kind === 'controlCommands' || kind === 'replies' ? senderMismatch(client, packet.payload) : undefined;
            if (mismatch !== undefined) {
              denied(client, 'publish', mismatch, { topic: packet.topic });
              return done(new Error(mismatch));
            }
            done(null);
          },
          authorizeSubscribe(client, subscription, done) {
            const identity = identities.get(client);
            const decision = identity === undefined ? { allowed: false, reason: 'not authenticated' } : maySubscribe(identity, client.id, subscription.topic);
            if (!decision.allowed) {
              denied(client, 'subscribe', decision.reason ?? 'not allowed', { topic: subscription.topic });
              return done(null, null); // SUBACK 0x80 for this filter
            }
            done(null, subscription);
          },
        },
  );
  aedes.on('clientError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'mqtt client error'));
  aedes.on('client', (client) => log.debug({ clientId: client.id }, 'mqtt client connected'));
  aedes.on('clientDisconnect', (client) => log.debug({ clientId: client.id }, 'mqtt client disconnected'));

  const maxPacketBytes = options.maxPacketBytes ?? MAX_MESSAGE_BYTES;
  // aedes pulls bytes with conn.read(): meter them there and close the connection at an oversized packet's header.
  const handle = (socket: Socket) => {
    // Requests and replies are small packets: without it, Nagle and delayed ACKs hold each for up to 40 ms.
    socket.setNoDelay(true);
    const meter = new PacketSizeMeter(maxPacketBytes);
    const read = socket.read.bind(socket);
    socket.read = (size?: number) => {
      const buf = read(size) as Buffer | null;
      if (buf === null || socket.destroyed) return buf;
      const tooLarge = meter.feed(buf);
      if (tooLarge === undefined) return buf;
      log.warn({ remote: socket.remoteAddress, bytes: tooLarge, maxPacketBytes }, 'mqtt packet too large: connection closed');
      socket.destroy();
      return null;
    };
    aedes.handle(socket);
  };
  const server: Server = options.tls === undefined ? createServer(handle) : createTlsServer({ cert: options.tls.cert, key: options.tls.key, minVersion: 'TLSv1.2' }, handle);
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
    async close() {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
