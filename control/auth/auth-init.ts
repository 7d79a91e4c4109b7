/**
 * `herd auth init`: the broker's users file and one credentials file per identity, and
 * optionally a CA with a certificate for the broker's TLS listener. Running it again keeps
 * what exists (passwords, keys) and adds what is missing, so provisioning can run it on
 * every pass and a new host only gets its own identity.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { mosquittoAcl, USERNAME_PATTERN, type Identity } from '../../protocol/access.ts';
import { hashPassword, loadCredentialsFile, loadUsersFile, newPassword, writeSecretFile, type UserEntry } from '../../protocol/credentials.ts';
import { HerdError } from '../../protocol/errors.ts';
import { ID_PATTERN } from '../../protocol/topics.ts';

export interface AuthInitOptions {
  dir: string;
  /** Compute host ids: one identity each (`compute-<host>`). */
  computeHosts: readonly string[];
  /** Operator usernames (default: operator). */
  operators?: readonly string[];
  /** The control daemon's node id (default control). */
  controlNode?: string;
  /** Names and addresses clients use to reach the broker: with any, a CA and a broker certificate for them are made. */
  tlsNames?: readonly string[];
}

export interface AuthFiles {
  dir: string;
  usersFile: string;
  /** username → credentials file. */
  credentials: Record<string, string>;
  /** Present when TLS files were made (or exist). */
  tls?: { caFile: string; certFile: string; keyFile: string };
  /** Identities added by this run. */
  added: string[];
}

/** The username of a compute host's identity: `compute-<host>`, lower-cased, other characters as `-`. */
export function computeUsername(hostId: string): string {
  return `compute-${hostId.toLowerCase().replace(/[^a-z0-9_-]/g, '-')}`.slice(0, 32);
}

export function credentialsPath(dir: string, username: string): string {
  return join(dir, `${username}.credentials.yaml`);
}

/** Everything `initAuth` refuses, found before it writes anything: bad host ids or usernames, two identities under one username, a conflict with the users file. */
function checkIdentities(wanted: readonly Identity[], computeHosts: readonly string[], users: ReadonlyMap<string, UserEntry>, dir: string): void {
  const badHosts = computeHosts.filter((h) => !ID_PATTERN.test(h));
  if (badHosts.length > 0) throw new HerdError('BAD_USAGE', `invalid compute host id(s) ${badHosts.map((h) => `"${h}"`).join(', ')}: 1-64 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit`);
  const bad = wanted.filter((i) => !USERNAME_PATTERN.test(i.username)).map((i) => i.username);
  if (bad.length > 0) throw new HerdError('BAD_USAGE', `invalid username(s) ${bad.join(', ')}: 1-32 characters of a-z 0-9 _ -, not starting with "herd-"`);
  const describe = (i: Identity) => (i.role === 'compute' ? `compute host ${i.host}` : i.role === 'control' ? `control node ${i.node}` : `${i.role} ${i.username}`);
  const same = (a: Omit<Identity, 'username'>, b: Omit<Identity, 'username'>) => a.role === b.role && a.host === b.host && (a.role !== 'control' || a.node === b.node);
  const byName = new Map<string, Identity>();
  for (const identity of wanted) {
    const other = byName.get(identity.username);
    if (other !== undefined && !same(other, identity)) throw new HerdError('BAD_USAGE', `${describe(other)} and ${describe(identity)} would both be the broker identity ${identity.username}: rename one`);
    byName.set(identity.username, identity);
    const known = users.get(identity.username);
    const file = credentialsPath(dir, identity.username);
    if (known !== undefined && existsSync(file) && !same(known, identity)) throw new HerdError('CONFLICT', `${join(dir, 'users.yaml')} already has ${identity.username} as ${known.role}${known.host ? ` of ${known.host}` : ''}; remove it there (and ${file}) to change it`);
  }
}

export function initAuth(options: AuthInitOptions): AuthFiles {
  const dir = options.dir;
  const wanted: Identity[] = [
    { username: 'control', role: 'control', node: options.controlNode ?? 'control' },
    { username: 'monitor', role: 'monitor' },
    ...options.computeHosts.map((host): Identity => ({ username: computeUsername(host), role: 'compute', host })),
    ...(options.operators ?? ['operator']).map((username): Identity => ({ username, role: 'operator' })),
  ];
  const usersFile = join(dir, 'users.yaml');
  const users = new Map<string, UserEntry>(existsSync(usersFile) ? loadUsersFile(usersFile).map((u) => [u.username, u]) : []);
  checkIdentities(wanted, options.computeHosts, users, dir);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOTDIR' ? ' (a part of the path is a file)' : code === 'EEXIST' ? ' (it is a file)' : '';
    throw new HerdError('BAD_USAGE', `cannot create the auth directory ${dir} (--dir): ${code ?? (err as Error).message}${why}`, { cause: err });
  }

  const credentials: Record<string, string> = {};
  const added: string[] = [];
  for (const identity of wanted) {
    const file = credentialsPath(dir, identity.username);
    credentials[identity.username] = file;
    if (users.has(identity.username) && existsSync(file)) {
      loadCredentialsFile(file); // still readable and 0600 (its role was checked above)
      continue;
    }
    const password = newPassword();
    users.set(identity.username, { ...identity, passwordHash: hashPassword(password) });
    writeSecretFile(file, toYaml({ username: identity.username, password }));
    added.push(identity.username);
  }
  writeUsersFile(usersFile, users.values());
  const tls = options.tlsNames !== undefined && options.tlsNames.length > 0 ? ensureTls(dir, options.tlsNames) : existingTls(dir);
  return { dir, usersFile, credentials, ...(tls === undefined ? {} : { tls }), added };
}

function writeUsersFile(usersFile: string, users: Iterable<UserEntry>): void {
  writeSecretFile(usersFile, `# Herd broker identities (herd auth init). Roles: protocol/access.ts.\n${toYaml({ users: [...users] })}`);
}

export interface RotatedPasswords {
  usersFile: string;
  /** username → its credentials file, rewritten with the new password. */
  credentials: Record<string, string>;
  /** Mosquitto's password file, when the directory has one (rewritten too). */
  mosquittoPasswordFile?: string;
}

/**
 * `herd auth rotate`: a new password for each identity named (or every one), in the users
 * file (hash) and in its credentials file; nothing is written unless every name is known.
 * The control daemon takes the users file again on SIGHUP and closes the rotated identities'
 * sessions; a daemon reads its credentials file again each time it reconnects.
 */
export function rotatePasswords(dir: string, which: readonly string[] | 'all'): RotatedPasswords {
  const usersFile = join(dir, 'users.yaml');
  if (!existsSync(usersFile)) throw new HerdError('BAD_USAGE', `no users file ${usersFile}: run herd auth init --dir ${dir} first`);
  const users = new Map(loadUsersFile(usersFile).map((u) => [u.username, u]));
  const usernames = which === 'all' ? [...users.keys()] : which;
  if (usernames.length === 0) throw new HerdError('BAD_USAGE', 'herd auth rotate needs the identities to rotate (e.g. compute-h1 operator), or --all');
  const unknown = usernames.filter((u) => !users.has(u));
  if (unknown.length > 0) throw new HerdError('BAD_USAGE', `${usersFile} has no identit${unknown.length === 1 ? 'y' : 'ies'} ${unknown.join(', ')} (it has ${[...users.keys()].join(', ')})`);
  const credentials: Record<string, string> = {};
  for (const username of new Set(usernames)) {
    const password = newPassword();
    users.set(username, { ...(users.get(username) as UserEntry), passwordHash: hashPassword(password) });
    credentials[username] = credentialsPath(dir, username);
    writeSecretFile(credentials[username], toYaml({ username, password }));
  }
  writeUsersFile(usersFile, users.values());
  const hasMosquitto = existsSync(join(dir, 'mosquitto.passwd'));
  return { usersFile, credentials, ...(hasMosquitto ? { mosquittoPasswordFile: writeMosquittoFiles(dir).passwordFile } : {}) };
}

function existingTls(dir: string): AuthFiles['tls'] {
  const files = { caFile: join(dir, 'ca.pem'), certFile: join(dir, 'broker.pem'), keyFile: join(dir, 'broker.key') };
  return Object.values(files).every((f) => existsSync(f)) ? files : undefined;
}

function openssl(args: string[], what: string): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT') throw new HerdError('MISSING_DEPENDENCY', 'openssl not found: apt-get install openssl');
    throw new HerdError('BAD_CONFIG', `openssl failed ${what}: ${e.stderr?.toString().trim() ?? e.message}`, { cause: err });
  }
}

/** A CA (kept) and a broker certificate for `names` (remade when the names change). */
function ensureTls(dir: string, names: readonly string[]): NonNullable<AuthFiles['tls']> {
  const caFile = join(dir, 'ca.pem');
  const caKey = join(dir, 'ca.key');
  const certFile = join(dir, 'broker.pem');
  const keyFile = join(dir, 'broker.key');
  const namesFile = join(dir, 'broker.names');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  if (!existsSync(caFile) || !existsSync(caKey)) {
    openssl(['req', '-x509', ...ec, '-keyout', caKey, '-out', caFile, '-days', '3650', '-subj', '/CN=Herd broker CA'], 'making the CA');
    writeSecretFile(caKey, readFileSync(caKey, 'utf8'));
  }
  const san = names.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  if (!existsSync(certFile) || !existsSync(keyFile) || !existsSync(namesFile) || readFileSync(namesFile, 'utf8') !== san) {
    const csr = join(dir, 'broker.csr');
    const ext = join(dir, 'broker.ext');
    writeFileSync(ext, `subjectAltName=${san}\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n`);
    openssl(['req', ...ec, '-keyout', keyFile, '-out', csr, '-subj', '/CN=herd-broker'], 'making the broker key');
    openssl(['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-CAcreateserial', '-out', certFile, '-days', '825', '-extfile', ext], 'signing the broker certificate');
    writeSecretFile(keyFile, readFileSync(keyFile, 'utf8'));
    writeFileSync(namesFile, san);
    rmSync(csr, { force: true });
    rmSync(ext, { force: true });
  }
  return { caFile, certFile, keyFile };
}

/**
 * A Mosquitto password file and ACL file from the users file: Mosquitto reads the same `$7$`
 * hashes. Files whose content is unchanged are left alone (their owner and mode too, which
 * provisioning sets for the mosquitto user).
 */
export function writeMosquittoFiles(dir: string): { passwordFile: string; aclFile: string; changed: boolean } {
  const users = loadUsersFile(join(dir, 'users.yaml'));
  const passwordFile = join(dir, 'mosquitto.passwd');
  const aclFile = join(dir, 'mosquitto.acl');
  let changed = false;
  for (const [file, text] of [
    [passwordFile, users.map((u) => `${u.username}:${u.passwordHash}\n`).join('')],
    [aclFile, mosquittoAcl(users)],
  ] as const) {
    if (existsSync(file) && readFileSync(file, 'utf8') === text) continue;
    writeSecretFile(file, text);
    changed = true;
  }
  return { passwordFile, aclFile, changed };
}
