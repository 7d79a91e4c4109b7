import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { registerMonitorCommands } from './cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'herd-monitor-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `herd <argv>` with the monitor's commands only; returns stdout. */
async function herd(...argv: string[]): Promise<string> {
  const program = new Command('herd').exitOverride();
  registerMonitorCommands(program, { defaultConfig: () => undefined });
  program.commands.forEach(function override(c: Command) {
    c.exitOverride();
    c.commands.forEach(override);
  });
  let out = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    await program.parseAsync(argv, { from: 'user' });
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
  return out;
}

describe('the dataset directory of metrics export and logs', () => {
  const absent = join(dir, 'absent');

  it.each([
    [['metrics', 'export', '--since', '1h', '--dir', absent], `dataset directory ${absent} (--dir) does not exist`],
    [['logs', 'web', '--dir', absent], `dataset directory ${absent} (--dir) does not exist`],
  ])('herd %j: says the directory does not exist instead of reading nothing', async (argv, message) => {
    await expect(herd(...argv)).rejects.toMatchObject({ code: 'BAD_USAGE', message });
  });

  it('names the config a missing datasetDir came from', async () => {
    const config = join(dir, 'monitor.yaml');
    writeFileSync(config, `hosts: [{ id: h1 }]\ndatasetDir: ${absent}\n`);
    await expect(herd('metrics', 'export', '--since', '1h', '-c', config)).rejects.toMatchObject({ code: 'BAD_USAGE', message: `dataset directory ${absent} (datasetDir of ${config}) does not exist` });
  });

  it('exports from a directory that exists, even an empty one', async () => {
    expect(await herd('metrics', 'export', '--since', '1h', '--dir', dir)).toMatch(/^kind,hostId,at,/);
  });
});
