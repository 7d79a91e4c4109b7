/**
 * Memory pages before the freeze and checkpoint images by pages (bin/herd-pages.py), each
 * stream applied through the transfer key's real forced command (`herd-pages`): the prior of a
 * real running process holds its distinct resident pages; an image directory rebuilt from a page
 * stream equals the source's byte for byte, the pages the prior holds cross as references and
 * zero pages as holes; a real CRIU checkpoint arrives without the zero pages of private anonymous
 * memory and CRIU restores the same memory from it (the tool run directly, by
 * testing/criu-zero-pages.py); malformed or hostile streams fail without writing outside the
 * directory.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { collect } from '../../test/support/trees.ts';
import { MemoryPrior, openImagesSender, PAGES_TOOL, priorStream } from './memory-precopy.ts';
import { RECEIVE_COMMAND } from './ssh-transfer.ts';

const SCRIPT = resolve(import.meta.dirname, '../../bin/herd-ssh-command');
const base = mkdtempSync(join(tmpdir(), 'herd-pages-test-'));
const conf = join(base, 'receiver.conf');
writeFileSync(conf, `root ${join(base, 'data')}\n`);
const priors: MemoryPrior[] = [];
afterAll(() => {
  for (const p of priors) p.remove();
  rmSync(base, { recursive: true, force: true });
});

const PAGE = 4096;
const MiB = 1024 * 1024;

/** Runs the forced command as sshd would, with `dir` and `payload` on stdin. */
const receive = (dir: string, payload: Buffer) =>
  spawnSync(SCRIPT, [conf], { input: Buffer.concat([Buffer.from(`${dir}\n`), payload]), env: { SSH_ORIGINAL_COMMAND: RECEIVE_COMMAND.pages, PATH: process.env.PATH ?? '' }, maxBuffer: 512 * MiB });
const pagesOf = (data: Buffer) => Array.from({ length: Math.floor(data.length / PAGE) }, (_, i) => data.subarray(i * PAGE, (i + 1) * PAGE));

/** A prior's index (bin/herd-pages.py): its header, then a digest per page of the prior. */
function readIndex(path: string): { algorithm: string; seed: bigint; digests: string[] } {
  const data = readFileSync(path);
  expect(data.subarray(0, 8).toString()).toBe('HERDIDX1');
  const algorithm = data.subarray(8, 16).toString().replace(/\0+$/, '');
  const size = algorithm === 'sha256' ? 32 : 16;
  const body = data.subarray(24);
  return { algorithm, seed: data.readBigUInt64BE(16), digests: Array.from({ length: body.length / size }, (_, i) => body.subarray(i * size, (i + 1) * size).toString('hex')) };
}

/**
 * A prior made of `pages` as the source's tool would have sent it: the stream and its index,
 * digested by sha256 (what a host without python3-xxhash makes; the sender follows the index).
 */
function priorOf(pages: Buffer[]): { stream: Buffer; prior: MemoryPrior } {
  const prior = new MemoryPrior();
  priors.push(prior);
  const head = Buffer.alloc(24);
  head.write('HERDIDX1', 0);
  head.write('sha256', 8);
  writeFileSync(prior.index, Buffer.concat([head, ...pages.map((p) => createHash('sha256').update(p).digest())]));
  const count = Buffer.alloc(4);
  count.writeUInt32BE(pages.length);
  const total = Buffer.alloc(8);
  total.writeBigUInt64BE(BigInt(pages.length));
  return { stream: Buffer.concat([Buffer.from('HERDPRI1'), Buffer.from('P'), count, ...pages, Buffer.from('E'), total]), prior };
}

function newDir(name: string): { source: string; target: string } {
  const source = join(base, name);
  const target = join(base, 'data', name);
  mkdirSync(source, { recursive: true });
  mkdirSync(target, { recursive: true });
  return { source, target };
}

describe('memory pages (bin/herd-pages.py through the forced command)', () => {
  it("a running process's prior holds its distinct resident pages once, zero pages left out, digested by XXH3", { timeout: 30_000 }, async () => {
    // 2 MiB of random pages, each twice (a copy in a second mapping), and 2 MiB of zeros written (resident).
    const program = ['import mmap, os, sys', 'a = os.urandom(2 << 20)', 'm = mmap.mmap(-1, 2 << 20); m.write(a)', 'c = mmap.mmap(-1, 2 << 20); c.write(a)', 'z = mmap.mmap(-1, 2 << 20)', 'for i in range(0, 2 << 20, 4096): z[i] = 0', 'sys.stdout.buffer.write(a); sys.stdout.flush(); sys.stdin.read()'];
    const child = spawn('python3', ['-c', program.join('\n')], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      const chunks: Buffer[] = [];
      await new Promise<void>((done) => child.stdout.on('data', (d: Buffer) => (chunks.push(d), Buffer.concat(chunks).length >= 2 * MiB && done())));
      const content = Buffer.concat(chunks);
      const prior = new MemoryPrior();
      priors.push(prior);
      const stream = await collect(priorStream([child.pid as number, 999_999_999], prior));
      const { algorithm, digests } = readIndex(prior.index);
      expect(algorithm, 'python3-xxhash is missing: install it (scripts/setup); pages are matched by sha256 without it, ~9x slower').toBe('xxh3-128');
      expect(new Set(digests).size, 'each page once').toBe(digests.length);
      // The random content's pages once, not twice, plus the interpreter's own memory; no zero page.
      const pages = Math.floor(stream.length / PAGE); // and a few bytes of records
      expect(digests.length).toBe(pages);
      expect(pages).toBeGreaterThan(512);
      expect(pages).toBeLessThan(512 + 4096);
      const { source, target } = newDir('prior-of-a-process');
      const r = receive(target, stream);
      expect(r.status, r.stderr.toString()).toBe(0);
      expect(statSync(join(target, '.herd-prior')).size).toBe(digests.length * PAGE);
      // Every page of the content is in the prior: as an image, it crosses as references alone.
      writeFileSync(join(source, 'pages-1.img'), content);
      const sender = openImagesSender();
      sender.matchAgainst(prior);
      const images = await collect(sender.images(source));
      expect(images.length, 'references, not bytes').toBeLessThan(PAGE);
      expect(receive(target, images).status).toBe(0);
      expect(readFileSync(join(target, 'pages-1.img')).equals(content)).toBe(true);
    } finally {
      child.kill();
    }
  });

  it('a second prior of the same pages has other digests (a seed of its own)', { timeout: 30_000 }, async () => {
    const child = spawn('python3', ['-c', 'import mmap, os, sys\nm = mmap.mmap(-1, 1 << 20); m.write(os.urandom(1 << 20))\nsys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.read()'], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((done) => child.stdout.once('data', () => done()));
      const indexes = [];
      for (let i = 0; i < 2; i++) {
        const prior = new MemoryPrior();
        priors.push(prior);
        await collect(priorStream([child.pid as number], prior));
        indexes.push(readIndex(prior.index));
      }
      const [a, b] = indexes as [ReturnType<typeof readIndex>, ReturnType<typeof readIndex>];
      expect(a.seed).not.toBe(b.seed);
      expect(a.digests.length).toBeGreaterThan(256);
      const other = new Set(b.digests);
      expect(a.digests.filter((d) => other.has(d))).toEqual([]);
    } finally {
      child.kill();
    }
  });

  it('an image directory equals the source byte for byte; pages the prior holds go as references, zeros as holes', { timeout: 30_000 }, async () => {
    const { source, target } = newDir('images');
    const known = Array.from({ length: 256 }, () => randomBytes(PAGE));
    const changed = Array.from({ length: 16 }, () => randomBytes(PAGE));
    const zero = Buffer.alloc(PAGE);
    // Pages in another order than the prior's, repeated, runs of zeros, changed pages, and a tail.
    // (3000 references out of order: more than one gathered write holds.)
    const scattered = Array.from({ length: 3000 }, (_, i) => known[(i * 7) % 256] as Buffer);
    const pages = Buffer.concat([...known.slice(100), ...Array<Buffer>(300).fill(zero), ...known.slice(0, 100), known[5] as Buffer, ...changed, ...scattered, ...known.slice(10, 20), zero]);
    writeFileSync(join(source, 'pages-1.img'), pages);
    writeFileSync(join(source, 'pages-2.img'), Buffer.concat([...changed, Buffer.from('not a whole page')]));
    writeFileSync(join(source, 'core-1.img'), randomBytes(3000));
    writeFileSync(join(source, 'empty.img'), '');
    writeFileSync(join(source, 'descriptors.json'), '["/dev/null"]');
    chmodSync(join(source, 'descriptors.json'), 0o600);
    const { stream: priorStreamBytes, prior } = priorOf(known);
    expect(receive(target, priorStreamBytes).status).toBe(0);

    const sender = openImagesSender();
    sender.matchAgainst(prior);
    const images = await collect(sender.images(source));
    const r = receive(target, images);
    expect(r.status, r.stderr.toString()).toBe(0);
    expect(readdirSync(target).sort(), 'the prior is gone').toEqual(readdirSync(source).sort());
    for (const name of readdirSync(source)) {
      expect(readFileSync(join(target, name)).equals(readFileSync(join(source, name))), name).toBe(true);
      expect(statSync(join(target, name)).mode & 0o777, name).toBe(statSync(join(source, name)).mode & 0o777);
    }
    // 32 changed pages, the tail and the small files as bytes; the rest as references (9 bytes each) and holes.
    expect(images.length).toBeLessThan(32 * PAGE + 3000 + 4096 + 3000 * 9);
    expect(statSync(join(target, 'pages-1.img')).blocks * 512, 'the zeros are a hole').toBeLessThan(pages.length - 250 * PAGE);

    // Without a prior the same directory arrives whole, its zeros still as holes.
    const { source: again, target: bare } = newDir('images-without-prior');
    writeFileSync(join(again, 'pages-1.img'), pages);
    const plain = await collect(openImagesSender().images(again));
    expect(plain.length).toBeLessThan(pages.length - 300 * PAGE + 4096);
    expect(receive(bare, plain).status).toBe(0);
    expect(readFileSync(join(bare, 'pages-1.img')).equals(pages)).toBe(true);
  });

  it("a real CRIU checkpoint arrives without the zero pages of private anonymous memory, and restores to the same memory: a page over a privately mapped file stays, whatever it holds; parent and forked child alike", { timeout: 60_000 }, () => {
    const criu = spawnSync('criu', ['--version']);
    expect(criu.error === undefined && criu.status === 0, 'CRIU is missing: install it (scripts/setup)').toBe(true);
    const work = mkdtempSync(join(base, 'criu-'));
    const run = spawnSync('/usr/bin/python3', ['-I', '-S', resolve(import.meta.dirname, 'testing/criu-zero-pages.py'), PAGES_TOOL, work], { timeout: 50_000 });
    expect(run.status, run.stderr.toString()).toBe(0);
    const report = JSON.parse(run.stdout.toString()) as {
      files: Record<string, { dumped: number; received: number; dumpedPages?: number; receivedPages?: number }>;
      parented: { pages: string; dumped: number; received: number };
      verdicts: { parent: string; child: string };
    };
    // Each process hashed its memory before the dump and again after the restore from the received images.
    expect(report.verdicts).toEqual({ parent: 'same', child: 'same' });
    const pagemaps = Object.entries(report.files).filter(([name]) => name.startsWith('pagemap-'));
    const pagesFiles = Object.entries(report.files).filter(([name]) => name.startsWith('pages-'));
    expect(pagemaps).toHaveLength(2);
    expect(pagesFiles).toHaveLength(2);
    // The workload wrote at least 120 zero pages into its anonymous memory (the interpreter has more).
    for (const [name, f] of pagemaps) expect((f.dumpedPages ?? 0) - (f.receivedPages ?? 0), name).toBeGreaterThanOrEqual(120);
    for (const [name, f] of pagesFiles) expect(f.dumped - f.received, name).toBeGreaterThanOrEqual(120 * PAGE);
    // A pagemap that names a parent image (CRIU's incremental dumps) is not the simple kind: its pages arrive as sent.
    expect(report.parented.received, report.parented.pages).toBe(report.parented.dumped);
  });

  it("images named like CRIU's that are not what they say (cut, garbage, fields missing) arrive as sent", async () => {
    const u32 = (n: number) => Buffer.from([n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24]);
    const image = (magic: number, ...entries: Buffer[]) => Buffer.concat([u32(0x54564319), u32(magic), ...entries.flatMap((e) => [u32(e.length), e])]);
    const MM = 0x57492820;
    const PAGEMAP = 0x56084025;
    const pages = Buffer.concat([randomBytes(PAGE), Buffer.alloc(8 * PAGE), randomBytes(PAGE)]);
    const dirs: [string, Record<string, Buffer>][] = [
      ['cut and garbage', { 'mm-7.img': Buffer.concat([u32(0x54564319), u32(MM), u32(200), randomBytes(40)]), 'pagemap-7.img': randomBytes(200) }],
      ['a pagemap head without its pages id', { 'mm-7.img': image(MM, Buffer.alloc(0)), 'pagemap-7.img': image(PAGEMAP, Buffer.alloc(0)) }],
      ['a pagemap entry without its address', { 'mm-7.img': image(MM, Buffer.alloc(0)), 'pagemap-7.img': image(PAGEMAP, Buffer.from([0x08, 0x01]), Buffer.from([0x10, 0x0a])) }],
    ];
    for (const [what, files] of dirs) {
      const { source, target } = newDir(`not-criu-images-${what.replace(/ /g, '-')}`);
      for (const [name, content] of Object.entries(files)) writeFileSync(join(source, name), content);
      writeFileSync(join(source, 'pages-1.img'), pages);
      const r = receive(target, await collect(openImagesSender().images(source)));
      expect(r.status, `${what}: ${r.stderr.toString()}`).toBe(0);
      for (const name of readdirSync(source)) expect(readFileSync(join(target, name)).equals(readFileSync(join(source, name))), `${what}: ${name}`).toBe(true);
    }
  });

  it('an image directory holding anything but regular files fails at the source, naming it', async () => {
    const { source } = newDir('not-files');
    writeFileSync(join(source, 'core-1.img'), 'x');
    symlinkSync('/etc/passwd', join(source, 'link.img'));
    await expect(collect(openImagesSender().images(source))).rejects.toThrow(/link\.img|Too many levels|symbolic/);
    const { source: withDir } = newDir('with-dir');
    mkdirSync(join(withDir, 'sub'));
    await expect(collect(openImagesSender().images(withDir))).rejects.toThrow(/sub/);
  });

  it('an index the sender cannot read fails the send, naming the fault', async () => {
    const { source } = newDir('bad-index');
    writeFileSync(join(source, 'pages-1.img'), randomBytes(PAGE));
    const cases: [Buffer, RegExp][] = [
      [Buffer.from('not an index at all, long enough'), /not an index of a prior/],
      [Buffer.concat([Buffer.from('HERDIDX1md5\0\0\0\0\0'), Buffer.alloc(8), Buffer.alloc(16)]), /digested by 'md5' cannot be matched/],
      [Buffer.concat([Buffer.from('HERDIDX1sha256\0\0'), Buffer.alloc(8), Buffer.alloc(33)]), /not a whole number of 32-byte digests/],
    ];
    for (const [index, message] of cases) {
      const prior = new MemoryPrior();
      priors.push(prior);
      writeFileSync(prior.index, index);
      const sender = openImagesSender();
      sender.matchAgainst(prior);
      await expect(collect(sender.images(source))).rejects.toThrow(message);
    }
  });

  it('refuses hostile or broken streams without writing outside the directory', () => {
    const { target } = newDir('hostile');
    const file = (name: string, body: Buffer, size: number) => {
      const head = Buffer.alloc(2 + name.length + 12);
      head.writeUInt16BE(name.length, 0);
      head.write(name, 2);
      head.writeUInt32BE(0o644, 2 + name.length);
      head.writeBigUInt64BE(BigInt(size), 6 + name.length);
      return Buffer.concat([Buffer.from('F'), head, body, Buffer.from('C')]);
    };
    const data = (bytes: Buffer) => {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(bytes.length);
      return Buffer.concat([Buffer.from('D'), len, bytes]);
    };
    const images = (...records: Buffer[]) => Buffer.concat([Buffer.from('HERDPGS1'), ...records]);
    const cases: [string, Buffer, RegExp][] = [
      ['a name that leaves the directory', images(file('../escaped', data(Buffer.from('x')), 1), Buffer.from('E')), /no plain file name/],
      ['the prior named as an image', images(file('.herd-prior', data(Buffer.from('x')), 1), Buffer.from('E')), /no plain file name/],
      ['a stream cut short (no end)', images(file('a.img', data(Buffer.from('x')), 1)), /ended early/],
      ['more content than the size', images(file('b.img', data(Buffer.from('xy')), 1), Buffer.from('E')), /more content than its size/],
      ['less content than the size', images(file('c.img', data(Buffer.from('x')), 2), Buffer.from('E')), /1 bytes of 2/],
      ['a reference without a prior', images(file('d.img', Buffer.concat([Buffer.from('R'), Buffer.from([0, 0, 0, 0, 0, 0, 0, 1])]), PAGE), Buffer.from('E')), /not in the prior/],
      ['data after the end', Buffer.concat([images(Buffer.from('E')), Buffer.from('x')]), /after the image stream's end/],
      ['a file twice', images(file('e.img', data(Buffer.from('x')), 1), file('e.img', data(Buffer.from('y')), 1), Buffer.from('E')), /twice in the stream/],
      ['not a page stream', Buffer.from('GARBAGE!'), /not a herd-pages stream/],
      ['a prior cut short', Buffer.concat([Buffer.from('HERDPRI1P'), Buffer.from([0, 0, 0, 2]), Buffer.alloc(PAGE)]), /ended early/],
    ];
    for (const [what, stream, message] of cases) {
      const r = receive(target, stream);
      expect(r.status, what).not.toBe(0);
      expect(r.stderr.toString(), what).toMatch(message);
    }
    expect(existsSync(join(base, 'data', 'escaped'))).toBe(false);
    // Outside the host's data roots, nothing is received at all.
    const outside = receive(join(base, 'elsewhere'), images(Buffer.from('E')));
    expect(outside.status).toBe(126);
    expect(outside.stderr.toString()).toMatch(/not under this host's data roots/);
  });
});
