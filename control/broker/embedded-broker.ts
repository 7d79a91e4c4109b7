/**
 * The embedded MQTT 3.1.1 broker (aedes) that the control daemon runs by default.
 * Built separately from listening so that tests can attach clients over any stream.
 */
import { createServer, type Server } from 'node:net';
import { Aedes } from 'aedes';
import type { Logger } from 'pino';
import { HerdError } from '../../protocol/errors.ts';

export interface EmbeddedBroker {
  readonly aedes: Aedes;
  /** host:port actually bound (port 0 in the config picks a free one). */
  readonly address: { host: string; port: number };
  readonly url: string;
  close(): Promise<void>;
}

export async function startEmbeddedBroker(options: { host: string; port: number }, log: Logger): Promise<EmbeddedBroker> {
  const aedes = await Aedes.createBroker();
  aedes.on('clientError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'mqtt client error'));
  aedes.on('client', (client) => log.debug({ clientId: client.id }, 'mqtt client connected'));
  aedes.on('clientDisconnect', (client) => log.debug({ clientId: client.id }, 'mqtt client disconnected'));
  const server: Server = createServer(aedes.handle);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    aedes.close();
    const code = (err as NodeJS.ErrnoException).code;
    throw new HerdError('BAD_CONFIG', `embedded broker cannot listen on ${options.host}:${options.port}: ${code ?? (err as Error).message}`, { cause: err });
  }
  const bound = server.address();
  const port = typeof bound === 'object' && bound !== null ? bound.port : options.port;
  const host = options.host === '0.0.0.0' ? '127.0.0.1' : options.host;
  log.info({ host: options.host, port }, 'embedded MQTT broker listening');
  return {
    aedes,
    address: { host: options.host, port },
    url: `mqtt://${host}:${port}`,
    async close() {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
