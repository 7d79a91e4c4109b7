import { connectSsh, openReceiver, tarDirectory } from './compute/migration/ssh-transfer.ts';
const junkMB = Number(process.argv[2] ?? 0);
const junk: object[] = [];
(globalThis as any).junk = junk;
for (let i = 0; i < junkMB * 1024 * 1024 / 100; i++) junk.push({ a: i, b: String(i), c: [i, i + 1] });
const conn = await connectSsh({ host: '10.213.0.12', port: 22, user: 'root', privateKeyPath: '/var/lib/herd-lab/h1/id_ed25519', knownHostsPath: '/var/lib/herd-lab/ssh/known_hosts' });
const out: string[] = [];
for (let i = 0; i < 3; i++) {
  const r = await openReceiver(conn, { kind: 'plain', compression: 'none' });
  const t = performance.now();
  console.error('SEND START');
  await r.send(`/var/lib/herd-lab/h2/docker/tmpx${i}`, tarDirectory('/dev/shm/aaa', { xattrs: false }), 'x');
  console.error('SEND END');
  out.push((performance.now() - t).toFixed(0));
}
console.log(junk.length, `junk ${junkMB} MB: ${out.join(' ')} ms`);
conn.end();
