/** Opening JSON-lines files for crash-safe appends (the dataset and the container logs). */
import { fstatSync, openSync, readSync, writeSync } from 'node:fs';

/** Opens `path` for appending; a torn last line left by a crash is ended first, so the next record starts on its own line. */
export function openForAppend(path: string): number {
  const fd = openSync(path, 'a+');
  const size = fstatSync(fd).size;
  if (size > 0) {
    const last = Buffer.alloc(1);
    readSync(fd, last, 0, 1, size - 1);
    if (last[0] !== 0x0a) writeSync(fd, '\n');
  }
  return fd;
}
