/**
 * Durable writes for the daemons' state files (migration records, the control loop's
 * history and state), done on libuv's thread pool, never on the event loop: an fsync can
 * take seconds on a busy disk (a migration writing a root filesystem beside it), and a
 * daemon whose loop waits on it stops answering. The control daemon embeds the broker,
 * so a blocking fsync there stalled every client's CONNACK.
 */
import { open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Makes a rename or unlink in `dir` durable (without it, a rename may not survive a crash). */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes `text` to `file` opened with `flags` (created with `mode`) and fsyncs it. */
async function writeSynced(file: string, flags: 'w' | 'a', text: string, mode: number): Promise<void> {
  const handle = await open(file, flags, mode);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Replaces `file` atomically: a temp file beside it, fsynced, renamed over it, the directory fsynced. */
export async function replaceFileDurably(file: string, text: string, mode = 0o600, tmp = `${file}.tmp`): Promise<void> {
  await writeSynced(tmp, 'w', text, mode);
  await rename(tmp, file);
  await syncDirectory(dirname(file));
}

/** Appends `text` to `file` (created with `mode`) and fsyncs it before resolving. */
export function appendFileDurably(file: string, text: string, mode = 0o600): Promise<void> {
  return writeSynced(file, 'a', text, mode);
}

/**
 * Runs writes one after another in the order they were queued (two writes of one file must
 * not interleave). A failed write does not stop the ones after it; its caller gets the error.
 */
export class WriteQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(write: () => Promise<T>): Promise<T> {
    const done = this.tail.then(write);
    this.tail = done.catch(() => undefined);
    return done;
  }

  /** Resolves when every write queued so far has ended. */
  async idle(): Promise<void> {
    await this.tail;
  }
}
