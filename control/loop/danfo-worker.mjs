// The window aggregation's danfojs work, in a worker thread (control/loop/danfo-aggregator.ts):
// danfojs takes seconds to load and about a second per aggregation at 1,000 containers, all
// synchronous, and the control daemon's event loop also runs its broker. Plain JavaScript,
// so that it loads without tsx's loader (under vitest too).
import { parentPort } from 'node:worker_threads';

const dfd = await import('danfojs-node');

parentPort.on('message', ({ id, keys, values }) => {
  try {
    const df = new dfd.DataFrame({ key: keys, value: values });
    const rows = dfd.toJSON(df.groupby(['key']).agg({ value: ['mean', 'max', 'count'] }));
    parentPort.postMessage({ id, rows });
  } catch (err) {
    parentPort.postMessage({ id, error: err instanceof Error ? err.message : String(err) });
  }
});
parentPort.postMessage({ ready: true });
