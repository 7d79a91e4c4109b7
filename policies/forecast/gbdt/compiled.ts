/**
 * Generated code of the learner: compileOnce, and the descents (see ensemble.ts): for one tree depth, one row width and one rounding
 * mode, a function that takes eight rows of a block at a time through a complete-layout tree
 * with the levels unrolled, the row offsets and the leaves' offset as constants, the root's
 * split read once, and the tree's slots as views of their own (so no per-tree base is added
 * at every step).
 * Only integers that are checked here go into the generated source (the depth, the number of
 * columns, the group size); thresholds, features and leaf values stay in typed arrays, so a
 * model's numbers never become code.
 */

/**
 * Adds one tree (`f`, `th`: its split slots; `leaf`: its leaf slots) to `acc` for block rows
 * `from`… (none missing) in groups of GROUP; returns the first row not done.
 */
export type GroupDescent = (f: Int32Array, th: Float64Array, leaf: Float64Array, block: Float64Array, from: number, to: number, acc: Float64Array) => number;

export const GROUP = 8;
/** Compiled descents by depth, columns and rounding mode. */
const descents = new Map<string, GroupDescent>();

/** Generated functions kept per cache; a full cache is cleared (a few shapes recur in practice). */
const CACHE_LIMIT = 64;
/** Set once `new Function` has thrown (node --disallow-code-generation-from-strings): never tried again. */
let codeGenerationDisallowed = false;

/**
 * `new Function(...params, source())`, compiled once per `key` into `cache`; undefined where
 * code generation is disallowed (the caller then runs its plain loop). The one place where
 * the learner's generated code (descents here, histogram passes in grow.ts) is compiled.
 */
export function compileOnce<F>(cache: Map<string, F>, key: string, params: string[], source: () => string): F | undefined {
  const known = cache.get(key);
  if (known !== undefined || codeGenerationDisallowed) return known;
  const text = source();
  let fn: F;
  try {
    fn = new Function(...params, text) as F;
  } catch {
    codeGenerationDisallowed = true;
    return undefined;
  }
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(key, fn);
  return fn;
}

function checkInt(name: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) throw new Error(`${name} must be an integer in ${min}..${max}, got ${v}`);
}

/** The generated source of a GroupDescent (exported for tests). */
export function groupDescentSource(depth: number, cols: number, f32: boolean): string {
  checkInt('depth', depth, 1, 30);
  checkInt('cols', cols, 1, 2 ** 24);
  const rows = Array.from({ length: GROUP }, (_, k) => k);
  const lines: string[] = [];
  lines.push('let j = from;', `for (; j + ${GROUP} <= to; j += ${GROUP}) {`, `  const r = j * ${cols};`);
  lines.push('  const rf = f[0]; const rt = th[0];');
  for (const k of rows) lines.push(`  let i${k} = 1 + +(block[r + ${k * cols} + rf] >= rt);`);
  for (let level = 1; level < depth; level++) {
    for (const k of rows) lines.push(`  i${k} = 2 * i${k} + 1 + +(block[r + ${k * cols} + f[i${k}]] >= th[i${k}]);`);
  }
  for (const k of rows) {
    const sum = `acc[j + ${k}] + leaf[i${k} - ${2 ** depth - 1}]`;
    lines.push(`  acc[j + ${k}] = ${f32 ? `Math.fround(${sum})` : sum};`);
  }
  lines.push('}', 'return j;');
  return lines.join('\n');
}

/**
 * The GroupDescent for trees of `depth` levels over rows of `cols` columns (compiled once,
 * then cached); undefined where code generation is disallowed (the caller's generic loop).
 */
export function groupDescent(depth: number, cols: number, f32: boolean): GroupDescent | undefined {
  return compileOnce(descents, `${depth}/${cols}/${f32 ? 1 : 0}`, ['f', 'th', 'leaf', 'block', 'from', 'to', 'acc'], () => groupDescentSource(depth, cols, f32));
}
