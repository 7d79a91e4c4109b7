/**
 * The dependency direction of DESIGN.md, checked on the sources:
 * - policies/ is pure decision code: it imports only itself and zod; no `node:` module, no
 *   clock, no randomness, no process, no timers;
 * - protocol/ imports nothing of Herd's daemons or policies;
 * - only control/ imports policies/;
 * - a daemon never imports another daemon's internals: control/ (the CLI composes the
 *   others) may import only each daemon's public modules, compute/ and monitor/ import
 *   nothing of each other or of control/.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './support/herd-cli.ts';

const COMPONENTS = ['protocol', 'policies', 'compute', 'monitor', 'control'] as const;
type Component = (typeof COMPONENTS)[number];

/** What other components may import of a daemon (its commands, config schema, entry point). */
const PUBLIC_MODULES: Partial<Record<Component, string[]>> = {
  compute: ['compute/main.ts', 'compute/config.ts'],
  monitor: ['monitor/main.ts', 'monitor/config.ts', 'monitor/cli.ts', 'monitor/cgroup-reader.ts', 'monitor/dataset/index.ts'],
};

const MAY_IMPORT: Record<Component, Component[]> = {
  protocol: [],
  policies: [],
  compute: ['protocol'],
  monitor: ['protocol'],
  control: ['protocol', 'policies', 'compute', 'monitor'],
};

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (name === 'node_modules' || name.startsWith('.')) continue;
    if (statSync(path).isDirectory()) out.push(...sources(path));
    else if (name.endsWith('.ts') && !name.endsWith('.test.ts')) out.push(path);
  }
  return out;
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => (m[1] ?? m[2]) as string);
}

const componentOf = (repoPath: string) => COMPONENTS.find((c) => repoPath.startsWith(`${c}/`));

describe('architecture', () => {
  const files = COMPONENTS.flatMap((c) => sources(join(REPO_ROOT, c)));

  it('finds the sources', () => {
    expect(files.length).toBeGreaterThan(50);
    expect(files.some((f) => f.includes('/policies/'))).toBe(true);
  });

  it('components import only what the dependency direction allows', () => {
    const violations: string[] = [];
    for (const file of files) {
      const from = relative(REPO_ROOT, file);
      const own = componentOf(from) as Component;
      for (const spec of importsOf(file)) {
        if (!spec.startsWith('.')) continue;
        const target = relative(REPO_ROOT, resolve(dirname(file), spec));
        const other = componentOf(target);
        if (other === undefined || other === own) continue;
        if (!MAY_IMPORT[own].includes(other)) violations.push(`${from} imports ${target} (${own} may not import ${other})`);
        else if (PUBLIC_MODULES[other] !== undefined && !PUBLIC_MODULES[other].includes(target)) violations.push(`${from} imports ${target}, an internal module of ${other} (public: ${PUBLIC_MODULES[other].join(', ')})`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('policies are pure: only zod and themselves, no node modules, clock, randomness, process or timers', () => {
    const violations: string[] = [];
    for (const file of files.filter((f) => relative(REPO_ROOT, f).startsWith('policies/'))) {
      const from = relative(REPO_ROOT, file);
      for (const spec of importsOf(file)) {
        if (spec === 'zod') continue;
        if (!spec.startsWith('.')) violations.push(`${from} imports ${spec}`);
        else if (!relative(REPO_ROOT, resolve(dirname(file), spec)).startsWith('policies/')) violations.push(`${from} imports ${spec} outside policies/`);
      }
      const code = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
      for (const banned of [/\bDate\.now\b/, /\bnew Date\b/, /\bMath\.random\b/, /\bperformance\.now\b/, /\bprocess\./, /\bsetTimeout\b/, /\bsetInterval\b/, /\brequire\(/, /\bcrypto\./]) {
        if (banned.test(code)) violations.push(`${from} uses ${banned.source.replace(/\\b/g, '')}`);
      }
    }
    expect(violations).toEqual([]);
  });
});
