/**
 * Follows the stdout/stderr of every Herd-managed container of one host and appends it
 * to the container's host-independent log (log-store.ts).
 *
 * A container with Docker's json-file log driver (Docker's default) is read from its log
 * file every round (json-log-tail.ts): that is what makes 1000 containers cheap. Before a
 * copy's lines are written, the other copies of the same Herd id (a migration's source,
 * maybe on another host of this monitor) are read to their end, so the log keeps the
 * source's last lines before the target's first ones.
 *
 * A container with another log driver is read with Docker's logs API (`follow`, `timestamps`, from `since` =
 * the last line already in its log), demultiplexed, and lines not newer than the last
 * one written are dropped (Docker's `since` is inclusive and whole seconds here). A
 * running container's stream ends when it stops; a stopped container is read once per
 * state it is seen in, so the last lines of a checkpointed migration source are still
 * collected. A failing stream is retried with backoff; nothing here stops the daemon.
 */
import Docker from 'dockerode';
import type { Logger } from 'pino';
import type { TrackedContainer } from './container-metrics.ts';
import { nativeFileSizes } from './cgroup-reader.ts';
import { JsonFileLogTail } from './json-log-tail.ts';
import { formatNanoTime, MAX_LINE_BYTES, parseNanoTime, shortId, type ContainerLogStore, type LogRecord, type LogStream } from './log-store.ts';

export interface ParsedLogLine {
  stream: LogStream;
  atNs: bigint;
  text: string;
}

/** A Docker timestamp prefix ("2026-11-22T23:29:05.853123456Z "). */
const TS_PREFIX = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})) /;

/**
 * Turns the bytes of a Docker logs stream (`timestamps: true`) into lines. Without a TTY
 * Docker multiplexes stdout and stderr in frames (8-byte header: stream, 0, 0, 0, size
 * big-endian); with a TTY the stream is raw. The first byte tells which. Every message
 * starts with its timestamp; a line Docker split into several messages (> 16 KiB) is put
 * together again and gets the time of its last part.
 */
export class DockerLogParser {
  private mode: 'unknown' | 'mux' | 'raw' = 'unknown';
  private pendingBytes: Buffer = Buffer.alloc(0);
  private readonly partial: Record<LogStream, { parts: Buffer[]; size: number; atNs: bigint | undefined }> = {
    stdout: { parts: [], size: 0, atNs: undefined },
    stderr: { parts: [], size: 0, atNs: undefined },
  };

  push(chunk: Buffer): ParsedLogLine[] {
    const out: ParsedLogLine[] = [];
    let data = this.pendingBytes.length === 0 ? chunk : Buffer.concat([this.pendingBytes, chunk]);
    if (this.mode === 'unknown' && data.length > 0) this.mode = data[0]! <= 2 ? 'mux' : 'raw';
    if (this.mode === 'raw') {
      // Whole lines only, so a timestamp is never cut in two; a very long line goes in pieces.
      const nl = data.lastIndexOf(0x0a);
      const upTo = nl >= 0 ? nl + 1 : data.length > MAX_LINE_BYTES ? data.length : 0;
      if (upTo > 0) this.message('stdout', data.subarray(0, upTo), out, true);
      this.pendingBytes = Buffer.from(data.subarray(upTo));
      return out;
    }
    let i = 0;
    while (data.length - i >= 8) {
      const size = data.readUInt32BE(i + 4);
      if (data.length - i - 8 < size) break;
      const stream: LogStream = data[i] === 2 ? 'stderr' : 'stdout';
      this.message(stream, data.subarray(i + 8, i + 8 + size), out, false);
      i += 8 + size;
    }
    data = data.subarray(i);
    this.pendingBytes = Buffer.from(data);
    return out;
  }

  /** The end of the stream: what is left becomes a line. */
  end(): ParsedLogLine[] {
    const out: ParsedLogLine[] = [];
    if (this.mode === 'raw' && this.pendingBytes.length > 0) this.message('stdout', this.pendingBytes, out, true);
    for (const stream of ['stdout', 'stderr'] as const) this.flush(stream, out);
    this.pendingBytes = Buffer.alloc(0);
    return out;
  }

  /** One message (mux) or a run of raw bytes; a timestamp is expected at each message start. */
  private message(stream: LogStream, bytes: Buffer, out: ParsedLogLine[], raw: boolean): void {
    const p = this.partial[stream];
    let rest = bytes;
    // In mux mode every frame starts a message; in raw mode only the start of a line does.
    let atStart = !raw || p.size === 0;
    while (rest.length > 0) {
      if (atStart) {
        const m = TS_PREFIX.exec(rest.subarray(0, 48).toString('latin1'));
        if (m !== null) {
          const ns = parseNanoTime(m[1]!);
          if (ns !== undefined) p.atNs = ns;
          rest = rest.subarray(m[0].length);
        }
      }
      const nl = rest.indexOf(0x0a);
      if (nl < 0) {
        p.parts.push(Buffer.from(rest));
        p.size += rest.length;
        if (p.size > MAX_LINE_BYTES) this.flush(stream, out);
        return;
      }
      p.parts.push(rest.subarray(0, nl));
      p.size += nl;
      this.flush(stream, out);
      rest = rest.subarray(nl + 1);
      atStart = true;
    }
  }

  private flush(stream: LogStream, out: ParsedLogLine[]): void {
    const p = this.partial[stream];
    if (p.size === 0 && p.parts.length === 0) return;
    let text = Buffer.concat(p.parts).toString('utf8');
    if (text.endsWith('\r')) text = text.slice(0, -1); // TTY lines end with \r\n
    if (p.atNs !== undefined) out.push({ stream, atNs: p.atNs, text });
    p.parts = [];
    p.size = 0;
  }
}

/** Where the log bytes come from: Docker's logs API of the host. */
export interface LogSource {
  /** Docker's log stream of a container from `sinceSeconds` on (0: all), following while it runs. */
  open(dockerId: string, sinceSeconds: number): Promise<NodeJS.ReadableStream>;
}

export function dockerLogSource(socketPath: string): LogSource {
  // No request timeout: a followed log stream is quiet for as long as the container is.
  const docker = new Docker({ socketPath });
  return {
    async open(dockerId, sinceSeconds) {
      const stream = await docker.getContainer(dockerId).logs({ follow: true, stdout: true, stderr: true, timestamps: true, since: sinceSeconds });
      return stream as unknown as NodeJS.ReadableStream;
    },
  };
}

interface Following {
  stream?: NodeJS.ReadableStream & { destroy?: () => void };
  stopped: boolean;
  done: Promise<void>;
}

/** How long an older copy of a container must have read no line before a newer copy's lines are written. */
const SIBLING_QUIET_MS = 2000;
let fileFollowingSeq = 0;

/** A container read from its json-file log. */
interface FileFollowing {
  herdId: string;
  tail: JsonFileLogTail;
  /** Order in which copies were first seen: a migration's target comes after its source. */
  seq: number;
  /** When this copy last read lines (ms). */
  lastLinesAtMs: number;
  /** In poll() (a sibling polled from it does not poll it back). */
  busy: boolean;
  /** Reads what is new and writes it (`budget` bytes at most). */
  poll(budget: { left: number }): void;
  /** It holds lines back (an older copy was still writing): poll it even if its file did not grow. */
  holding(): boolean;
  /** Reads and writes everything left, a split line's last part too (the container is gone). */
  finish(): void;
}

/**
 * The json-file followings by Herd id, shared by the followers of all hosts of a monitor,
 * so a migration target's first lines wait until its source's last ones are written.
 */
export type FileFollowings = Map<string, Set<FileFollowing>>;

/** Bytes of json-file logs read per host and round at most (catching up after a restart is spread over rounds). */
export const POLL_BUDGET_BYTES = 8 * 1024 * 1024;

export interface LogFollowerStats {
  following: number;
  linesWritten: number;
  failures: number;
}

export class ContainerLogFollower {
  private readonly active = new Map<string, Following>();
  /** Docker id → its json-file following. */
  private readonly files = new Map<string, FileFollowing>();
  /** Docker ids whose json-file log could not be opened: followed through the API. */
  private readonly unreadable = new Set<string>();
  /** Docker id → the state it was in when its stream last ended (a stopped container is read once per state). */
  private readonly drained = new Map<string, string>();
  private readonly retry = new Map<string, { atMs: number; failures: number }>();
  private linesWritten = 0;
  private failures = 0;
  private closed = false;

  constructor(
    private readonly store: ContainerLogStore,
    private readonly source: LogSource,
    private readonly options: { hostId: string; log: Logger; retryIntervalMs?: number; maxRetryMs?: number; fileFollowings?: FileFollowings },
  ) {
    this.byHerdId = options.fileFollowings ?? new Map();
  }

  private readonly byHerdId: FileFollowings;

  /** Called with the host's containers every tracking round: starts what is not followed yet. */
  sync(listed: readonly TrackedContainer[]): void {
    if (this.closed) return;
    const seen = new Set<string>();
    const now = Date.now();
    const files: FileFollowing[] = [];
    for (const c of listed) {
      if (c.herdId === '') continue;
      seen.add(c.dockerId);
      try {
        this.store.rememberName(c.herdId, c.name);
      } catch (err) {
        this.options.log.debug({ herdId: c.herdId, err: (err as Error).message }, 'cannot record the container name beside its log');
      }
      if (c.log?.driver === 'json-file' && c.log.path !== '' && !this.active.has(c.dockerId) && !this.unreadable.has(c.dockerId)) {
        const f = this.files.get(c.dockerId) ?? this.followFile(c);
        if (f.tail.openError === undefined || c.state !== 'running') {
          files.push(f);
          continue;
        }
        // A running container whose log file cannot be opened (another mount namespace, permissions): the logs API instead.
        this.options.log.warn({ hostId: this.options.hostId, herdId: c.herdId, dockerId: shortId(c.dockerId), path: c.log.path, err: f.tail.openError }, "cannot open the container's json-file log; following it through Docker's logs API");
        this.unfollowFile(c.dockerId, f);
        this.unreadable.add(c.dockerId);
      }
      if (this.active.has(c.dockerId)) continue;
      if (c.state !== 'running' && this.drained.get(c.dockerId) === c.state) continue;
      const retry = this.retry.get(c.dockerId);
      if (retry !== undefined && retry.atMs > now) continue;
      this.start(c);
    }
    for (const id of [...this.drained.keys(), ...this.retry.keys(), ...this.unreadable]) {
      if (!seen.has(id)) {
        this.unreadable.delete(id);
        this.drained.delete(id);
        this.retry.delete(id);
      }
    }
    this.pollFiles(files);
    // Gone (removed, e.g. a migration's source): read to the end through the open file, then close.
    if (this.files.size > seen.size) for (const [id, f] of this.files) if (!seen.has(id)) this.unfollowFile(id, f);
  }

  stats(): LogFollowerStats {
    return { following: this.active.size + this.files.size, linesWritten: this.linesWritten, failures: this.failures };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const [id, f] of this.files) this.unfollowFile(id, f);
    const all = [...this.active.values()];
    for (const f of all) {
      f.stopped = true;
      f.stream?.destroy?.();
    }
    await Promise.allSettled(all.map((f) => f.done));
  }

  /** Reads what is new in the json-file logs: with the native addon, only the files whose size changed (one fstat each, in one call). */
  private pollFiles(files: readonly FileFollowing[]): void {
    const budget = { left: POLL_BUDGET_BYTES };
    const sizes = nativeFileSizes();
    if (sizes === undefined) {
      for (const f of files) f.poll(budget);
      return;
    }
    if (this.fds.length < files.length) {
      this.fds = new Int32Array(files.length * 2);
      this.sizes = new Float64Array(files.length * 2);
    }
    for (let k = 0; k < files.length; k++) this.fds[k] = files[k]!.tail.fd;
    sizes(this.fds, files.length, this.sizes);
    for (let k = 0; k < files.length; k++) if (files[k]!.tail.due(this.sizes[k]!) || files[k]!.holding()) files[k]!.poll(budget);
  }

  private fds = new Int32Array(0);
  private sizes = new Float64Array(0);

  /** Starts reading a container's json-file log (from the line after the last one in its Herd log). */
  private followFile(c: TrackedContainer): FileFollowing {
    const { store, options } = this;
    const herdId = c.herdId;
    const dockerId = shortId(c.dockerId);
    let lastNs = store.lastAt(herdId, c.dockerId);
    const tail = new JsonFileLogTail(c.log!.path, c.log!.maxBytes);
    const siblings = this.byHerdId.get(herdId) ?? new Set<FileFollowing>();
    this.byHerdId.set(herdId, siblings);
    // Lines of a newer copy held back while an older one may still be flushing its last lines.
    let pending: ParsedLogLine[] = [];
    const following: FileFollowing = {
      herdId,
      tail,
      seq: ++fileFollowingSeq,
      lastLinesAtMs: 0,
      busy: false,
      poll: (budget) => {
        let lines: ParsedLogLine[];
        try {
          lines = tail.poll(budget);
        } catch (err) {
          this.failures++;
          options.log.warn({ hostId: options.hostId, herdId, dockerId, err: (err as Error).message }, 'cannot read the container log file');
          return;
        }
        if (lines.length > 0) following.lastLinesAtMs = Date.now();
        if (pending.length > 0) lines = [...pending, ...lines];
        if (lines.length === 0) return;
        following.busy = true;
        try {
          // Another copy of this container (a migration's source) first: its last lines come before these.
          if (siblings.size > 1) for (const other of siblings) if (!other.busy) other.poll({ left: Number.POSITIVE_INFINITY });
          // Docker may write a stopped source's last lines to its file a moment later: a newer copy
          // waits until every older one has been quiet for a while, so the log stays in order.
          const now = Date.now();
          if ([...siblings].some((o) => o !== following && o.seq < following.seq && now - o.lastLinesAtMs < SIBLING_QUIET_MS)) {
            pending = lines;
            return;
          }
          pending = [];
          lastNs = this.writeLines(herdId, dockerId, lines, lastNs);
        } finally {
          following.busy = false;
        }
      },
      holding: () => pending.length > 0,
      finish: () => {
        following.poll({ left: Number.POSITIVE_INFINITY });
        lastNs = this.writeLines(herdId, dockerId, [...pending, ...tail.end()], lastNs);
        pending = [];
      },
    };
    siblings.add(following);
    this.files.set(c.dockerId, following);
    return following;
  }

  private unfollowFile(dockerId: string, f: FileFollowing): void {
    f.finish();
    f.tail.close();
    this.files.delete(dockerId);
    const siblings = this.byHerdId.get(f.herdId);
    siblings?.delete(f);
    if (siblings?.size === 0) this.byHerdId.delete(f.herdId);
    // The source is gone and read to its end: what a newer copy held back can be written now.
    for (const other of siblings ?? []) other.poll({ left: 0 });
  }

  /** Appends the lines newer than `lastNs` to the container's log; returns the new last time. */
  private writeLines(herdId: string, dockerId: string, lines: readonly ParsedLogLine[], lastNs: bigint | undefined): bigint | undefined {
    const records: LogRecord[] = [];
    for (const l of lines) {
      if (lastNs !== undefined && l.atNs <= lastNs) continue; // already in the log
      records.push({ at: formatNanoTime(l.atNs), hostId: this.options.hostId, dockerId, stream: l.stream, text: l.text });
      lastNs = l.atNs;
    }
    if (records.length === 0) return lastNs;
    try {
      this.store.append(herdId, records, lastNs);
      this.linesWritten += records.length;
    } catch (err) {
      this.options.log.warn({ herdId, err: (err as Error).message }, 'cannot append to the container log');
    }
    return lastNs;
  }

  private start(c: TrackedContainer): void {
    const { store, options } = this;
    let lastNs = store.lastAt(c.herdId, c.dockerId);
    const sinceSeconds = lastNs === undefined ? 0 : Number(lastNs / 1_000_000_000n);
    const dockerId = shortId(c.dockerId);
    const parser = new DockerLogParser();
    const write = (lines: ParsedLogLine[]) => {
      lastNs = this.writeLines(c.herdId, dockerId, lines, lastNs);
    };
    const following: Following = { stopped: false, done: Promise.resolve() };
    this.active.set(c.dockerId, following);
    following.done = (async () => {
      try {
        const stream = (await this.source.open(c.dockerId, sinceSeconds)) as NodeJS.ReadableStream & { destroy?: () => void };
        following.stream = stream;
        if (following.stopped) stream.destroy?.();
        await new Promise<void>((resolve, reject) => {
          stream.on('data', (chunk: Buffer | string) => write(parser.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk)));
          stream.on('end', () => resolve());
          stream.on('close', () => resolve());
          stream.on('error', (err: Error) => reject(err));
        });
        write(parser.end());
        this.retry.delete(c.dockerId);
        this.drained.set(c.dockerId, c.state);
      } catch (err) {
        write(parser.end());
        if (!following.stopped) this.failed(c, err as Error);
      } finally {
        this.active.delete(c.dockerId);
      }
    })();
  }

  private failed(c: TrackedContainer, err: Error): void {
    this.failures++;
    const failures = (this.retry.get(c.dockerId)?.failures ?? 0) + 1;
    const base = this.options.retryIntervalMs ?? 2000;
    const delay = Math.min(this.options.maxRetryMs ?? 60_000, base * 2 ** Math.min(failures - 1, 10));
    this.retry.set(c.dockerId, { atMs: Date.now() + delay, failures });
    // 404: the container was removed meanwhile (e.g. a migration source); nothing to retry for long.
    const level = /404|no such container/i.test(err.message) ? 'debug' : 'warn';
    if (failures === 1 || failures % 10 === 0) this.options.log[level]({ hostId: this.options.hostId, herdId: c.herdId, dockerId: shortId(c.dockerId), err: err.message, failures }, 'cannot follow the container log; retrying');
  }
}
