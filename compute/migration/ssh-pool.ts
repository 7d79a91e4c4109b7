/** One SSH connection per peer host, opened on demand and reused across migrations. */
import type { Client } from 'ssh2';
import { connectSsh, type SshTarget } from './ssh-transfer.ts';

export class SshPool {
  private readonly connections = new Map<string, Promise<Client>>();

  constructor(private readonly identity: Omit<SshTarget, 'host' | 'port'>) {}

  get(host: string, port: number): Promise<Client> {
    const key = `${host}:${port}`;
    let conn = this.connections.get(key);
    if (conn === undefined) {
      conn = connectSsh({ ...this.identity, host, port });
      this.connections.set(key, conn);
      conn.then(
        (c) => {
          const drop = () => {
            if (this.connections.get(key) === conn) this.connections.delete(key);
          };
          c.once('close', drop);
          // on, not once: ssh2 may emit several errors, and an unheard one would crash the daemon.
          c.on('error', drop);
        },
        () => this.connections.delete(key),
      );
    }
    return conn;
  }

  /** Forgets a connection after a failure so the next use reconnects. */
  drop(host: string, port: number): void {
    const key = `${host}:${port}`;
    const conn = this.connections.get(key);
    this.connections.delete(key);
    void conn?.then((c) => c.end()).catch(() => undefined);
  }

  close(): void {
    for (const conn of this.connections.values()) void conn.then((c) => c.end()).catch(() => undefined);
    this.connections.clear();
  }
}
