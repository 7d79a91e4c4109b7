/**
 * Host-to-host transfers over SSH (ssh2). Data is streamed as tar through an `exec`
 * channel (reported 1.5-3x faster than SFTP) and never staged whole in memory. The
 * remote host key must match the known_hosts file: no key, no transfer.
 */
import { spawn } from 'node:child_process';
import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { PassThrough, Transform, type Readable } from 'node:stream';
import { Client, type ClientChannel, type ConnectConfig } from 'ssh2';
import { HerdError } from '../../protocol/errors.ts';
import type { Compression } from '../../protocol/messages.ts';
import { decodeName, nameList } from './byte-names.ts';

export interface SshTarget {
  host: string;
  port: number;
  user: string;
  privateKeyPath: string;
  knownHostsPath: string;
}

/** The base64 key blobs known_hosts lists for `host` (plain, unhashed entries; `[host]:port` for other ports). */
export function knownKeysFor(knownHosts: string, host: string, port: number): string[] {
  const names = port === 22 ? [host, `[${host}]:22`] : [`[${host}]:${port}`];
  const keys: string[] = [];
  for (const line of knownHosts.split('\n')) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const [hosts, , blob] = trimmed.split(/\s+/);
    if (hosts === undefined || blob === undefined) continue;
    if (hosts.split(',').some((h) => names.includes(h))) keys.push(blob);
  }
  return keys;
}

export function connectSsh(target: SshTarget, timeoutMs = 10_000): Promise<Client> {
  let knownHosts: string;
  let privateKey: Buffer;
  try {
    knownHosts = readFileSync(target.knownHostsPath, 'utf8');
    privateKey = readFileSync(target.privateKeyPath);
  } catch (err) {
    throw new HerdError('TRANSFER_FAILED', `SSH setup incomplete: ${(err as Error).message}`, { cause: err });
  }
  const expected = knownKeysFor(knownHosts, target.host, target.port);
  if (expected.length === 0) {
    throw new HerdError('TRANSFER_FAILED', `no host key for ${target.host}:${target.port} in ${target.knownHostsPath}: refusing to connect`);
  }
  return new Promise((resolve, reject) => {
    const client = new Client();
    let verified = false;
    const config: ConnectConfig = {
      host: target.host,
      port: target.port,
      username: target.user,
      privateKey,
      readyTimeout: timeoutMs,
      keepaliveInterval: 5000,
      hostVerifier: (key: Buffer) => {
        verified = expected.includes(key.toString('base64'));
        return verified;
      },
    };
    client.once('ready', () => {
      // Without it, Nagle and delayed ACKs add ~40 ms to each of a channel's round trips.
      client.setNoDelay(true);
      resolve(client);
    });
    // on, not once: a second error (after the pool's own listener) must not crash the daemon.
    client.on('error', (err) => {
      const why = verified ? err.message : `host key of ${target.host} does not match ${target.knownHostsPath} (${err.message})`;
      reject(new HerdError('TRANSFER_FAILED', `SSH to ${target.user}@${target.host}:${target.port} failed: ${why}`, { cause: err }));
    });
    client.connect(config);
  });
}

/** A transfer that moves no byte for this long fails (a peer gone silent without closing). */
export const TRANSFER_STALL_MS = 60_000;

/** Counts bytes flowing through, and when the last ones did. */
class ByteCounter extends Transform {
  bytes = 0;
  lastAt = Date.now();
  constructor(private readonly onBytes?: (n: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null, data?: Buffer) => void): void {
    this.bytes += chunk.length;
    this.lastAt = Date.now();
    this.onBytes?.(chunk.length);
    done(null, chunk);
  }
}

/**
 * A remote `tar -x` waiting on an open exec channel for the directory to extract into
 * (first line of its stdin), then the tar stream. Opening it before the data exists
 * hides the SSH session's start-up (sshd forks a shell, which may read rc files:
 * ~120 ms measured in the lab) behind the checkpoint.
 */
export interface RemoteReceiver {
  /**
   * Sends the stream `source` (tar, or blocks for a block receiver) into `dir` on the remote
   * host (lz4-compressed on the way when the receiver was opened with `lz4`); resolves once
   * the remote receiver exited 0, with the bytes of the stream, the bytes that crossed the
   * network and the receiver's reply. `onBytes` hears each chunk's size, uncompressed (progress).
   */
  send(dir: string, source: Readable | NodeJS.ReadableStream, what: string, onBytes?: (n: number) => void): Promise<SentBytes>;
  /** Closes a receiver that will not be used. */
  cancel(): void;
}

/**
 * What the source asks the target's sshd to run. The transfer key's forced command
 * (bin/herd-ssh-command) runs only these: the receiver (read the target directory from the
 * first line, check it lies under the target's own data roots, extract the rest of stdin
 * there) and the fence (fence.ts).
 */
/** `over`: xattrs too, extracted over a tree a pre-copy made (the delta after the freeze: squares the stale xattrs and inherited set-group-ID bits of directories tar leaves). */
/** `pages`: a memory prior or checkpoint images by pages (memory-precopy.ts). */
export const RECEIVE_COMMAND = { plain: 'herd-receive', xattrs: 'herd-receive --xattrs', over: 'herd-receive --over', blocks: 'herd-blocks', pages: 'herd-pages' } as const;
/** The receiver's option for an lz4-compressed stream (`herd-receive [--xattrs|--over] --lz4`). */
export const LZ4_OPTION = '--lz4';

export interface SentBytes {
  /** Bytes of the stream. */
  bytes: number;
  /** Bytes on the network (after compression). */
  wireBytes: number;
  /** What the remote receiver wrote to its stdout (a block receiver's state; empty for tar). */
  reply?: Buffer;
}

/** Fails with MISSING_DEPENDENCY when `compression` needs a program this host lacks (checked at the daemon's start). */
export async function assertCompressionAvailable(compression: Compression): Promise<void> {
  if (compression === 'none') return;
  await new Promise<void>((resolve, reject) => {
    const child = spawn('lz4', ['--version'], { stdio: 'ignore' });
    child.on('error', (err) => reject(new HerdError('MISSING_DEPENDENCY', `transferCompression is lz4, but lz4 cannot run here (${err.message}): apt-get install lz4, or set transferCompression: none on every host`, { cause: err })));
    child.on('close', (code) => (code === 0 ? resolve() : reject(new HerdError('MISSING_DEPENDENCY', `transferCompression is lz4, but lz4 --version exited ${code}`))));
  });
}

/**
 * lz4's fastest level: about 1 GB/s of CPU per core, so it costs less than it saves
 * whenever the link moves less than that (memory images, database files: 2-250x smaller
 * in the lab) and little when the data does not compress (0.17 s per 256 MiB of random bytes).
 */
function lz4Stream(source: Readable, onError: (e: Error) => void): { out: Readable; kill(): void } {
  const child = spawn('lz4', ['-1', '-q', '-c'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.on('error', (e) => onError(new Error(`cannot run lz4 (apt-get install lz4, or set transferCompression: none): ${e.message}`)));
  child.on('close', (code, signal) => {
    if (code !== 0 && signal !== 'SIGKILL') onError(new Error(`lz4 exited ${code ?? signal}: ${stderr.trim()}`));
  });
  child.stdin.on('error', () => undefined); // lz4 failing closes it: its exit says why
  source.pipe(child.stdin);
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  child.stdout.on('close', kill);
  return { out: child.stdout, kill };
}
export const FENCE_COMMAND = (migrationId: string) => `herd-fence ${migrationId}`;
export const PRUNE_COMMAND = 'herd-prune';

/** A command started over SSH: its channel, and once it closed, its exit code, the last lines of its stderr and its stdout. */
interface RemoteCommand {
  channel: ClientChannel;
  closed: Promise<{ code: number | null; stderr: string; stdout: Buffer }>;
}

/** More output than a remote command of Herd's writes (a block receiver's state: 32 bytes per 64 KiB received). */
const MAX_REMOTE_STDOUT = 256 * 2 ** 20;

/** Where a remote command runs: a session to the peer (ssh-pool.ts opens it on a connection with room for it). */
export interface SshSessions {
  exec(command: string): Promise<ClientChannel>;
}

async function execRemote(ssh: SshSessions, command: string, what: string): Promise<RemoteCommand> {
  let channel: ClientChannel;
  try {
    channel = await ssh.exec(command);
  } catch (err) {
    throw new HerdError('TRANSFER_FAILED', `cannot start the remote ${what}: ${(err as Error).message}`, { cause: err });
  }
  // Read stdout to its end (ssh2 only emits 'close' once the readable side has ended).
  const stdout: Buffer[] = [];
  let stdoutBytes = 0;
  channel.on('data', (d: Buffer) => {
    stdoutBytes += d.length;
    if (stdoutBytes <= MAX_REMOTE_STDOUT) stdout.push(d);
  });
  let stderr = '';
  let code: number | null = null;
  channel.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 4000) stderr += d.toString();
  });
  channel.on('exit', (c: number | null) => {
    code = c;
  });
  const closed = new Promise<{ code: number | null; stderr: string; stdout: Buffer }>((done) =>
    channel.once('close', () => {
      if (stdoutBytes > MAX_REMOTE_STDOUT) done({ code: code ?? 1, stderr: `the remote ${what} wrote more than ${MAX_REMOTE_STDOUT} bytes to stdout`, stdout: Buffer.alloc(0) });
      else done({ code, stderr: stderr.trim().split('\n').slice(-3).join(' | ') || 'connection lost', stdout: Buffer.concat(stdout) });
    }),
  );
  return { channel, closed };
}

/** The remote pruner of a directory: deletes paths under it (the deletions of a filesystem pre-copy). */
export interface RemotePruner {
  /** Deletes `paths` (relative, NUL-free) under the directory; resolves once the pruner exited 0. */
  prune(paths: readonly string[]): Promise<void>;
  /** Closes a pruner that will not be used (it deletes nothing). */
  cancel(): void;
}

/**
 * Starts the remote pruner of `dir` and names the directory at once, so that sshd's start of
 * the forced command and the pruner's own start-up (~100 ms in the lab) are over before the
 * paths are known (the pre-copy opens it while the container still runs).
 */
export async function openPruner(ssh: SshSessions, dir: string): Promise<RemotePruner> {
  if (/[\n\0]/.test(dir)) throw new HerdError('TRANSFER_FAILED', `pruning ${dir}: invalid directory`);
  const { channel, closed } = await execRemote(ssh, PRUNE_COMMAND, 'pruner');
  channel.write(`${dir}\n`);
  return {
    async prune(paths) {
      if (paths.some((p) => p.includes('\0'))) throw new HerdError('TRANSFER_FAILED', `pruning ${dir}: invalid path`);
      channel.end(nameList(paths));
      const { code, stderr } = await closed;
      if (code !== 0) throw new HerdError('TRANSFER_FAILED', `deleting ${paths.length} path(s) under ${dir} exited ${code ?? 'by signal'}: ${stderr}`);
    },
    cancel() {
      channel.end();
    },
  };
}

/** A receiver of tar streams (`plain`, or `xattrs` to keep them), of block streams (block-delta.ts) or of page streams (memory-precopy.ts). */
export async function openReceiver(ssh: SshSessions, options: { kind: keyof typeof RECEIVE_COMMAND; compression: Compression }): Promise<RemoteReceiver> {
  const lz4 = options.compression === 'lz4';
  const command = `${RECEIVE_COMMAND[options.kind]}${lz4 ? ` ${LZ4_OPTION}` : ''}`;
  const { channel, closed } = await execRemote(ssh, command, 'receiver');
  return {
    send(dir, source, what, onBytes) {
      if (/[\n\0]/.test(dir)) return Promise.reject(new HerdError('TRANSFER_FAILED', `${what}: invalid target directory ${JSON.stringify(dir)}`));
      return new Promise((done, fail) => {
        const counter = new ByteCounter(onBytes);
        const wire = new ByteCounter();
        let failed = false;
        const watchdog = setInterval(() => {
          if (Date.now() - Math.max(counter.lastAt, wire.lastAt) > TRANSFER_STALL_MS) failWith(`no data moved for ${TRANSFER_STALL_MS / 1000} s: giving up`);
        }, 5000);
        let compressor: { out: Readable; kill(): void } | undefined;
        const failWith = (message: string, cause?: unknown) => {
          clearInterval(watchdog);
          if (failed) return;
          failed = true;
          channel.close();
          compressor?.kill();
          // Stop the producer too (a local tar child would otherwise block forever on a full pipe).
          (source as Readable).unpipe?.();
          (source as Readable).destroy?.();
          fail(new HerdError('TRANSFER_FAILED', `${what}: ${message}`, { cause }));
        };
        (source as Readable).on('error', (e: Error) => failWith(`reading the source failed: ${e.message}`, e));
        void closed.then(({ code, stderr, stdout }) => {
          clearInterval(watchdog);
          if (failed) return;
          if (code === 0) done({ bytes: counter.bytes, wireBytes: wire.bytes, ...(stdout.length > 0 ? { reply: stdout } : {}) });
          else failWith(`remote ${options.kind === 'blocks' || options.kind === 'pages' ? RECEIVE_COMMAND[options.kind] : 'tar'} into ${dir} exited ${code ?? 'by signal'}: ${stderr}`);
        });
        channel.write(`${dir}\n`);
        const counted = (source as Readable).pipe(counter);
        compressor = lz4 ? lz4Stream(counted, (e) => failWith(e.message, e)) : undefined;
        (compressor?.out ?? counted).pipe(wire).pipe(channel);
      });
    },
    cancel() {
      channel.end();
    },
  };
}

/**
 * A local `tar -c` of a directory as a stream; errors (non-zero exit) surface on the stream.
 * With `only`, just those entries (relative paths, directories without their contents).
 * With `live`, the directory may change while it is read (a running container's): files
 * that change, shrink or vanish meanwhile are not errors (their changes go later), and
 * `live.archived` hears the relative path of every entry the archive holds.
 */
export function tarDirectory(dir: string, options: { xattrs: boolean; only?: readonly string[]; exclude?: readonly string[]; live?: { archived(rel: string): void } }): Readable {
  const args = ['-c', '--numeric-owner', '--sparse', '-C', dir, ...(options.only === undefined ? ['.'] : ['--no-recursion', '--null', '--verbatim-files-from', '-T', '-'])];
  if (options.xattrs) args.splice(1, 0, '--xattrs', '--xattrs-include=*');
  // Literal names, one per line (tar 1.34 reads only the first of a NUL-separated -X list): no name may hold a newline.
  if (options.exclude?.some((p) => p.includes('\n'))) throw new Error('tarDirectory: an excluded name holds a newline');
  // Scratch files: the names of a live archive (stdio pipes are sockets, which tar cannot open by /dev/fd), the exclusions.
  const scratch = options.live === undefined && options.exclude === undefined ? undefined : mkdtempSync(join(tmpdir(), 'herd-tar-'));
  const removeScratch = () => scratch !== undefined && rmSync(scratch, { recursive: true, force: true });
  const indexFile = options.live === undefined || scratch === undefined ? undefined : join(scratch, 'index');
  if (indexFile !== undefined) args.splice(1, 0, '-v', `--index-file=${indexFile}`, '--quoting-style=escape', '--warning=no-file-changed', '--warning=no-file-shrank', '--warning=no-file-removed');
  if (options.exclude !== undefined && scratch !== undefined) {
    writeFileSync(join(scratch, 'exclude'), nameList(options.exclude.map((p) => `./${p}`), '\n'));
    args.splice(1, 0, '--anchored', '--no-wildcards', '-X', join(scratch, 'exclude'));
  }
  const child = spawn('tar', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.on('error', () => undefined); // tar failing early closes it: its exit code says why
  child.stdin.end(options.only === undefined ? undefined : nameList(options.only.map((p) => (p === '.' ? '.' : `./${p}`))));
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const listNames = async () => {
    try {
      if (indexFile === undefined || options.live === undefined) return;
      for await (const line of createInterface({ input: createReadStream(indexFile), crlfDelay: Infinity })) {
        const rel = unescapeTarName(line).replace(/^\.\/?/, '').replace(/\/$/, '');
        if (rel !== '') options.live.archived(rel);
      }
    } finally {
      removeScratch();
    }
  };
  // Pipe at once: Node resumes (and so discards) an unread child stdout when the child exits.
  const out = new PassThrough();
  child.stdout.pipe(out, { end: false });
  out.on('close', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  child.on('close', (code) => {
    // 1: some file changed while it was read, which a live directory may do.
    if (code === 0 || (code === 1 && options.live !== undefined)) void listNames().then(() => out.end(), (err: unknown) => out.destroy(err as Error));
    else {
      removeScratch();
      out.destroy(new Error(`tar of ${dir} exited ${code}: ${stderr.trim()}`));
    }
  });
  child.on('error', (err) => {
    removeScratch();
    out.destroy(err);
  });
  return out;
}

const ESCAPES: Record<string, number> = { '\\': 0x5c, a: 0x07, b: 0x08, f: 0x0c, n: 0x0a, r: 0x0d, t: 0x09, v: 0x0b, '?': 0x3f };

/** A member name as GNU tar's `escape` quoting style prints it (bytes above ASCII as octal), back to the name (byte-names.ts). */
export function unescapeTarName(quoted: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < quoted.length; i++) {
    const c = quoted.charCodeAt(i);
    if (c !== 0x5c || i + 1 >= quoted.length) {
      bytes.push(...Buffer.from(quoted[i] as string, 'utf8'));
      continue;
    }
    const octal = /^[0-7]{3}/.exec(quoted.slice(i + 1, i + 4));
    if (octal !== null) {
      bytes.push(parseInt(octal[0], 8));
      i += 3;
      continue;
    }
    const e = ESCAPES[quoted[i + 1] as string];
    if (e === undefined) bytes.push(c);
    else {
      bytes.push(e);
      i += 1;
    }
  }
  return decodeName(Buffer.from(bytes));
}
