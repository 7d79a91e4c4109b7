/**
 * The lab benchmarks' control daemon: `useControl` swaps the lab's own (paused, lab
 * settings) for one running the benchmark's loop settings on the same broker port, and puts
 * the lab's own back afterwards.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labControlConfig } from '../../control/lab/lab-up.ts';
import type { LabLayout } from '../../control/lab/layout.ts';
import { livePid, spawnDetached } from '../../control/lab/shell.ts';
import { herdRoot } from '../../control/lab/state.ts';
import { herd, herdOk } from '../support/herd-cli.ts';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** Replaces the lab's control daemon with one of ours (same broker port, our loop settings, unpaused); undefined restores the lab's own. */
export async function useControl(layout: LabLayout, loop: Record<string, unknown> | undefined, dir: string): Promise<void> {
  const pid = livePid(layout.controlPidFile, 'control');
  if (pid !== undefined) {
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 50 && livePid(layout.controlPidFile, 'control') !== undefined; i++) await sleep(200);
  }
  if (loop === undefined) {
    await herdOk(['lab', 'up', '--hosts', String(layout.hosts.length)], { timeoutMs: 300_000 });
  } else {
    const base = labControlConfig(layout);
    const file = join(dir, `control-${Date.now()}.json`);
    writeFileSync(file, JSON.stringify({ ...base, loop: { ...base.loop, ...loop, startPaused: false, stateDir: join(dir, `state-${Date.now()}`) } }));
    const child = spawnDetached(`${herdRoot()}/bin/herd`, ['control', '--config', file], join(dir, 'control.log'));
    writeFileSync(layout.controlPidFile, `${child}\n`);
  }
  // The compute daemons reconnect to the new broker.
  for (let i = 0; i < 60; i++) {
    const r = await herd(['hosts', '--json']);
    if (r.code === 0 && (JSON.parse(r.stdout) as { state: string }[]).filter((h) => h.state === 'online').length === layout.hosts.length) return;
    await sleep(1000);
  }
  throw new Error('the compute hosts did not come back online after the control daemon was replaced');
}

/**
 * Pauses the lab's control loop for a measurement (it would move the benchmark's containers,
 * and its evaluations cost CPU); the returned function resumes it if it was running before.
 */
export async function pauseLoopFor(reason: string): Promise<() => Promise<void>> {
  const status = await herd(['status', '--json']);
  const paused = status.code === 0 ? (JSON.parse(status.stdout) as { control?: { paused?: boolean } }).control?.paused : undefined;
  // Already paused (the lab starts its loop paused): left as it is, with its own reason.
  if (paused === true) return async () => undefined;
  await herdOk(['control', 'pause', '--reason', reason]);
  return async () => {
    if (paused === false) await herd(['control', 'resume']);
  };
}
