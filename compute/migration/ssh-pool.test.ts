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
  /** sshd's MaxSessions: a session over it is refused as administratively prohibited. */
  maxSessions = Infinity;
  exec(_command: string, cb: (err: Error | undefined, channel?: FakeChannel) => void): void {
    setImmediate(() => {
      if (this.refuse) return cb(new Error('open failed'));
      if (this.open.size >= this.maxSessions) return cb(Object.assign(new Error('(SSH) Channel open failure: open failed'), { reason: 1 }));
      const ch = new FakeChannel();
      this.open.add(ch);
      this.maxOpen = Math.max(this.maxOpen, this.open.size);
      ch.once('close', () => this.open.delete(ch));
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
