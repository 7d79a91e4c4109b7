/**
 * Suites that need the lab bring it up themselves; if it was not up before the test
 * run, it is taken down at the end so that a test run leaves the machine as it found it.
 */
import { existsSync } from 'node:fs';
import { herd } from './support/herd-cli.ts';

export default function setup(): () => Promise<void> {
  const wasUp = existsSync('/var/lib/herd-lab/lab.json');
  return async () => {
    if (!wasUp && existsSync('/var/lib/herd-lab/lab.json')) await herd(['lab', 'down'], { timeoutMs: 120_000 });
  };
}
