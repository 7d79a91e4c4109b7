/**
 * Mean, max and count per key with danfojs-node (the users' choice for the windows), run
 * in a worker thread (danfo-worker.mjs). On the event loop, danfojs blocked the control
 * daemon, and so its embedded broker, for seconds: ~3.5 s to load (TensorFlow.js is
 * required synchronously) and ~1 s per aggregation at 1,000 containers. Measured on this
 * 2-core machine; clients missed their CONNACK meanwhile. The worker groups in chunks of
 * keys (danfojs' groupby grows faster than its group count): 10,000 containers take 2.3 s
 * there, 30,000 7.1 s, while the event loop here is held at most ~0.5 s (making the rows).
 *
 * One worker per process, started on first use (or by warmAggregator) and restarted after
 * it died; it keeps the process alive only while an aggregation is pending.
 */
import { Worker } from 'node:worker_threads';
import { HerdError } from '../../protocol/errors.ts';

export interface KeyAggregate {
  key: string;
  value_mean: number;
  value_max: number;
  value_count: number;
}

interface Reply {
  id?: number;
  ready?: boolean;
  rows?: KeyAggregate[];
  error?: string;
}

/** A reply later than this (danfojs stuck): the worker is ended and started again on the next request. */
const REPLY_TIMEOUT_MS = 300_000;

let worker: { thread: Worker; ready: Promise<void> } | undefined;
let nextId = 0;
const pending = new Map<number, { resolve: (rows: KeyAggregate[]) => void; reject: (err: Error) => void }>();

function failAll(err: Error): void {
  worker = undefined;
  for (const p of pending.values()) p.reject(err);
  pending.clear();
}

function ensureWorker(): { thread: Worker; ready: Promise<void> } {
  if (worker !== undefined) return worker;
  const thread = new Worker(new URL('./danfo-worker.mjs', import.meta.url));
  thread.unref();
  let markReady!: () => void;
  let markFailed!: (err: Error) => void;
  const ready = new Promise<void>((resolve, reject) => {
    markReady = resolve;
    markFailed = reject;
  });
  ready.catch(() => undefined);
  thread.on('message', (m: Reply) => {
    if (m.ready === true) return markReady();
    const p = m.id === undefined ? undefined : pending.get(m.id);
    if (p === undefined || m.id === undefined) return;
    pending.delete(m.id);
    if (pending.size === 0) thread.unref();
    if (m.error !== undefined) p.reject(new HerdError('INTERNAL', `window aggregation failed in danfojs: ${m.error}`));
    else p.resolve(m.rows ?? []);
  });
  const died = (why: string, cause?: unknown) => {
    if (worker?.thread !== thread) return;
    const err = new HerdError('INTERNAL', `the window aggregation worker (danfojs-node) ${why}; it is started again on the next evaluation`, cause === undefined ? undefined : { cause });
    markFailed(err);
    failAll(err);
  };
  thread.on('error', (err) => died(`failed: ${err.message}`, err));
  thread.on('exit', (code) => died(`exited (code ${code})`));
  worker = { thread, ready };
  return worker;
}

/** Starts the worker and loads danfojs in it, so that the first evaluation does not wait for the load. */
export function warmAggregator(): Promise<void> {
  return ensureWorker().ready;
}

/** Mean, max and count of `values` per key (keys[i] goes with values[i]), one row per key. */
export async function aggregateByKey(keys: string[], values: number[]): Promise<KeyAggregate[]> {
  const w = ensureWorker();
  const id = nextId++;
  const result = new Promise<KeyAggregate[]>((resolve, reject) => pending.set(id, { resolve, reject }));
  w.thread.ref();
  w.thread.postMessage({ id, keys, values });
  const timer = setTimeout(() => {
    if (!pending.has(id) || worker?.thread !== w.thread) return;
    failAll(new HerdError('TIMEOUT', `the window aggregation worker (danfojs-node) did not answer within ${REPLY_TIMEOUT_MS / 1000} s: it is ended and started again on the next evaluation`));
    void w.thread.terminate();
  }, REPLY_TIMEOUT_MS);
  timer.unref();
  return result.finally(() => clearTimeout(timer));
}
