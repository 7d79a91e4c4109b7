/**
 * Session accounting of the SSH pool, with fake ssh2 clients (the lab's sshd, which keeps
 * sshd's default MaxSessions, carries it end to end: test/e2e/migration.test.ts runs four
 * migrations between two hosts at once).
 */
import { EventEmitter } from 'node:events';
import type { Client } from 'ssh2';
import { describe, expect, it } from 'vitest';
import { SshPool } from './ssh-pool.ts';

class FakeChannel extends EventEmitter {
  close(): void {
    this.emit('close');
  }
}

class FakeClient extends EventEmitter {
  readonly open = new Set<FakeChannel>();
  maxOpen = 0;
  ended = false;
  refuse = false;
  /** sshd's MaxSessions: a session over it is refused as OpenSSH 9.2 refuses it (SSH_OPEN_CONNECT_FAILED, "open failed"). */
  maxSessions = Infinity;
  /** Closed sessions whose process sshd has not reaped yet: they still count against MaxSessions. */
  unreaped = 0;
  /** Whether a closed session keeps its slot (its process still runs after the close). */
  linger = false;
  exec(_command: string, cb: (err: Error | undefined, channel?: FakeChannel) => void): void {
    setImmediate(() => {
      if (this.refuse) return cb(new Error('open failed'));
      if (this.open.size + this.unreaped >= this.maxSessions) return cb(Object.assign(new Error('(SSH) Channel open failure: open failed'), { reason: 2 }));
      const ch = new FakeChannel();
      this.open.add(ch);
      this.maxOpen = Math.max(this.maxOpen, this.open.size);
      ch.once('close', () => {
        this.open.delete(ch);
        if (this.linger) this.unreaped++;
      });
      cb(undefined, ch);
    });
  }
  end(): void {
    this.ended = true;
    this.emit('close');
  }
}

function pool(limit = 10, fail = () => false, maxSessions = Infinity) {
  const clients: FakeClient[] = [];
  const p = new SshPool({ user: 'root', privateKeyPath: '/k', knownHostsPath: '/kh' }, limit, async () => {
    if (fail()) throw new Error('connect refused');
    const c = new FakeClient();
    c.maxSessions = maxSessions;
    clients.push(c);
    return c as unknown as Client;
  });
  return { p, clients };
}

describe('SSH pool', () => {
  it('opens another connection when the open ones are full, never more sessions on one than allowed; extra ones go once empty', async () => {
    const { p, clients } = pool(10);
    const peer = p.peer('10.0.0.2', 22);
    const channels = await Promise.all(Array.from({ length: 25 }, () => peer.exec('herd-receive')));
    expect(clients.length).toBe(3);
    expect(clients.map((c) => c.maxOpen)).toEqual([10, 10, 5]);
    for (const ch of channels) (ch as unknown as FakeChannel).close();
    await new Promise((r) => setImmediate(r));
    expect(clients.map((c) => c.ended)).toEqual([false, true, true]);
    // The first stays for the next migration.
    await peer.exec('herd-receive');
    expect(clients.length).toBe(3);
    expect(clients[0]?.open.size).toBe(1);
  });

  it('a peer that allows fewer sessions than assumed: a refused one goes on another connection, which takes no more than the peer allowed', async () => {
    const { p, clients } = pool(10, () => false, 3);
    const peer = p.peer('h', 22);
    await Promise.all(Array.from({ length: 25 }, () => peer.exec('herd-receive')));
    expect(clients.every((c) => c.maxOpen <= 3)).toBe(true);
    expect(clients.reduce((n, c) => n + c.open.size, 0)).toBe(25);
  });

  it("a connection full of sessions sshd has not reaped: the next session goes on a new connection, and the full one goes", async () => {
    const { p, clients } = pool(10, () => false, 10);
    const peer = p.peer('h', 22);
    const first = clients;
    const channels = await Promise.all(Array.from({ length: 10 }, () => peer.exec('herd-receive')));
    (first[0] as FakeClient).linger = true;
    for (const ch of channels) (ch as unknown as FakeChannel).close();
    // Our count says the first connection is empty; sshd still counts 10 sessions on it.
    const next = await Promise.all(Array.from({ length: 12 }, () => peer.exec('herd-receive')));
    expect(next.length).toBe(12);
    expect(clients[0]?.ended).toBe(true);
    expect(clients.slice(1).reduce((n, c) => n + c.open.size, 0)).toBe(12);
    expect(clients.slice(1).every((c) => c.maxOpen <= 10)).toBe(true);
    // A slot sshd had not reaped is not a lower MaxSessions: the new connections still take 10.
    expect(clients.length).toBe(3);
  });

  it('a connection that refused a session while others ran on it takes no more; it goes once they end, first or not', async () => {
    const { p, clients } = pool(10, () => false, 10);
    const peer = p.peer('h', 22);
    const held = await Promise.all(Array.from({ length: 4 }, () => peer.exec('a')));
    const c0 = clients[0] as FakeClient;
    c0.unreaped = 6;
    const more = await Promise.all(Array.from({ length: 3 }, () => peer.exec('b')));
    expect(c0.open.size).toBe(4);
    expect(clients[1]?.open.size).toBe(3);
    for (const ch of held) (ch as unknown as FakeChannel).close();
    await new Promise((r) => setImmediate(r));
    expect(c0.ended).toBe(true);
    expect(clients[1]?.ended).toBe(false);
    for (const ch of more) (ch as unknown as FakeChannel).close();
    await new Promise((r) => setImmediate(r));
    // The peer's first now: it stays.
    expect(clients[1]?.ended).toBe(false);
  });

  it('a session that cannot open gives its place back', async () => {
    const { p, clients } = pool(2);
    const peer = p.peer('h', 22);
    await peer.exec('a');
    (clients[0] as FakeClient).refuse = true;
    await expect(peer.exec('b')).rejects.toThrow('open failed');
    (clients[0] as FakeClient).refuse = false;
    await peer.exec('c');
    expect(clients.length).toBe(1);
    expect(clients[0]?.open.size).toBe(2);
  });

  it('forgets a connection that failed or closed: the next session connects again', async () => {
    let refuse = true;
    const { p, clients } = pool(10, () => refuse);
    const peer = p.peer('h', 22);
    await expect(peer.exec('a')).rejects.toThrow('connect refused');
    refuse = false;
    await p.connect('h', 22);
    expect(clients.length).toBe(1);
    await peer.exec('b');
    expect(clients.length).toBe(1);
    (clients[0] as FakeClient).end();
    await peer.exec('c');
    expect(clients.length).toBe(2);
    expect(clients[1]?.open.size).toBe(1);
  });

  it("drop ends all of a peer's connections, not another peer's", async () => {
    const { p, clients } = pool(1);
    await Promise.all([p.peer('a', 22).exec('x'), p.peer('a', 22).exec('y'), p.peer('b', 22).exec('z')]);
    expect(clients.length).toBe(3);
    p.drop('a', 22);
    await new Promise((r) => setImmediate(r));
    expect(clients.map((c) => c.ended).sort()).toEqual([false, true, true]);
    p.close();
    await new Promise((r) => setImmediate(r));
    expect(clients.every((c) => c.ended)).toBe(true);
  });
});
