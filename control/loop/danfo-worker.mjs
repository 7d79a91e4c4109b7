// The window aggregation's danfojs work, in a worker thread (control/loop/danfo-aggregator.ts):
// danfojs takes seconds to load and about a second per aggregation at 1,000 containers, all
// synchronous, and the control daemon's event loop also runs its broker. Plain JavaScript,
// so that it loads without tsx's loader (under vitest too).
import { parentPort } from 'node:worker_threads';

const dfd = await import('danfojs-node');

// danfojs' groupby grows faster than the number of groups (measured here: 6,000 groups of 6
// rows 0.7 s, 18,000 6.3 s, 60,000 180 s; 1,000 about 30 ms): it runs on chunks of at most
// CHUNK_KEYS keys, every row of a key in the key's chunk, which keeps it linear.
const CHUNK_KEYS = 1000;

function aggregate(keys, values) {
  const chunkOf = new Map();
  const chunks = [];
  for (let i = 0; i < keys.length; i++) {
    let c = chunkOf.get(keys[i]);
    if (c === undefined) {
      c = Math.floor(chunkOf.size / CHUNK_KEYS);
      chunkOf.set(keys[i], c);
      if (c === chunks.length) chunks.push({ key: [], value: [] });
    }
    chunks[c].key.push(keys[i]);
    chunks[c].value.push(values[i]);
  }
  return chunks.flatMap((chunk) => dfd.toJSON(new dfd.DataFrame(chunk).groupby(['key']).agg({ value: ['mean', 'max', 'count'] })));
}

parentPort.on('message', ({ id, keys, values }) => {
  try {
    parentPort.postMessage({ id, rows: aggregate(keys, values) });
  } catch (err) {
    parentPort.postMessage({ id, error: err instanceof Error ? err.message : String(err) });
  }
});
parentPort.postMessage({ ready: true });
