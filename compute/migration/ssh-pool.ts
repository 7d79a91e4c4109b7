/**
 * SSH sessions to peer hosts, on connections opened on demand and reused across migrations.
 * Every receiver, pruner and fence is a session of its own (an exec channel), and sshd allows
 * only MaxSessions of them per connection: 10 by default. One migration holds up to 2 + 5 per
 * carried tree at once (the checkpoint's and the export's receivers; each tree's receiver, and a
 * pre-copied tree's archive, block and delta-block receivers and its pruner), and concurrent
 * migrations to one peer add up, so a
 * peer gets another connection whenever its open ones are full; one that empties goes again,
 * but the peer's first. A session the peer refuses as one too many goes on another connection:
 * sshd counts a session until its process is reaped, which may be after the session closed, so
 * a connection that refused one takes no more and goes once its sessions end, first or not.
 */
import type { Client, ClientChannel } from 'ssh2';
import { connectSsh, type SshSessions, type SshTarget } from './ssh-transfer.ts';

/** Sessions per connection: sshd's default MaxSessions (the lab's sshd keeps the default too). */
export const SESSIONS_PER_CONNECTION = 10;

/** How often a refused session is tried again on another connection, after a pause that doubles (from REFUSED_PAUSE_MS: sshd frees a closed session's slot late on a loaded host). */
const REFUSED_RETRIES = 8;
const REFUSED_PAUSE_MS = 20;

interface Pooled {
  client: Promise<Client>;
  /** Sessions open or being opened on it. */
  sessions: number;
  /** Sessions the peer accepted and that are still open. */
  open: number;
  /** The peer refused a session on it: it takes no more, and goes once its sessions end. */
  refused: boolean;
}

export class SshPool {
  private readonly peers = new Map<string, Pooled[]>();
  /** Sessions per connection a peer takes, once it refused one: fewer than sessionsPerConnection (a lower MaxSessions, or a slot sshd had not freed yet). */
  private readonly limits = new Map<string, number>();

  constructor(
    private readonly identity: Omit<SshTarget, 'host' | 'port'>,
    private readonly sessionsPerConnection = SESSIONS_PER_CONNECTION,
    private readonly openConnection: (target: SshTarget) => Promise<Client> = connectSsh,
  ) {}

  /** The peer's sessions (its connections are opened when a session needs one). */
  peer(host: string, port: number): SshSessions {
    return { exec: (command) => this.exec(host, port, command) };
  }

  /** Resolves once a connection to the peer is open (reusing one when there is): a check that needs no session. */
  async connect(host: string, port: number): Promise<void> {
    await (this.peers.get(key(host, port))?.[0] ?? this.open(host, port)).client;
  }

  /** Forgets the peer's connections after a failure, closing them (their sessions fail), so that the next use reconnects. */
  drop(host: string, port: number): void {
    for (const c of this.peers.get(key(host, port)) ?? []) this.remove(key(host, port), c);
  }

  close(): void {
    for (const [k, list] of this.peers) for (const c of list) this.remove(k, c);
  }

  /** Takes a connection out of the pool and ends it (a no-op for one that already closed). */
  private remove(k: string, pooled: Pooled): void {
    const rest = (this.peers.get(k) ?? []).filter((c) => c !== pooled);
    if (rest.length > 0) this.peers.set(k, rest);
    else this.peers.delete(k);
    void pooled.client.then((client) => client.end()).catch(() => undefined);
  }

  private open(host: string, port: number): Pooled {
    const k = key(host, port);
    const pooled: Pooled = { client: this.openConnection({ ...this.identity, host, port }), sessions: 0, open: 0, refused: false };
    const list = this.peers.get(k) ?? [];
    list.push(pooled);
    this.peers.set(k, list);
    const forget = () => this.remove(k, pooled);
    pooled.client.then(
      (client) => {
        client.once('close', forget);
        // on, not once: ssh2 may emit several errors, and an unheard one would crash the daemon.
        client.on('error', forget);
      },
      forget,
    );
    return pooled;
  }

  private async exec(host: string, port: number, command: string, refused = 0): Promise<ClientChannel> {
    // Claimed in the same tick as it is chosen, so that concurrent sessions never overfill a connection.
    const limit = this.limits.get(key(host, port)) ?? this.sessionsPerConnection;
    const pooled = (this.peers.get(key(host, port)) ?? []).find((c) => !c.refused && c.sessions < limit) ?? this.open(host, port);
    pooled.sessions++;
    const release = () => {
      pooled.sessions--;
      const list = this.peers.get(key(host, port));
      // An extra connection that emptied goes, and so does one the peer refused a session on;
      // the peer's first otherwise stays for the next migration.
      if (pooled.sessions === 0 && list?.includes(pooled) && (list[0] !== pooled || pooled.refused)) this.remove(key(host, port), pooled);
    };
    let client: Client;
    try {
      client = await pooled.client;
    } catch (err) {
      release();
      throw err;
    }
    return new Promise((resolve, reject) => {
      client.exec(command, (err, channel) => {
        if (err) {
          // The peer refused the session (a channel open failure carries its reason code; ssh2's
          // own errors do not). sshd refuses a session only when the connection has no slot left,
          // and OpenSSH 9.2 says so with SSH_OPEN_CONNECT_FAILED, "open failed", not
          // ADMINISTRATIVELY_PROHIBITED (seen in the lab). It was one too many: a host may allow
          // fewer than the default, and sshd holds a closed session's slot until its process is
          // reaped. This connection takes no more, the peer's others no more than it holds now
          // (when it holds any: one that holds none is full of sessions sshd has yet to reap),
          // and the session goes on another.
          const refusedByPeer = typeof (err as Error & { reason?: unknown }).reason === 'number';
          if (refusedByPeer) {
            pooled.refused = true;
            if (pooled.open > 0) this.limits.set(key(host, port), Math.min(limit, pooled.open));
          }
          release();
          if (refusedByPeer && refused < REFUSED_RETRIES) {
            setTimeout(() => resolve(this.exec(host, port, command, refused + 1)), REFUSED_PAUSE_MS * 2 ** refused);
          } else reject(err);
          return;
        }
        pooled.open++;
        channel.once('close', () => {
          pooled.open--;
          release();
        });
        resolve(channel);
      });
    });
  }
}

const key = (host: string, port: number) => `${host}:${port}`;
