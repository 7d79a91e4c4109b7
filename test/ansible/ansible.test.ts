/**
 * Herd's Ansible playbook on this machine: syntax for both inventories, two runs on
 * localhost, the second changes nothing, and CRIU/packages are in place afterwards.
 * All of it is scripts/check-ansible; this test runs it and reads its PASS/FAIL and
 * PLAY RECAP lines. It never skips: without ansible-core or root it fails and says why.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const script = join(repoRoot, 'scripts', 'check-ansible');

interface Recap { run: number; ok: number; changed: number; failed: number }

function parseRecaps(output: string): Recap[] {
  const recaps: Recap[] = [];
  for (const m of output.matchAll(/^RECAP run (\d+) .*?ok=(\d+) changed=(\d+) unreachable=\d+ failed=(\d+)/gm)) {
    recaps.push({ run: Number(m[1]), ok: Number(m[2]), changed: Number(m[3]), failed: Number(m[4]) });
  }
  return recaps;
}

function runScript(path: string, timeoutMs: number): Promise<{ status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; error?: Error }> {
  return new Promise((resolve) => {
    const child = spawn(path, [], { cwd: repoRoot, timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (error) => resolve({ status: null, signal: null, stdout, stderr, error }));
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr }));
  });
}

describe('ansible playbook (scripts/check-ansible)', () => {
  it('is installed: ansible-playbook and root', () => {
    expect(existsSync('/usr/bin/ansible-playbook'), 'ansible-playbook not found: run scripts/setup (as root)').toBe(true);
    expect(process.getuid?.(), 'the playbook provisions this machine: run the tests as root').toBe(0);
  });

  it('passes syntax checks, runs twice on localhost, and the second run changes nothing', async () => {
    // Asynchronously: a worker blocked past 60 s misses vitest's own RPC deadline (onTaskUpdate) and fails the run.
    const res = await runScript(script, 900_000);
    const output = `${res.stdout ?? ''}${res.stderr ?? ''}`;
    const failures = output.split('\n').filter((l) => l.startsWith('FAIL'));
    expect(failures, `scripts/check-ansible reported:\n${output}`).toEqual([]);
    expect(res.status, `scripts/check-ansible exited ${String(res.status)} (${String(res.error ?? res.signal ?? '')}):\n${output}`).toBe(0);
    const recaps = parseRecaps(output);
    expect(recaps.map((r) => r.run), output).toEqual([1, 2]);
    for (const r of recaps) expect(r.failed, output).toBe(0);
    expect(recaps[1]?.changed, `second run must report changed=0:\n${output}`).toBe(0);
    expect(recaps[1]?.ok ?? 0).toBeGreaterThan(20);
    expect(output).toMatch(/^PASS: \/usr\/sbin\/criu check: Version: 4\.\d/m);
  }, 900_000);
});
