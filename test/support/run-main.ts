/** Runs the herd CLI in-process (control/cli/main.ts's main), capturing what it writes. */
import { main } from '../../control/cli/main.ts';

export interface MainResult {
  code: number;
  out: string;
  err: string;
  /** What main threw instead of returning (it never should: the CLI tests check for this). */
  threw?: unknown;
}

export async function runMain(argv: string[]): Promise<MainResult> {
  let out = '';
  let err = '';
  const stdout = process.stdout.write.bind(process.stdout);
  const stderr = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string | Uint8Array) => ((out += String(s)), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => ((err += String(s)), true)) as typeof process.stderr.write;
  try {
    return { code: await main(argv), out, err };
  } catch (threw) {
    return { code: -1, out, err, threw };
  } finally {
    process.stdout.write = stdout;
    process.stderr.write = stderr;
    process.exitCode = undefined;
  }
}
