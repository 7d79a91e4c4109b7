/**
 * `herd simulate --scenario FILE [--json] [--policy NAME]`: replays one scenario file in
 * the cluster simulator (control/sim) and compares control (no migration), the ideal
 * static placement (when the scenario is small enough for the exhaustive search) and
 * each policy with and without the safety layer. Offline: needs no broker.
 */
import { Command, Option } from 'commander';
import { POLICY_NAMES } from '../../policies/registry.ts';
import { compareScenario, comparisonJson, formatComparison } from '../sim/compare.ts';
import { loadScenarioFile } from '../sim/scenario.ts';
import { printJson } from './context.ts';

export function registerSimulateCommand(program: Command): void {
  program
    .command('simulate')
    .description('replay a scenario file in the cluster simulator: control, ideal static placement, each policy with and without the safety layer (offline)')
    .requiredOption('--scenario <file>', 'scenario file (JSON, schema control/sim/scenario.schema.json)')
    .addOption(new Option('--policy <name>', 'compare only this policy (default: cpu-greedy, cpu-greedy-multithread, oltp-disk)').choices(POLICY_NAMES))
    .option('--json', 'print the comparison as JSON (with each run\'s migrations)')
    .action((opts: { scenario: string; policy?: string; json?: boolean }) => {
      const scenario = loadScenarioFile(opts.scenario);
      const comparison = compareScenario(scenario, opts.policy === undefined ? {} : { policies: [opts.policy], includeChain: false });
      if (opts.json === true) {
        printJson(comparisonJson(comparison));
        return;
      }
      if (scenario.description !== undefined) process.stdout.write(`# ${scenario.description}\n`);
      process.stdout.write(`${formatComparison(comparison)}\n`);
    });
}
