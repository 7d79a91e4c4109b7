/**
 * One host-independent log per container: `<logsDir>/<herdId>.log`, keyed by the Herd id
 * so that the lines a container wrote before and after a migration end up in one file.
 *
 * Each line is one JSON record `{ at, hostId, dockerId, stream, text }`: `at` is Docker's
 * timestamp of the line (UTC, 9 fraction digits), `dockerId` the first 12 characters of
 * the Docker container that wrote it (a migrated container is a new Docker container on
 * its new host). Crash safety is the dataset's: appends are single write(2) calls on an
 * O_APPEND file, a torn tail is closed with a newline before the next append, readers
 * skip lines that are not complete JSON. Resuming after a restart asks the file for the
 * last `at` written for a Docker container ({@link ContainerLogStore.lastAt}), so nothing
 * is written twice or skipped.
 */
import { openForAppend } from './append-file.ts';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { HerdError } from '../protocol/errors.ts';
import { ID_PATTERN } from '../protocol/topics.ts';
import { openFilesLimit } from './cgroup-fs.ts';

export type LogStream = 'stdout' | 'stderr';

export interface LogRecord {
  /** Docker's timestamp of the line, normalised to UTC with 9 fraction digits. */
  at: string;
  hostId: string;
  /** First 12 characters of the Docker container id. */
  dockerId: string;
  stream: LogStream;
  /** The line without its newline. */
  text: string;
}

/** A container's output line longer than this is cut into pieces (a process that never writes a newline). */
export const MAX_LINE_BYTES = 256 * 1024;

export const SHORT_ID_LENGTH = 12;
export const shortId = (dockerId: string): string => dockerId.slice(0, SHORT_ID_LENGTH);

/**
 * Log files kept open at most (a quarter of the process's file limit, at most 4096; the
 * cgroup files and Docker's log streams need the rest); beyond that the least recently
 * written one is closed, and reopened (open, write, close) when its container writes again.
 */
const defaultMaxOpenFiles = () => Math.max(16, Math.min(4096, Math.floor(openFilesLimit() / 4)));
const SCAN_CHUNK_BYTES = 64 * 1024;

/**
 * Nanoseconds since the epoch of an RFC 3339 time with up to 9 fraction digits
 * (Docker's RFC3339NanoFixed, or RFC3339Nano with trailing zeros trimmed); undefined
 * when it is not one.
 */
export function parseNanoTime(text: string): bigint | undefined {
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/.exec(text);
  if (m === null) return undefined;
  const ms = Date.parse(`${m[1]}${m[3]}`);
  if (!Number.isFinite(ms)) return undefined;
  return BigInt(ms) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

/** The UTC text of a nanosecond time, always with 9 fraction digits (so texts sort as times). */
export function formatNanoTime(ns: bigint): string {
  const seconds = ns / 1_000_000_000n;
  const fraction = ns % 1_000_000_000n;
  return `${new Date(Number(seconds) * 1000).toISOString().slice(0, 19)}.${fraction.toString().padStart(9, '0')}Z`;
}

/** A record from one log line, or undefined for a torn or foreign line. */
export function parseLogLine(line: string): LogRecord | undefined {
  if (line === '') return undefined;
  try {
    const r = JSON.parse(line) as Partial<LogRecord> | null;
    if (r === null || typeof r !== 'object' || typeof r.at !== 'string' || typeof r.text !== 'string' || typeof r.dockerId !== 'string') return undefined;
    if (r.stream !== 'stdout' && r.stream !== 'stderr') return undefined;
    return r as LogRecord;
  } catch {
    return undefined;
  }
}

/**
 * The Herd id as a file name, refused (BAD_MESSAGE) when it is not a Herd id: the id comes
 * from a container's label, and "../x" or "a/b" would put the log outside the logs folder.
 */
export function checkedHerdId(herdId: string): string {
  if (!ID_PATTERN.test(herdId)) throw new HerdError('BAD_MESSAGE', `"${herdId}" is not a Herd id (1-64 characters of A-Z a-z 0-9 _ . - starting with a letter or digit): no log file is named after it`);
  return herdId;
}

export const logFileName = (herdId: string): string => `${checkedHerdId(herdId)}.log`;

/** The k-th rotated file of a log (1 = the most recent one). */
export const rotatedPath = (path: string, k: number): string => `${path}.${k}`;

/** A container's log files, oldest first: its rotated files (`.log.N` … `.log.1`) that exist, then `.log`. */
export function logFilesOldestFirst(path: string): string[] {
  const files = [path];
  for (let k = 1; existsSync(rotatedPath(path, k)); k++) files.unshift(rotatedPath(path, k));
  return files;
}

export interface ContainerLogStoreOptions {
  /** Log files kept open at most (default: a quarter of the process's file limit, at most 4096). */
  maxOpenFiles?: number;
  /** A log is rotated before an append would take it over this size (default 16 MiB). */
  maxBytes?: number;
  /** Rotated files kept per container (`.log.1` … `.log.N`, default 2); older ones are deleted. */
  rotatedFiles?: number;
}

export const DEFAULT_LOG_MAX_BYTES = 16 * 1024 * 1024;
export const DEFAULT_LOG_ROTATED_FILES = 2;
const nameFileName = (herdId: string): string => `${checkedHerdId(herdId)}.name`;

export class ContainerLogStore {
  /** path → open file and its size, in least-recently-written order (Map keeps insertion order). */
  private readonly open = new Map<string, { fd: number; size: number }>();
  /** `${herdId}|${shortDockerId}` → last `at` written (ns), once known. */
  private readonly last = new Map<string, bigint | null>();
  private readonly names = new Map<string, string>();
  /** Files whose tail was checked for a torn line since this store was made (after that, our own appends end in newlines). */
  private readonly checked = new Set<string>();
  private dirReady = false;

  private readonly maxOpenFiles: number;
  private readonly maxBytes: number;
  private readonly rotatedFiles: number;

  constructor(
    readonly dir: string,
    options: ContainerLogStoreOptions = {},
  ) {
    this.maxOpenFiles = options.maxOpenFiles ?? defaultMaxOpenFiles();
    this.maxBytes = options.maxBytes ?? DEFAULT_LOG_MAX_BYTES;
    this.rotatedFiles = Math.max(1, options.rotatedFiles ?? DEFAULT_LOG_ROTATED_FILES);
  }

  pathOf(herdId: string): string {
    return join(this.dir, logFileName(herdId));
  }

  /**
   * Appends records of one container in ONE write, rotating the log first when the write
   * would take it past `maxBytes`. Records must be in time order and newer than
   * {@link lastAt} for their Docker container (the follower filters). `lastNs`, when given,
   * is the last record's time, and all records are of that record's Docker container.
   */
  append(herdId: string, records: readonly LogRecord[], lastNs?: bigint): void {
    if (records.length === 0) return;
    const path = this.pathOf(herdId);
    let file = this.fileFor(path);
    let text = '';
    for (const r of records) text += `${JSON.stringify(r)}\n`;
    const buf = Buffer.from(text, 'utf8');
    if (file.size > 0 && file.size + buf.length > this.maxBytes) {
      this.rotate(path);
      file = this.fileFor(path);
    }
    let written = 0;
    while (written < buf.length) written += writeSync(file.fd, buf, written, buf.length - written);
    file.size += written;
    // The follower passes the last record's time (it has it as a number, and all records are of one Docker container).
    const last = records[records.length - 1] as LogRecord;
    if (lastNs !== undefined) this.last.set(`${herdId}|${last.dockerId}`, lastNs);
    else {
      for (const r of records) {
        const ns = parseNanoTime(r.at);
        if (ns !== undefined) this.last.set(`${herdId}|${r.dockerId}`, ns);
      }
    }
  }

  /** `.log` becomes `.log.1`, `.log.1` becomes `.log.2`…, the oldest beyond `rotatedFiles` is deleted. */
  private rotate(path: string): void {
    const open = this.open.get(path);
    if (open !== undefined) {
      closeSync(open.fd);
      this.open.delete(path);
    }
    rmSync(rotatedPath(path, this.rotatedFiles), { force: true });
    for (let k = this.rotatedFiles - 1; k >= 1; k--) if (existsSync(rotatedPath(path, k))) renameSync(rotatedPath(path, k), rotatedPath(path, k + 1));
    renameSync(path, rotatedPath(path, 1));
  }

  /**
   * The time of the last line written for Docker container `dockerId` into `herdId`'s log
   * (scanning the file backwards once, then remembered), or undefined when none was.
   */
  lastAt(herdId: string, dockerId: string): bigint | undefined {
    const key = `${herdId}|${shortId(dockerId)}`;
    if (!this.last.has(key)) this.last.set(key, scanLastAt(this.pathOf(herdId), shortId(dockerId)) ?? null);
    return this.last.get(key) ?? undefined;
  }

  /** Records the container's name beside its log, so `herd logs <name>` finds it without a broker. */
  rememberName(herdId: string, name: string): void {
    if (name === '' || this.names.get(herdId) === name) return;
    this.ensureDir();
    const path = join(this.dir, nameFileName(herdId));
    let known: string | undefined;
    try {
      known = readFileSync(path, 'utf8').trim();
    } catch {
      known = undefined;
    }
    if (known !== name) {
      writeFileSync(`${path}.tmp`, `${name}\n`);
      renameSync(`${path}.tmp`, path);
    }
    this.names.set(herdId, name);
  }

  /** Forgets what it knows of a herd id that is gone (its file stays). */
  forget(herdId: string): void {
    for (const key of this.last.keys()) if (key.startsWith(`${herdId}|`)) this.last.delete(key);
    this.names.delete(herdId);
    const path = this.pathOf(herdId);
    const open = this.open.get(path);
    if (open !== undefined) {
      closeSync(open.fd);
      this.open.delete(path);
    }
  }

  close(): void {
    for (const f of this.open.values()) closeSync(f.fd);
    this.open.clear();
  }

  private fileFor(path: string): { fd: number; size: number } {
    const known = this.open.get(path);
    if (known !== undefined) {
      this.open.delete(path);
      this.open.set(path, known);
      return known;
    }
    if (this.open.size >= this.maxOpenFiles) {
      const [oldPath, old] = this.open.entries().next().value as [string, { fd: number }];
      closeSync(old.fd);
      this.open.delete(oldPath);
    }
    this.ensureDir();
    // Reopened (more containers than open files): only an append, no tail check.
    const fd = this.checked.has(path) ? openSync(path, 'a') : openForAppend(path);
    this.checked.add(path);
    const file = { fd, size: fstatSync(fd).size };
    this.open.set(path, file);
    return file;
  }

  private ensureDir(): void {
    if (this.dirReady) return;
    mkdirSync(this.dir, { recursive: true });
    this.dirReady = true;
  }
}

/** How far back a resume looks for a container's last line (the file may be long). */
export const RESUME_SCAN_BYTES = 16 * 1024 * 1024;

/**
 * Reads a container's log backwards (`path`, then its rotated files `.1`, `.2`…) until a
 * complete record of `dockerShortId` is found, and returns its time. A log can be long and
 * a container new (the copy on a migration's target has no line yet): the scan stops after
 * `maxBytes`, and then returns the earliest time among the records it read. Only one copy
 * of a container writes at a time, so a copy whose last line is further back than that
 * wrote nothing since: nothing after that time is lost, and nothing before it is written
 * again.
 */
export function scanLastAt(path: string, dockerShortId: string, maxBytes = RESUME_SCAN_BYTES): bigint | undefined {
  const needle = `"dockerId":"${dockerShortId}"`;
  let earliest: bigint | undefined;
  /** The record's time if it is one of the container's; notes the earliest time seen. */
  const check = (line: Buffer): bigint | undefined => {
    if (line.length === 0) return undefined;
    const mine = line.includes(needle);
    if (!mine && earliest !== undefined) {
      // Cheap: only the "at" field, at the start of every record.
      const at = /^\{"at":"([^"]+)"/.exec(line.subarray(0, 64).toString('latin1'))?.[1];
      const ns = at === undefined ? undefined : parseNanoTime(at);
      if (ns !== undefined && ns < earliest) earliest = ns;
      return undefined;
    }
    const r = parseLogLine(line.toString('utf8'));
    if (r === undefined) return undefined;
    const ns = parseNanoTime(r.at);
    if (ns !== undefined && (earliest === undefined || ns < earliest)) earliest = ns;
    return r.dockerId === dockerShortId ? ns : undefined;
  };
  let scanned = 0;
  for (const file of logFilesOldestFirst(path).reverse()) {
    if (!existsSync(file)) continue;
    const fd = openSync(file, 'r');
    try {
      let pos = fstatSync(fd).size;
      let carry = Buffer.alloc(0);
      while (pos > 0) {
        if (scanned >= maxBytes) return earliest;
        const n = Math.min(SCAN_CHUNK_BYTES, pos);
        pos -= n;
        scanned += n;
        const chunk = Buffer.alloc(n);
        readSync(fd, chunk, 0, n, pos);
        const data = carry.length === 0 ? chunk : Buffer.concat([chunk, carry]);
        let end = data.length;
        for (let i = data.length - 1; i >= 0; i--) {
          if (data[i] !== 0x0a) continue;
          // An unterminated tail counts when it is a complete record: the writer ends it with a newline on its next append.
          const found = check(data.subarray(i + 1, end));
          if (found !== undefined) return found;
          end = i;
        }
        carry = Buffer.from(data.subarray(0, end));
      }
      const found = check(carry);
      if (found !== undefined) return found;
    } finally {
      closeSync(fd);
    }
  }
  return undefined;
}

/** Herd ids whose log is in `dir` and whose remembered name is `name`, newest log first. */
export function herdIdsNamed(dir: string, name: string): string[] {
  if (!existsSync(dir)) return [];
  const found: Array<{ herdId: string; mtimeMs: number }> = [];
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.name')) continue;
    const herdId = f.slice(0, -'.name'.length);
    if (!ID_PATTERN.test(herdId)) continue;
    let known: string;
    try {
      known = readFileSync(join(dir, f), 'utf8').trim();
    } catch {
      continue;
    }
    if (known !== name) continue;
    const log = join(dir, logFileName(herdId));
    if (!existsSync(log)) continue;
    const fd = openSync(log, 'r');
    try {
      found.push({ herdId, mtimeMs: fstatSync(fd).mtimeMs });
    } finally {
      closeSync(fd);
    }
  }
  return found.sort((a, b) => b.mtimeMs - a.mtimeMs).map((f) => f.herdId);
}
