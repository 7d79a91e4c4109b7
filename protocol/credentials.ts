/**
 * Broker credentials: the broker's users file (identities with password hashes) and the
 * credentials file each daemon or operator connects with. Both are secrets: written 0600
 * and refused when group or others can read them (as ssh refuses a readable key).
 *
 * Password hashes use Mosquitto's `$7$` format (PBKDF2-HMAC-SHA512:
 * `$7$<iterations>$<base64 salt>$<base64 hash>`), so that the same hashes serve a
 * Mosquitto password file.
 */
import { pbkdf2, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { computeNeedsHost, identityFields } from './access.ts';
import { describeIssues } from './codec.ts';
import { HerdError } from './errors.ts';

const pbkdf2Async = promisify(pbkdf2);
const ITERATIONS = 20_000;
const HASH_PATTERN = /^\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/;

export function hashPassword(password: string): string {
  const salt = randomBytes(12);
  const hash = pbkdf2Sync(password, salt, ITERATIONS, 64, 'sha512');
  return `$7$${ITERATIONS}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const m = HASH_PATTERN.exec(encoded);
  if (m === null) return false;
  const expected = Buffer.from(m[3] as string, 'base64');
  const actual = await pbkdf2Async(password, Buffer.from(m[2] as string, 'base64'), Number(m[1]), expected.length, 'sha512');
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** A random password for a generated identity (base64url, 32 bytes of entropy). */
export function newPassword(): string {
  return randomBytes(32).toString('base64url');
}

export const userEntrySchema = z
  .strictObject({ ...identityFields, passwordHash: z.string().regex(HASH_PATTERN, 'must be a $7$ (PBKDF2-SHA512) hash (herd auth init writes them)') })
  .refine(...computeNeedsHost);
export const usersFileSchema = z.strictObject({
  users: z.array(z.looseObject({ username: z.string(), passwordHash: z.string() })).min(1, 'at least one user'),
});
export type UserEntry = z.infer<typeof userEntrySchema>;

export const credentialsFileSchema = z.strictObject({ username: z.string().min(1), password: z.string().min(1) });
export type Credentials = z.infer<typeof credentialsFileSchema>;

/** Refuses a secret file that group or others may read (or that cannot be read). */
export function readSecretFile(path: string, what: string): string {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (err) {
    throw new HerdError('BAD_CONFIG', `cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  if ((mode & 0o077) !== 0) throw new HerdError('BAD_CONFIG', `${what} ${path} is readable by group or others (mode ${(mode & 0o777).toString(8)}): chmod 600 ${path}`);
  return readFileSync(path, 'utf8');
}

export function writeSecretFile(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 });
  chmodSync(path, 0o600);
}

function parseSecretYaml(path: string, what: string): unknown {
  const text = readSecretFile(path, what);
  try {
    return parseYaml(text) ?? {};
  } catch (err) {
    throw new HerdError('BAD_CONFIG', `${what} ${path} is not valid YAML: ${(err as Error).message}`, { cause: err });
  }
}

/** The broker's users file: every identity with its role and password hash. Every problem is reported at once. */
export function loadUsersFile(path: string): UserEntry[] {
  const raw = parseSecretYaml(path, 'users file');
  const shape = usersFileSchema.safeParse(raw);
  if (!shape.success) throw new HerdError('BAD_CONFIG', `users file ${path}: ${describeIssues(shape.error.issues)}`);
  const problems: string[] = [];
  const users: UserEntry[] = [];
  const seen = new Set<string>();
  shape.data.users.forEach((u, i) => {
    const r = userEntrySchema.safeParse(u);
    if (!r.success) problems.push(describeIssues(r.error.issues, `users.${i}`));
    else if (seen.has(r.data.username)) problems.push(`field \`users.${i}.username\`: ${r.data.username} is listed twice`);
    else users.push(r.data);
    seen.add(u.username);
  });
  if (problems.length > 0) throw new HerdError('BAD_CONFIG', `users file ${path} has ${problems.length} error(s):\n  - ${problems.join('\n  - ')}`);
  return users;
}

export function loadCredentialsFile(path: string): Credentials {
  const raw = parseSecretYaml(path, 'credentials file');
  const r = credentialsFileSchema.safeParse(raw);
  if (!r.success) throw new HerdError('BAD_CONFIG', `credentials file ${path}: ${describeIssues(r.error.issues)}`);
  return r.data;
}
