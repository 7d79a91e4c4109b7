/** `cpu-greedy`: Herd's greedy CPU policy; every container is taken as single-threaded. */
import type { PolicyDefinition } from '../model.ts';
import { greedyArgsSchema, planGreedy, type GreedyArgs } from './greedy.ts';

export const cpuGreedy: PolicyDefinition<GreedyArgs> = {
  name: 'cpu-greedy',
  description: 'moves containers off hosts whose CPU demand exceeds their cores, to the host with the most room; a throttled container is assumed to want one core',
  argsSchema: greedyArgsSchema,
  plan: (snapshot, args) => planGreedy('cpu-greedy', snapshot, args, () => 1),
};
