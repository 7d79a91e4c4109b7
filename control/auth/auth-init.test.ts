import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { thrownHerdError } from '../../test/support/thrown.ts';
import { loadCredentialsFile, loadUsersFile, verifyPassword } from '../../protocol/credentials.ts';
import { computeUsername, initAuth, rotatePasswords, writeMosquittoFiles } from './auth-init.ts';

const root = mkdtempSync(join(tmpdir(), 'herd-auth-init-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(root, `auth-${n++}`);

describe('herd auth init', () => {
  it('writes the users file and one credentials file per identity', () => {
    const dir = freshDir();
    const files = initAuth({ dir, computeHosts: ['h1', 'h.2'] });
    expect(Object.keys(files.credentials).sort()).toEqual(['compute-h-2', 'compute-h1', 'control', 'monitor', 'operator']);
    expect(readdirSync(dir).sort()).toEqual(['compute-h-2.credentials.yaml', 'compute-h1.credentials.yaml', 'control.credentials.yaml', 'monitor.credentials.yaml', 'operator.credentials.yaml', 'users.yaml']);
    expect(initAuth({ dir, computeHosts: ['h1', 'h.2'] }).added).toEqual([]); // a second run keeps what exists
  });

  it.each([
    ['two hosts under one username', { computeHosts: ['h.1', 'h-1'] }, /compute host h\.1 and compute host h-1 would both be the broker identity compute-h-1: rename one/],
    ['hosts that differ in case only', { computeHosts: ['h1', 'H1'] }, /compute host h1 and compute host H1 would both be the broker identity compute-h1/],
    ['an operator named like a host\'s identity', { computeHosts: ['h1'], operators: [computeUsername('h1')] }, /compute host h1 and operator compute-h1 would both be/],
    ['a host id that is no host id', { computeHosts: ['bad id!'] }, /invalid compute host id\(s\) "bad id!": 1-64 characters/],
    ['a bad operator username', { computeHosts: ['h1'], operators: ['Alice'] }, /invalid username\(s\) Alice/],
  ])('refuses %s before writing anything', (_name, options, message) => {
    const dir = freshDir();
    const e = thrownHerdError(() => initAuth({ dir, ...options }));
    expect(e.code).toBe('BAD_USAGE');
    expect(e.message).toMatch(message);
    expect(existsSync(dir)).toBe(false);
  });

  it('refuses a changed role before writing anything, naming the users file', () => {
    const dir = freshDir();
    initAuth({ dir, computeHosts: ['h1'] });
    const before = readdirSync(dir).sort();
    const e = thrownHerdError(() => initAuth({ dir, computeHosts: ['h1', 'h2'], operators: ['compute-h1'] }));
    expect(e.code).toBe('BAD_USAGE'); // the same run names compute-h1 twice
    const e2 = thrownHerdError(() => initAuth({ dir, computeHosts: ['h2'], operators: ['compute-h1'] }));
    expect(e2.code).toBe('CONFLICT');
    expect(e2.message).toMatch(/users\.yaml already has compute-h1 as compute of h1/);
    expect(readdirSync(dir).sort()).toEqual(before); // no credentials of h2 left behind
  });

  it('names the directory it cannot create', () => {
    const file = join(root, 'a-file');
    writeFileSync(file, '');
    expect(thrownHerdError(() => initAuth({ dir: join(file, 'auth'), computeHosts: ['h1'] }))).toMatchObject({ code: 'BAD_USAGE', message: `cannot create the auth directory ${join(file, 'auth')} (--dir): ENOTDIR (a part of the path is a file)` });
    expect(thrownHerdError(() => initAuth({ dir: file, computeHosts: ['h1'] }))).toMatchObject({ code: 'BAD_USAGE', message: expect.stringMatching(/cannot create the auth directory .*a-file \(--dir\): EEXIST \(it is a file\)/) });
  });
});

describe('herd auth rotate', () => {
  it('gives the identities named new passwords (hash and credentials file) and leaves the others as they were', async () => {
    const dir = freshDir();
    const files = initAuth({ dir, computeHosts: ['h1', 'h2'] });
    const before = new Map(loadUsersFile(files.usersFile).map((u) => [u.username, u]));
    const oldPassword = loadCredentialsFile(files.credentials['compute-h1'] as string).password;
    const rotated = rotatePasswords(dir, ['compute-h1', 'operator', 'compute-h1']);
    expect(rotated).toEqual({ usersFile: files.usersFile, credentials: { 'compute-h1': files.credentials['compute-h1'], operator: files.credentials.operator } });
    const after = new Map(loadUsersFile(files.usersFile).map((u) => [u.username, u]));
    const password = loadCredentialsFile(files.credentials['compute-h1'] as string).password;
    expect(password).not.toBe(oldPassword);
    expect(await verifyPassword(password, after.get('compute-h1')!.passwordHash)).toBe(true);
    expect(await verifyPassword(oldPassword, after.get('compute-h1')!.passwordHash)).toBe(false);
    expect(after.get('compute-h1')).toMatchObject({ role: 'compute', host: 'h1' });
    for (const kept of ['compute-h2', 'control', 'monitor']) expect(after.get(kept)).toEqual(before.get(kept));
    const all = rotatePasswords(dir, 'all');
    expect(Object.keys(all.credentials).sort()).toEqual(['compute-h1', 'compute-h2', 'control', 'monitor', 'operator']);
    for (const u of loadUsersFile(files.usersFile)) expect(u.passwordHash).not.toBe(after.get(u.username)?.passwordHash);
  });

  it('refuses unknown identities, none at all, or a directory without a users file, before writing anything', () => {
    const dir = freshDir();
    const files = initAuth({ dir, computeHosts: ['h1'] });
    const text = readFileSync(files.usersFile, 'utf8');
    expect(thrownHerdError(() => rotatePasswords(dir, ['compute-h1', 'compute-h9', 'bob']))).toMatchObject({ code: 'BAD_USAGE', message: `${files.usersFile} has no identities compute-h9, bob (it has control, monitor, compute-h1, operator)` });
    expect(thrownHerdError(() => rotatePasswords(dir, []))).toMatchObject({ code: 'BAD_USAGE', message: expect.stringContaining('needs the identities to rotate') });
    expect(readFileSync(files.usersFile, 'utf8')).toBe(text);
    expect(thrownHerdError(() => rotatePasswords(freshDir(), ['operator']))).toMatchObject({ code: 'BAD_USAGE', message: expect.stringMatching(/no users file .*run herd auth init --dir/) });
  });

  it("rewrites Mosquitto's password file when the directory has one", () => {
    const dir = freshDir();
    initAuth({ dir, computeHosts: ['h1'] });
    const { passwordFile } = writeMosquittoFiles(dir);
    const line = () => readFileSync(passwordFile, 'utf8').split('\n').find((l) => l.startsWith('operator:'));
    const before = line();
    expect(rotatePasswords(dir, ['operator']).mosquittoPasswordFile).toBe(passwordFile);
    expect(line()).not.toBe(before);
    expect(line()).toBe(`operator:${loadUsersFile(join(dir, 'users.yaml')).find((u) => u.username === 'operator')?.passwordHash}`);
  });
});
