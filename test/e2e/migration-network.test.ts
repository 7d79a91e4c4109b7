/**
 * Network-bound containers end to end: on the lab's macvlan network (one L2 across the
 * hosts), a migrated container keeps its IP and MAC, an HTTP server answers on the same
 * IP after the move, and an established TCP connection survives it (CRIU's
 * tcp-established, enabled in /etc/criu/runc.conf by the provisioning).
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LabLayout } from '../../control/lab/layout.ts';
import { placements } from '../support/containers.ts';
import { herd, herdOk } from '../support/herd-cli.ts';
import { dockerOf, readyLab } from '../support/lab.ts';

function lineReader(socket: Socket): () => Promise<string> {
  let buffer = '';
  const waiting: ((line: string) => void)[] = [];
  socket.on('data', (d: Buffer) => {
    buffer += d.toString();
    let i: number;
    while ((i = buffer.indexOf('\n')) >= 0 && waiting.length > 0) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 1);
      waiting.shift()!(line);
    }
  });
  return () =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no echo within 10 s')), 10_000);
      waiting.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
}

async function networkOf(layout: LabLayout, hostId: string, name: string): Promise<{ ip: string; mac: string }> {
  const info = await dockerOf(layout, hostId).getContainer(name).inspect();
  const endpoint = info.NetworkSettings.Networks['herd-lan']!;
  return { ip: endpoint.IPAddress, mac: endpoint.MacAddress };
}

describe('network-bound containers (macvlan, lab)', () => {
  let layout: LabLayout;
  let socket: Socket | undefined;
  beforeAll(async () => {
    layout = await readyLab(2);
  });
  afterAll(async () => {
    socket?.destroy();
    // Leave the lab as found: later suites and benchmarks count the lab's containers.
    for (const name of ['net-web', 'net-echo']) await herd(['rm', '--force', name]).catch(() => undefined);
  });

  it('an HTTP server keeps its IP and MAC and answers on the same IP after the move', async () => {
    const ip = '10.213.0.202';
    await herdOk(['run', '--host', 'h1', '--name', 'net-web', '--network', 'herd-lan', '--ip', ip, 'herd/busybox', 'httpd', '-f', '-p', '80', '-h', '/etc']);
    const before = await networkOf(layout, 'h1', 'net-web');
    expect(before.ip).toBe(ip);
    // httpd may not listen yet when `herd run` returns.
    await expect.poll(() => fetch(`http://${ip}/passwd`).then((r) => r.text(), (err: Error) => err.message), { timeout: 10_000 }).toContain('root:x:0:0');
    const r = await herd(['migrate', 'net-web', '--to', 'h2']);
    expect(r.code, r.stderr).toBe(0);
    expect((await placements(layout, 'net-web')).map((p) => p.hostId)).toEqual(['h2']);
    expect(await networkOf(layout, 'h2', 'net-web')).toEqual(before);
    expect(await (await fetch(`http://${ip}/passwd`)).text()).toContain('root:x:0:0');
  });

  it('an established TCP connection survives the migration', async () => {
    const ip = '10.213.0.201';
    await herdOk(['run', '--host', 'h1', '--name', 'net-echo', '--network', 'herd-lan', '--ip', ip, 'herd/busybox', 'nc', '-ll', '-p', '9000', '-e', '/bin/cat']);
    let s: Socket | undefined;
    for (let i = 0; i < 50 && s === undefined; i++) {
      s = await new Promise<Socket | undefined>((resolve) => {
        const c = connect(9000, ip, () => resolve(c));
        c.once('error', () => resolve(undefined));
      });
      if (s === undefined) await new Promise((res) => setTimeout(res, 100));
    }
    socket = s!;
    const nextLine = lineReader(socket);
    socket.write('before the move\n');
    expect(await nextLine()).toBe('before the move');
    const r = await herd(['migrate', 'net-echo', '--to', 'h2']);
    expect(r.code, r.stderr).toBe(0);
    expect((await placements(layout, 'net-echo')).map((p) => p.hostId)).toEqual(['h2']);
    // Same connection, no reconnect: the echo now comes from h2.
    socket.write('after the move\n');
    expect(await nextLine()).toBe('after the move');
    expect((await networkOf(layout, 'h2', 'net-echo')).ip).toBe(ip);
  });
});
