/**
 * `herd doctor`'s security checks: what in the daemons' configs lets someone who reaches
 * the broker, or reads a file, run, stop or move containers. One check per config file,
 * failing with every problem found and how to fix it.
 */
import { existsSync, statSync } from 'node:fs';
import type { z } from 'zod';
import { computeConfigSchema } from '../compute/config.ts';
import { monitorConfigSchema } from '../monitor/config.ts';
import { loadConfig, type BrokerAuth } from '../protocol/config.ts';
import { toHerdError } from '../protocol/errors.ts';
import { controlConfigSchema } from './config.ts';
import type { CheckResult } from './doctor.ts';

export type DaemonKind = 'control' | 'compute' | 'monitor';
const SCHEMAS: Record<DaemonKind, z.ZodType> = { control: controlConfigSchema, compute: computeConfigSchema, monitor: monitorConfigSchema };

const LOOPBACK = /^(127\.|localhost$|::1$|\[::1\]$)/;

function hostOf(url: string): string | undefined {
  try {
    return new URL(url).hostname;
  } catch {
    return undefined;
  }
}

/** What is insecure in how a daemon connects to the broker. */
function clientProblems(broker: BrokerAuth & { url?: string | undefined }): string[] {
  const problems: string[] = [];
  const url = broker.url ?? '';
  const host = hostOf(url);
  if (url.startsWith('mqtt:') && host !== undefined && !LOOPBACK.test(host)) problems.push(`connects to ${url} over plain TCP: credentials and commands cross the network readable (use mqtts:// and broker.caFile)`);
  if (broker.credentialsFile === undefined && broker.username === undefined) problems.push('connects without credentials (set broker.credentialsFile; herd auth init writes one per identity)');
  if (broker.password !== undefined) problems.push('has the broker password in the config file (use broker.credentialsFile, mode 0600)');
  return problems;
}

/** The problems of one loaded config. */
export function configProblems(kind: DaemonKind, config: any): string[] {
  if (kind !== 'control') return clientProblems(config.broker);
  const b = config.broker;
  if (!b.embedded) return [...clientProblems(b), `uses the external broker ${b.url}: herd doctor cannot see its rules (herd auth mosquitto writes a password file and ACLs for Mosquitto)`];
  const problems: string[] = [];
  if (b.auth.allowAnonymous) problems.push('the embedded broker admits anonymous clients: anyone who reaches it can run, stop and move containers (set broker.auth.usersFile from herd auth init)');
  if (b.tls === undefined && !LOOPBACK.test(b.host)) problems.push(`the embedded broker listens on ${b.host}:${b.port} over plain TCP (set broker.tls; herd auth init --tls-name makes a certificate)`);
  if (b.host === '0.0.0.0' || b.host === '::') problems.push(`the embedded broker listens on every interface (${b.host}); name the address compute hosts use`);
  if (b.password !== undefined) problems.push('has the broker password in the config file (use broker.credentialsFile, mode 0600)');
  return problems;
}

/** Checks each config file that exists: its mode and its settings. */
export function securityChecks(files: { kind: DaemonKind; file: string }[]): CheckResult[] {
  return files
    .filter((f) => existsSync(f.file))
    .map(({ kind, file }) => {
      const name = `security: ${kind} config ${file}`;
      const problems: string[] = [];
      const mode = statSync(file).mode & 0o777;
      if ((mode & 0o077) !== 0) problems.push(`readable by group or others (mode ${mode.toString(8)}): chmod 600 ${file}`);
      try {
        problems.push(...configProblems(kind, loadConfig(SCHEMAS[kind], { file, what: `${kind} config` })));
      } catch (err) {
        problems.push(`does not load: ${toHerdError(err).message}`);
      }
      if (problems.length === 0) return { name, ok: true, detail: 'authenticated, encrypted, file mode 600', provisionable: false };
      return { name, ok: false, detail: problems.join('; '), fix: 'see docs/security.md', provisionable: false };
    });
}
