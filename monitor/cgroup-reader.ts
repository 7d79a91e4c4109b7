/**
 * Reads every tracked container's usage (cgroup-fs.ts readCgroupUsage's values) in one
 * call per round, into a Float64Array of USAGE_FIELDS values per container (NaN where a
 * value is not available).
 *
 * Two readers with the same results: the native one (monitor/native/cgroup-reader.c, an
 * N-API addon built by scripts/build-native) makes the same system calls without Node's
 * per-call overhead, about half the CPU at 1000 containers (bench:monitor prints both);
 * the JavaScript one (FileReader + readCgroupUsage) needs nothing built.
 * `cgroupReader: auto` in the monitor's config takes the native one when it is built.
 */
import { createRequire } from 'node:module';
import { FileReader, openFilesLimit, readCgroupUsage, type CgroupUsagePaths } from './cgroup-fs.ts';
import { HerdError } from '../protocol/errors.ts';

/** Positions of the values of one container in a round's output. */
export const USAGE = { memoryBytes: 0, cpuUsageNs: 1, diskReads: 2, diskWrites: 3, processCount: 4, threadCount: 5, netInBytes: 6, netOutBytes: 7 } as const;
export const USAGE_FIELDS = 8;

export type CgroupReaderKind = 'native' | 'js';

export interface CgroupUsageReader {
  readonly kind: CgroupReaderKind;
  /** Starts tracking a container's files; returns its slot. */
  track(paths: CgroupUsagePaths): number;
  /** Stops tracking a slot and closes its files. */
  untrack(slot: number): void;
  /** Reads `slots[0..count)` into `out` (USAGE_FIELDS per slot); CPU time only when asked. */
  read(slots: Int32Array, count: number, cpuUsage: boolean, out: Float64Array): void;
  /** Files kept open. */
  openFiles(): number;
  close(): void;
}

/** The addon's functions (monitor/native/cgroup-reader.c). */
interface NativeModule {
  track(memoryUsage: string, cpuUsage: string, ioServiced: string, procs: string, pidsCurrent: string, tasks: string, procRoot: string): number;
  untrack(slot: number): void;
  read(slots: Int32Array, count: number, cpuUsage: boolean, out: Float64Array): void;
  setMaxOpen(n: number): void;
  openFiles(): number;
  fileSizes(fds: Int32Array, count: number, out: Float64Array): void;
}

export const NATIVE_READER_PATH = new URL('./native/build/cgroup-reader.node', import.meta.url).pathname;

let native: { module: NativeModule } | { error: string } | undefined;

/** The addon, loaded once; or why it cannot be used. */
export function loadNativeReader(): { module: NativeModule } | { error: string } {
  if (native === undefined) {
    try {
      const module = createRequire(import.meta.url)(NATIVE_READER_PATH) as NativeModule;
      // Half the process's file limit for kept-open cgroup files, as the JavaScript reader.
      module.setMaxOpen(Math.min(16_384, Math.floor(openFilesLimit() / 2)));
      native = { module };
    } catch (err) {
      native = { error: `${NATIVE_READER_PATH} cannot be loaded (${(err as Error).message.split('\n')[0]}); build it with scripts/build-native (needs gcc and Node's headers)` };
    }
  }
  return native;
}

/**
 * Sizes of open files (fstat), all in one call: `out[i]` for `fds[i]`, -1 when it fails.
 * Undefined without the native addon (callers then read every file).
 */
export function nativeFileSizes(): ((fds: Int32Array, count: number, out: Float64Array) => void) | undefined {
  const loaded = loadNativeReader();
  return 'module' in loaded ? loaded.module.fileSizes : undefined;
}

/** The native reader (its slots, on the process-wide addon). */
class NativeCgroupUsageReader implements CgroupUsageReader {
  readonly kind = 'native';
  private readonly slots = new Set<number>();

  constructor(private readonly module: NativeModule) {}

  track(p: CgroupUsagePaths): number {
    const slot = this.module.track(p.memoryUsage, p.cpuUsage, p.ioServiced, p.procs, p.pidsCurrent, p.tasks, p.procRoot);
    this.slots.add(slot);
    return slot;
  }

  untrack(slot: number): void {
    if (this.slots.delete(slot)) this.module.untrack(slot);
  }

  read(slots: Int32Array, count: number, cpuUsage: boolean, out: Float64Array): void {
    this.module.read(slots, count, cpuUsage, out);
  }

  openFiles(): number {
    return this.module.openFiles();
  }

  close(): void {
    for (const slot of this.slots) this.module.untrack(slot);
    this.slots.clear();
  }
}

/** The JavaScript reader: readCgroupUsage on a FileReader of its own. */
export class JsCgroupUsageReader implements CgroupUsageReader {
  readonly kind = 'js';
  private readonly paths: Array<CgroupUsagePaths | undefined> = [];
  private readonly free: number[] = [];
  private readonly files: FileReader;

  constructor(maxOpenFiles?: number) {
    this.files = new FileReader(maxOpenFiles);
  }

  track(p: CgroupUsagePaths): number {
    const slot = this.free.pop() ?? this.paths.length;
    this.paths[slot] = p;
    return slot;
  }

  untrack(slot: number): void {
    if (this.paths[slot] === undefined) return;
    this.paths[slot] = undefined;
    this.free.push(slot);
  }

  read(slots: Int32Array, count: number, cpuUsage: boolean, out: Float64Array): void {
    for (let k = 0; k < count; k++) {
      const base = k * USAGE_FIELDS;
      out.fill(Number.NaN, base, base + USAGE_FIELDS);
      const p = this.paths[slots[k]!];
      if (p === undefined) continue;
      const u = readCgroupUsage(p, this.files, cpuUsage);
      if (u.memoryBytes !== undefined) out[base + USAGE.memoryBytes] = u.memoryBytes;
      if (u.cpuUsageNs !== undefined) out[base + USAGE.cpuUsageNs] = u.cpuUsageNs;
      if (u.diskReads !== undefined) out[base + USAGE.diskReads] = u.diskReads;
      if (u.diskWrites !== undefined) out[base + USAGE.diskWrites] = u.diskWrites;
      if (u.processCount !== undefined) out[base + USAGE.processCount] = u.processCount;
      if (u.threadCount !== undefined) out[base + USAGE.threadCount] = u.threadCount;
      if (u.netInBytes !== undefined) out[base + USAGE.netInBytes] = u.netInBytes;
      if (u.netOutBytes !== undefined) out[base + USAGE.netOutBytes] = u.netOutBytes;
    }
    // Files of containers no longer read (gone between rounds) are closed.
    this.files.sweep();
  }

  openFiles(): number {
    return this.files.openFiles;
  }

  close(): void {
    this.files.close();
  }
}

/**
 * The reader to use: `native` (fails when the addon is not built), `js`, or `auto` (native
 * when it loads, else JavaScript with the reason in `fallback`).
 */
export function createCgroupUsageReader(choice: 'auto' | CgroupReaderKind): { reader: CgroupUsageReader; fallback?: string } {
  if (choice === 'js') return { reader: new JsCgroupUsageReader() };
  const loaded = loadNativeReader();
  if ('module' in loaded) return { reader: new NativeCgroupUsageReader(loaded.module) };
  if (choice === 'native') throw new HerdError('MISSING_DEPENDENCY', `cgroupReader is "native" but ${loaded.error}`);
  return { reader: new JsCgroupUsageReader(), fallback: loaded.error };
}
