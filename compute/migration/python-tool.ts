/**
 * Herd's Python tools beside the daemon (bin/herd-blocks.py, bin/herd-pages.py): a child whose
 * stdout is the stream to send. Hashing runs in its own process, beside the daemon's SSH streams.
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { BLOCKS_PYTHON } from '../config.ts';

/** A tool in the checkout's bin/, beside the forced command that runs its receiving half. */
export const toolPath = (name: string): string => resolve(import.meta.dirname, '../../bin', name);

export interface ToolProcess {
  /** Its stdout; ends once it exited 0, fails with its stderr otherwise. */
  out: Readable;
  /** Writes `input` to its stdin. */
  write(input: Buffer): void;
  /** Writes `input` to its stdin and closes it. */
  end(input: Buffer): void;
  /** Ends a tool whose output is no longer wanted. */
  kill(): void;
}

export function runTool(tool: string, args: readonly string[], what: string): ToolProcess {
  // -I -S: the standard library only (no site-packages to import: ~25 ms less start-up).
  const child = spawn(BLOCKS_PYTHON, ['-I', '-S', tool, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.on('error', () => undefined); // the tool failing early closes it: its exit code says why
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // Pipe at once: Node resumes (and so discards) an unread child stdout when the child exits.
  const out = new PassThrough();
  child.stdout.pipe(out, { end: false });
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  out.on('close', kill);
  child.on('close', (code) => (code === 0 ? out.end() : out.destroy(new Error(`${what} exited ${code}: ${stderr.trim()}`))));
  child.on('error', (err) => out.destroy(new Error(`cannot run ${BLOCKS_PYTHON} ${tool} (apt-get install python3): ${err.message}`)));
  return { out, write: (input) => void child.stdin.write(input), end: (input) => child.stdin.end(input), kill };
}
