import { Command } from 'commander';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { registerSimulateCommand } from '../cli/simulate-command.ts';

const example = fileURLToPath(new URL('./scenarios/two-hosts.json', import.meta.url));

async function run(args: string[]): Promise<string> {
  const program = new Command('herd').exitOverride();
  registerSimulateCommand(program);
  program.commands.forEach((c) => c.exitOverride());
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  try {
    await program.parseAsync(['simulate', ...args], { from: 'user' });
  } finally {
    spy.mockRestore();
  }
  return out;
}

describe('herd simulate', () => {
  afterEach(() => vi.restoreAllMocks());

  it('prints the comparison table of a scenario file', async () => {
    const out = await run(['--scenario', example]);
    for (const row of ['control (no migration)', 'ideal (best static placement)', 'cpu-greedy + safety', 'cpu-greedy (no safety)', 'cpu-greedy-multithread + safety', 'oltp-disk (no safety)']) expect(out).toContain(row);
    expect(out).toMatch(/host CPU %\s+container CPU %\s+ops\/s\s+% of ideal\s+% over control\s+migrations/);
  });

  it('--policy NAME --json: only that policy, as JSON', async () => {
    const json = JSON.parse(await run(['--scenario', example, '--policy', 'cpu-greedy-multithread', '--json'])) as { scenario: string; rows: { label: string; pctOfIdeal: number | null; migrationLog: unknown[] }[] };
    expect(json.scenario).toBe('two-hosts');
    expect(json.rows.map((r) => r.label)).toEqual(['control (no migration)', 'ideal (best static placement)', 'cpu-greedy-multithread + safety', 'cpu-greedy-multithread (no safety)']);
    expect(json.rows[1]?.pctOfIdeal).toBe(100);
  });

  it('a policy the scenario gives no usable arguments is refused up front, naming them (not rows equal to "control")', async () => {
    await expect(run(['--scenario', example, '--policy', 'forecast-greedy'])).rejects.toMatchObject({ code: 'BAD_CONFIG', message: expect.stringMatching(/^forecast-greedy cannot run on scenario two-hosts: forecast-greedy\.args\.model: forecast-greedy needs a trained model/) });
  });

  it('a bad file is BAD_CONFIG naming it', async () => {
    await expect(run(['--scenario', '/nonexistent/scenario.json'])).rejects.toMatchObject({ code: 'BAD_CONFIG', message: expect.stringContaining('/nonexistent/scenario.json') });
  });
});
