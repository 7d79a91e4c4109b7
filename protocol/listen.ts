/** Binding a daemon's server socket: one place for the "cannot listen" error every daemon reports the same way. */
import type { Server } from 'node:net';
import { HerdError } from './errors.ts';

/** Listens on host:port and resolves with the port bound (port 0 picks a free one); BAD_CONFIG naming `what` and the fix otherwise. */
export async function listenOn(server: Server, host: string, port: number, what: string, fix = ''): Promise<number> {
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    throw new HerdError('BAD_CONFIG', `${what} cannot listen on ${host}:${port}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}${fix === '' ? '' : ` (${fix})`}`, { cause: err });
  }
  const bound = server.address();
  return typeof bound === 'object' && bound !== null ? bound.port : port;
}
