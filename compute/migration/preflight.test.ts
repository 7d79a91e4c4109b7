import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hasSysResource } from '../../protocol/capabilities.ts';
import type { HerdError } from '../../protocol/errors.ts';
import { assertCarried, assertCheckpointable, containerProcesses } from './preflight.ts';

function fakeProc(procs: { pid: number; name: string; uid: number }[], cgroup: 'v1' | 'v2' = 'v1') {
  const root = mkdtempSync(join(tmpdir(), 'herd-preflight-'));
  const proc = join(root, 'proc');
  const cg = join(root, 'cgroup');
  const dir = cgroup === 'v1' ? 'pids/docker/abc' : 'system.slice/docker-abc.scope';
  mkdirSync(join(cg, dir), { recursive: true });
  writeFileSync(join(cg, dir, 'cgroup.procs'), `${procs.map((p) => p.pid).join('\n')}\n`);
  for (const p of procs) {
    mkdirSync(join(proc, String(p.pid)), { recursive: true });
    writeFileSync(join(proc, String(p.pid), 'cgroup'), cgroup === 'v1' ? '12:pids:/docker/abc\n11:memory:/docker/abc\n' : '0::/system.slice/docker-abc.scope\n');
    writeFileSync(join(proc, String(p.pid), 'status'), `Name:\t${p.name}\nPPid:\t1\nUid:\t${p.uid}\t${p.uid}\t${p.uid}\t${p.uid}\n`);
  }
  return { proc, cg };
}

describe('preflight: what CRIU will refuse, found before freezing', () => {
  it('reads CAP_SYS_RESOURCE from the effective capability set', () => {
    expect(hasSysResource('CapEff:\t000001fffeffffff\n')).toBe(false); // these lab machines: bit 24 clear
    expect(hasSysResource('CapEff:\t000001ffffffffff\n')).toBe(true);
  });

  it('lists a container\'s processes with their user ids from its pids cgroup', () => {
    const { proc, cg } = fakeProc([{ pid: 10, name: 'postgres', uid: 999 }, { pid: 11, name: 'sh', uid: 0 }]);
    expect(containerProcesses(10, proc, cg)).toEqual([
      { pid: 10, command: 'postgres', uids: [999, 999, 999, 999] },
      { pid: 11, command: 'sh', uids: [0, 0, 0, 0] },
    ]);
  });

  it('lists them from the unified cgroup on cgroup v2, and from the process tree when the cgroup is the root one', () => {
    const procs = [{ pid: 10, name: 'postgres', uid: 999 }, { pid: 11, name: 'postgres', uid: 999 }];
    const { proc, cg } = fakeProc(procs, 'v2');
    expect(containerProcesses(10, proc, cg).map((p) => p.pid)).toEqual([10, 11]);
    // Seen from a cgroup namespace: 0::/ is no cgroup of its own (its cgroup.procs would list every process).
    for (const p of procs) writeFileSync(join(proc, String(p.pid), 'cgroup'), '0::/\n');
    writeFileSync(join(proc, '11', 'status'), 'Name:\tpostgres\nPPid:\t10\nUid:\t999\t999\t999\t999\n');
    writeFileSync(join(cg, 'cgroup.procs'), '1\n10\n11\n99\n');
    expect(containerProcesses(10, proc, cg).map((p) => p.pid)).toEqual([10, 11]);
  });

  it('refuses non-root processes without CAP_SYS_RESOURCE, naming them, the cause and the fix', () => {
    const procs = [{ pid: 10, command: 'postgres', uids: [999, 999, 999, 999] }];
    let error: HerdError | undefined;
    try {
      assertCheckpointable('db', procs, false);
    } catch (err) {
      error = err as HerdError;
    }
    expect(error?.code).toBe('NOT_MIGRATABLE');
    expect(error?.message).toMatch(/non-root user \(postgres \(pid 10, uid 999\)\).*CAP_SYS_RESOURCE.*Fix/);
    expect(() => assertCheckpointable('db', procs, true)).not.toThrow();
    expect(() => assertCheckpointable('web', [{ pid: 1, command: 'httpd', uids: [0, 0, 0, 0] }], false)).not.toThrow();
  });
});

describe('preflight: state a migration would not carry', () => {
  const refused = (details: Parameters<typeof assertCarried>[1], shared: string[] = []) => {
    try {
      assertCarried('app', details, shared);
      return undefined;
    } catch (err) {
      return err as HerdError;
    }
  };

  it('carries a local named volume; refuses one of another driver, naming it', () => {
    expect(refused({ mounts: [{ type: 'volume', name: 'pgdata', driver: 'local', source: '/var/lib/docker/volumes/pgdata/_data', destination: '/var/lib/postgresql' }] })).toBeUndefined();
    const e = refused({ mounts: [{ type: 'volume', name: 'shared', driver: 'nfs-plugin', source: '/x', destination: '/data' }] });
    expect(e?.code).toBe('NOT_MIGRATABLE');
    expect(e?.message).toContain('volume "shared" at /data uses the "nfs-plugin" driver');
  });

  it('refuses a bind mount unless it is under a shared path', () => {
    const bind = { mounts: [{ type: 'bind', source: '/srv/nfs/app', destination: '/data' }] };
    expect(refused(bind)?.message).toContain('bind mount /srv/nfs/app at /data: not under a path shared by all hosts');
    expect(refused(bind, ['/srv/nfs'])).toBeUndefined();
    expect(refused(bind, ['/srv/nf'])?.code).toBe('NOT_MIGRATABLE');
  });

  it('lists every problem at once', () => {
    const e = refused({ mounts: [{ type: 'bind', source: '/etc', destination: '/host-etc' }, { type: 'tmpfs', source: '', destination: '/run' }] });
    expect(e?.message).toMatch(/bind mount \/etc at \/host-etc.*tmpfs mount at \/run: not carried/);
    expect(refused({ mounts: [] })).toBeUndefined();
  });

  it('refuses the Docker settings no migration carries, and capabilities that reach beyond the container, naming each', () => {
    const e = refused({ mounts: [], notCarried: ['it is privileged', 'host devices (1)'], spec: { capAdd: ['NET_BIND_SERVICE', 'sys_admin', 'CAP_SYS_PTRACE'] } });
    expect(e?.code).toBe('NOT_MIGRATABLE');
    expect(e?.message).toContain('not carried to another host: it is privileged; host devices (1); added capabilities sys_admin, CAP_SYS_PTRACE (they reach beyond the container)');
    expect(refused({ mounts: [], notCarried: [], spec: { capAdd: ['NET_BIND_SERVICE', 'CHOWN'] } })).toBeUndefined();
  });
});
