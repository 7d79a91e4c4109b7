/**
 * Malformed arguments to every CLI command that can take them safely (everything but the
 * daemons, the lab and the demo, which act on this machine): random tokens, the command's
 * own flags with garbage values, hostile strings. Each run must end with exit 0, 1 or 2
 * and an error naming the problem, never an exception, a stack trace or an INTERNAL error.
 * In-process (control/cli/main.ts's main) against a broker port nobody listens on.
 */
import fc from 'fast-check';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../control/cli/main.ts';
import { runMain } from '../support/run-main.ts';
import { freePort } from './helpers.ts';

/** Commands left out: they run daemons, build or tear down the lab, or wait for events by design. */
const UNSAFE = new Set(['compute', 'control', 'monitor', 'lab up', 'lab down', 'lab image', 'demo', 'doctor', 'auth init', 'auth mosquitto', 'forecast train']);
/** Flags left out of the pool: where to connect (fixed below) and following (waits forever by design). */
const FIXED_FLAGS = new Set(['--broker', '-f', '--follow']);

function leafCommands(cmd: Command, path: string[] = []): { path: string[]; flags: string[] }[] {
  if (cmd.commands.length === 0) return [{ path, flags: cmd.options.map((o) => o.long ?? o.short ?? '').filter((f) => f !== '' && !FIXED_FLAGS.has(f)) }];
  return cmd.commands.flatMap((c) => leafCommands(c, [...path, c.name()]));
}

const hostile = fc.constantFrom('', '-1', 'NaN', '1e309', '--', '{}', '[]', '../../etc/passwd', '/dev/null', 'h1', 'no-such-host', '\u0000', 'a'.repeat(300), '$(reboot)', '"', '--x=y', 'mqtt://', '0');

const run = runMain;

describe('herd CLI under malformed arguments', () => {
  const saved = process.env.HERD_BROKER;
  beforeAll(async () => {
    process.env.HERD_BROKER = `mqtt://127.0.0.1:${await freePort()}`;
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.HERD_BROKER;
    else process.env.HERD_BROKER = saved;
  });

  it('every safe command: 40 random argument lists each, a clear error or a result, never a crash', async () => {
    const commands = leafCommands(buildProgram()).filter((c) => !UNSAFE.has(c.path.join(' ')));
    expect(commands.length).toBeGreaterThan(20);
    let runs = 0;
    const seen = new Set<string>();
    for (const { path, flags } of commands) {
      const token = fc.oneof(fc.string({ maxLength: 12 }), hostile, ...(flags.length > 0 ? [fc.constantFrom(...flags)] : []));
      const argvs = fc.sample(fc.array(token, { maxLength: 6 }), { numRuns: 40, seed: path.join(' ').length * 7919 });
      for (const args of argvs) {
        const argv = [...path, ...args];
        const r = await run(argv);
        runs++;
        const shown = JSON.stringify(argv);
        expect(r.threw, `${shown} threw`).toBeUndefined();
        expect([0, 1, 2], `${shown} exited ${r.code}: ${r.err}`).toContain(r.code);
        expect(r.err, shown).not.toMatch(/\[INTERNAL\]|TypeError|ReferenceError|\n\s+at .*:\d+:\d+/);
        if (r.code !== 0) expect(r.err.trim().length, `${shown} failed without saying why`).toBeGreaterThan(0);
        seen.add(`${r.code} ${/\[([A-Z_]+)\]/.exec(r.err)?.[1] ?? (/error: (unknown option|too many arguments|missing required)/.exec(r.err)?.[1] ?? '')}`);
      }
    }
    expect(runs).toBe(commands.length * 40);
    // The runs reached the actions (the broker, files) as well as commander's own checks.
    for (const outcome of ['1 BROKER_UNAVAILABLE', '2 BAD_USAGE', '2 unknown option', '2 too many arguments']) expect([...seen], outcome).toContain(outcome);
  }, 600_000);
});
