/** Runs the real `herd` executable, as a user would. */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
export const HERD_BIN = `${REPO_ROOT}/bin/herd`;

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function herd(args: string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return new Promise((done) => {
    execFile(HERD_BIN, args, { timeout: options.timeoutMs ?? 300_000, maxBuffer: 32 * 1024 * 1024, env: { ...process.env, ...options.env } }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1;
      done({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** Runs herd and throws with its output when it fails. */
export async function herdOk(args: string[], options: { timeoutMs?: number } = {}): Promise<string> {
  const r = await herd(args, options);
  if (r.code !== 0) throw new Error(`herd ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}
