/**
 * `cpu-greedy-multithread`: the greedy CPU policy with each container's thread count, so a
 * throttled multi-threaded container is placed by the cores it can use (its threads, up
 * to its CPU limit) rather than by one core.
 */
import type { ContainerSnapshot, PolicyDefinition } from '../model.ts';
import { greedyArgsSchema, planGreedy, type GreedyArgs } from '../cpu-greedy/greedy.ts';

/** Cores a container could keep busy: its threads (processes when threads are unknown), at least one. */
export function threadCap(c: ContainerSnapshot): number {
  return Math.max(1, c.threadCount ?? c.processCount ?? 1);
}

export const cpuGreedyMultithread: PolicyDefinition<GreedyArgs> = {
  name: 'cpu-greedy-multithread',
  description: 'cpu-greedy that sizes a throttled container by its thread count (up to its CPU limit), so multi-threaded containers get the cores they can use',
  argsSchema: greedyArgsSchema,
  plan: (snapshot, args) => planGreedy('cpu-greedy-multithread', snapshot, args, threadCap),
};
