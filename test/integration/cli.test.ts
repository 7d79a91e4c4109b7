/**
 * The herd executable's handling of bad input: usage plus the error, exit code 2 for
 * usage mistakes; clear errors naming what was wrong otherwise.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { runCommand } from '../../control/lab/shell.ts';
import { herd, HERD_BIN, REPO_ROOT } from '../support/herd-cli.ts';

describe('herd CLI', () => {
  it('prints help with every command', async () => {
    const r = await herd(['--help']);
    expect(r.code).toBe(0);
    for (const cmd of ['lab', 'doctor', 'compute', 'control', 'hosts', 'containers', 'run', 'migrate', 'config']) expect(r.stdout).toContain(cmd);
  });

  it('an unknown subcommand gives the error and the usage, exit 2', async () => {
    const r = await herd(['teleport']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'teleport'");
    expect(r.stderr).toContain('Usage: herd');
  });

  it('an unknown flag gives the error and the usage of that command, exit 2', async () => {
    const r = await herd(['lab', 'up', '--hostz', '3']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown option '--hostz'");
    expect(r.stderr).toContain('Usage: herd lab up');
  });

  it('a bad flag value names the flag', async () => {
    const r = await herd(['lab', 'up', '--hosts', 'many']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("'--hosts <n>' argument 'many' is invalid");
    const fs = await herd(['migrate', 'x', '--to', 'h2', '--fs', 'half']);
    expect(fs.code).toBe(2);
    expect(fs.stderr).toContain('Allowed choices are diff, full, none');
  });

  it('usage errors an action finds are printed with their cause, exit 2', async () => {
    const cases: [string[], RegExp][] = [
      [['migrate'], /BAD_USAGE.*give a container to migrate/],
      [['migrate', 'x'], /BAD_USAGE.*--to <host> is required/],
      [['migrate', 'x', '--status', 'm-1'], /BAD_USAGE.*give a container to migrate.*or --status/],
      [['run', '--host', 'h1', '--name', 'x', '--ip', '10.0.0.1', 'img'], /BAD_USAGE.*--ip needs --network/],
      [['run', '--host', 'h1', '--name', 'x', '--volume', '/tmp:/x', 'img'], /BAD_USAGE.*--volume "\/tmp:\/x": expected name:\/path/],
    ];
    for (const [args, message] of cases) {
      const r = await herd(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  });

  it('an unreachable broker is a clear error, exit 1', async () => {
    const r = await herd(['containers', '--broker', 'mqtt://127.0.0.1:1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('[BROKER_UNAVAILABLE]');
    expect(r.stderr).toContain('mqtt://127.0.0.1:1');
  });

  it('"lab up" as a normal user says it needs root', async () => {
    const asNobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
    // A checkout only root can enter (a user's /root/herd): nobody cannot even reach
    // bin/herd there. Show nobody the same checkout at a reachable path instead, through a
    // bind mount in a private mount namespace, and run the real executable from there.
    const reachable = (await runCommand(asNobody[0] as string, [...asNobody.slice(1), 'test', '-x', HERD_BIN])).code === 0;
    const r = reachable
      ? await runCommand(asNobody[0] as string, [...asNobody.slice(1), HERD_BIN, 'lab', 'up'])
      : await runCommand('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'dir=$(mktemp -d) && chmod 755 "$dir" && mount --bind "$1" "$dir" && shift && { "$@" "$dir/bin/herd" lab up; rc=$?; umount "$dir"; rmdir "$dir"; exit $rc; }', 'sh', REPO_ROOT, ...asNobody]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('[NOT_ROOT]');
    expect(r.stderr).toContain('needs root');
  });

  it('"config check" reports every error of a config file with its path', async () => {
    const dir = mkdtempSync(`${tmpdir()}/herd-cli-`);
    writeFileSync(`${dir}/compute.yaml`, 'hostId: "bad/id"\nbroker:\n  url: 42\nssh:\n  port: 70000\nbogus: true\n');
    const r = await herd(['config', 'check', 'compute', `${dir}/compute.yaml`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('[BAD_CONFIG]');
    expect(r.stderr).toContain('4 error(s)');
    for (const path of ['hostId', 'broker.url', 'ssh.port', 'bogus']) expect(r.stderr).toContain(path);
    writeFileSync(`${dir}/ok.yaml`, 'hostId: h7\n');
    const ok = await herd(['config', 'check', 'compute', `${dir}/ok.yaml`]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ hostId: 'h7', broker: { url: 'mqtt://127.0.0.1:1883' }, ssh: { port: 22 } });
  });

  it('"doctor" lists each check with PASS or FAIL', async () => {
    const r = await herd(['doctor', '--json']);
    const checks = JSON.parse(r.stdout) as { name: string; ok: boolean }[];
    expect(checks.map((c) => c.name)).toEqual(expect.arrayContaining(['root', 'criu check', 'dockerd', 'pmcd (PCP)']));
    expect(r.code).toBe(checks.every((c) => c.ok) ? 0 : 1);
  });
});
