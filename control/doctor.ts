/**
 * `herd doctor`: the checks a host must pass to run Herd (and the lab), each with pass
 * or fail, what was seen, and how to fix it. `herd lab up` runs the same checks.
 */
import { accessSync, constants, existsSync, lstatSync, readFileSync, realpathSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { herdRoot } from './lab/state.ts';
import { loadNativeReader, NATIVE_READER_PATH } from '../monitor/cgroup-reader.ts';
import { runCommand } from './lab/shell.ts';
import { hasSysResource } from '../protocol/capabilities.ts';
import { BLOCKS_PYTHON, DIRECT_RESTORE_RUNTIME } from '../compute/config.ts';

export interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
  /** How to fix a failure. */
  fix?: string;
  /** Installed by the Ansible playbook (so `herd lab up` can provision it). */
  provisionable: boolean;
}

const PROVISION = 'run scripts/setup (the Ansible playbook against localhost)';

function onPath(program: string): string | undefined {
  if (program.startsWith('/')) {
    try {
      accessSync(program, constants.X_OK);
      return program;
    } catch {
      return undefined;
    }
  }
  for (const dir of (process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin').split(':').concat(['/usr/sbin', '/sbin', '/usr/lib/pcp/bin', '/usr/libexec/pcp/bin'])) {
    const candidate = `${dir}/${program}`;
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

async function programCheck(name: string, program: string, versionArgs: string[] | undefined, provisionable = true, fix = PROVISION): Promise<CheckResult> {
  const path = onPath(program);
  if (path === undefined) return { name, ok: false, detail: `${program} not found`, fix, provisionable };
  if (versionArgs === undefined) return { name, ok: true, detail: path, provisionable };
  const r = await runCommand(path, versionArgs, { timeoutMs: 10_000 });
  const first = (r.stdout || r.stderr).trim().split('\n')[0] ?? '';
  return { name, ok: true, detail: `${path} ${first}`.trim(), provisionable };
}

export async function runChecks(): Promise<CheckResult[]> {
  const checks: CheckResult[] = [];
  const isRoot = process.getuid?.() === 0;
  checks.push({ name: 'root', ok: isRoot, detail: isRoot ? 'running as root' : `running as uid ${process.getuid?.()}`, fix: 'run as root (sudo)', provisionable: false });

  // Not a failure: a host without it migrates every container whose processes run as root.
  const sysResource = hasSysResource();
  checks.push({ name: 'CAP_SYS_RESOURCE (CRIU and non-root processes)', ok: true, detail: sysResource ? 'held: containers with non-root processes can be checkpointed' : 'NOT held by root here: containers running processes as another user are refused before freezing (NOT_MIGRATABLE)', provisionable: false });

  const major = Number.parseInt(process.versions.node.split('.')[0] ?? '0', 10);
  checks.push({ name: 'node >= 20', ok: major >= 20, detail: `node ${process.versions.node}`, fix: 'install Node.js 20 or newer', provisionable: false });

  const fs = existsSync('/proc/filesystems') ? readFileSync('/proc/filesystems', 'utf8') : '';
  checks.push({ name: 'kernel: overlayfs', ok: /\boverlay\b/.test(fs), detail: /\boverlay\b/.test(fs) ? 'overlay in /proc/filesystems' : 'overlay missing from /proc/filesystems', fix: 'load the overlay module (modprobe overlay)', provisionable: false });
  const cr = existsSync('/proc/sys/kernel/ns_last_pid');
  checks.push({ name: 'kernel: checkpoint/restore', ok: cr, detail: cr ? '/proc/sys/kernel/ns_last_pid present' : 'CONFIG_CHECKPOINT_RESTORE looks off', fix: 'a kernel built with CONFIG_CHECKPOINT_RESTORE=y', provisionable: false });
  const cpuset = existsSync('/sys/fs/cgroup/cpuset/cpuset.cpus');
  checks.push({ name: 'cgroup v1 cpuset', ok: cpuset, detail: cpuset ? '/sys/fs/cgroup/cpuset mounted' : '/sys/fs/cgroup/cpuset missing', fix: 'mount the cpuset cgroup v1 controller', provisionable: false });

  checks.push(await programCheck('iproute2 (ip)', 'ip', ['-V']));
  if (isRoot && onPath('ip') !== undefined) checks.push(await linkKindsCheck());
  checks.push(await programCheck('nsenter', 'nsenter', ['--version']));
  checks.push(await programCheck('dockerd', 'dockerd', ['--version']));
  checks.push(await programCheck('containerd', 'containerd', ['--version']));
  checks.push(await programCheck('runc', 'runc', ['--version']));
  const criu = await programCheck('criu', 'criu', ['--version']);
  checks.push(criu);
  if (criu.ok) {
    const r = await runCommand('criu', ['check'], { timeoutMs: 30_000 });
    const out = `${r.stdout}${r.stderr}`.trim();
    const good = r.code === 0 && /Looks good/.test(out);
    checks.push({ name: 'criu check', ok: good, detail: good ? 'Looks good' : out.split('\n').slice(-2).join(' | '), fix: 'install a CRIU that supports this kernel (>= 4.2): ' + PROVISION, provisionable: true });
    checks.push(criuKernelCacheCheck());
  }
  const runcText = existsSync('/etc/criu/runc.conf') ? readFileSync('/etc/criu/runc.conf', 'utf8') : '';
  const missingOptions = ['tcp-established', 'file-locks'].filter((o) => !new RegExp(`^\\s*${o}\\s*$`, 'm').test(runcText));
  checks.push({ name: 'runc CRIU config (tcp-established, file-locks)', ok: missingOptions.length === 0, detail: missingOptions.length === 0 ? `/etc/criu/runc.conf has tcp-established and file-locks; TCP connections locked with ${/^\s*network-lock\s+nftables\s*$/m.test(runcText) ? 'nftables (in-process)' : "iptables-restore (CRIU's default; nftables is faster where the kernel has nf_tables)"}` : `/etc/criu/runc.conf ${runcText === '' ? 'missing' : `lacks ${missingOptions.join(', ')}`}`, fix: PROVISION, provisionable: true });
  checks.push(await programCheck('sshd', 'sshd', undefined));
  checks.push(await programCheck('ssh-keygen', 'ssh-keygen', undefined));
  checks.push(await programCheck('pmcd (PCP)', 'pmcd', undefined));
  checks.push(await programCheck('pmproxy (PCP)', 'pmproxy', undefined));
  const busybox = existsSync('/bin/busybox') && !/interpreter/.test((await runCommand('file', ['-b', '/bin/busybox'])).stdout);
  checks.push({ name: 'busybox-static', ok: existsSync('/bin/busybox'), detail: existsSync('/bin/busybox') ? `/bin/busybox${busybox ? ' (static)' : ''}` : '/bin/busybox missing', fix: PROVISION, provisionable: true });
  checks.push(directRestoreCheck());
  checks.push(dockerInitCheck());
  checks.push(await programCheck('sysbench', 'sysbench', ['--version']));
  checks.push(await programCheck('tar', 'tar', ['--version']));
  checks.push(await programCheck('lz4 (compressed transfers)', 'lz4', ['--version']));
  const python = await programCheck('python3 (large files by blocks, memory and images by pages: bin/herd-blocks.py, bin/herd-pages.py)', BLOCKS_PYTHON, ['--version']);
  checks.push(python);
  if (python.ok) checks.push(await pageDigestCheck());
  const native = loadNativeReader();
  checks.push({ name: "monitor's native cgroup reader", ok: 'module' in native, detail: 'module' in native ? NATIVE_READER_PATH : native.error, fix: 'scripts/build-native (scripts/setup runs it); without it the monitor reads with JavaScript at about twice the CPU', provisionable: true });
  return checks;
}

/** Which digest bin/herd-pages.py and bin/herd-blocks.py use here: XXH3 with python3-xxhash, sha256 (several times slower, in the downtime) without. */
export async function pageDigestCheck(): Promise<CheckResult> {
  const name = "python3-xxhash (memory pages and large files' blocks digested by XXH3)";
  const r = await runCommand(BLOCKS_PYTHON, ['-I', '-S', join(herdRoot(), 'bin', 'herd-pages.py'), 'digest'], { timeoutMs: 10_000 });
  const digest = r.stdout.trim();
  if (r.code !== 0) return { name, ok: false, detail: `bin/herd-pages.py digest failed: ${(r.stderr || r.stdout).trim()}`, fix: PROVISION, provisionable: true };
  const ok = digest === 'xxh3-128';
  return { name, ok, detail: ok ? 'XXH3-128' : `not found: memory pages and blocks are digested by ${digest}, several times slower (in the downtime)`, fix: PROVISION, provisionable: true };
}

/**
 * Whether this host's Docker (/etc/docker/daemon.json) has the runtime direct restores use, and
 * whether it is this checkout's wrapper (the ansible docker role installs a copy); the lab's
 * daemons always register the checkout's own.
 */
export function directRestoreCheck(file = '/etc/docker/daemon.json', wrapper = join(herdRoot(), 'bin', 'herd-runc')): CheckResult {
  const name = `direct restore (${DIRECT_RESTORE_RUNTIME} runtime)`;
  let path: unknown;
  try {
    path = (JSON.parse(readFileSync(file, 'utf8')) as { runtimes?: Record<string, { path?: unknown }> }).runtimes?.[DIRECT_RESTORE_RUNTIME]?.path;
  } catch {
    path = undefined;
  }
  if (typeof path !== 'string') {
    return { name, ok: true, detail: `not registered in ${file}: migrated containers restore through Docker's copies of the images (slower, docker.restoreWith auto falls back)`, provisionable: true };
  }
  try {
    accessSync(path, constants.X_OK);
  } catch {
    return { name, ok: false, detail: `${file} registers ${path}, which is not an executable file: Docker cannot start containers under it`, fix: PROVISION, provisionable: true };
  }
  if (resolve(path) !== resolve(wrapper) && !sameContent(path, wrapper)) {
    return { name, ok: false, detail: `${file} registers ${path}, which differs from this Herd's ${wrapper} (a copy from another version)`, fix: PROVISION, provisionable: true };
  }
  return { name, ok: true, detail: `${file} registers ${path}: migrated containers restore from the images where they landed`, provisionable: true };
}

/**
 * CRIU's kernel cache, which `criu check` above leaves where it can: CRIU writes it where /run
 * is a tmpfs, Herd's CRIU wrapper (the criu role) elsewhere. Without it every dump and every
 * restore probes the kernel first (~40 ms each, inside a migration's downtime). Informational:
 * a host without it migrates correctly, only slower.
 */
function criuKernelCacheCheck(): CheckResult {
  const name = "CRIU's kernel cache (/run/criu.kdat)";
  if (existsSync('/run/criu.kdat')) return { name, ok: true, detail: 'present: CRIU runs skip probing the kernel', provisionable: true };
  return { name, ok: true, detail: `absent after \`criu check\`: every checkpoint and restore probes the kernel first (~40 ms each). CRIU keeps the cache only where /run is a tmpfs; elsewhere Herd's CRIU wrapper makes it: ${PROVISION}`, provisionable: true };
}

/**
 * Whether Docker's init (--init) is bind-mounted from a real file: CRIU cannot restore a bind
 * mount whose source is a symlink, which Debian's /usr/bin/docker-init is (to tini-static), so
 * such containers could not be migrated. Provisioning sets daemon.json's init-path.
 */
export function dockerInitCheck(file = '/etc/docker/daemon.json', initBinary = '/usr/bin/docker-init'): CheckResult {
  const name = "Docker's init (--init) restorable by CRIU";
  let symlink: boolean;
  try {
    symlink = lstatSync(initBinary).isSymbolicLink();
  } catch {
    return { name, ok: true, detail: `${initBinary} not present: Docker's own default applies`, provisionable: true };
  }
  if (!symlink) return { name, ok: true, detail: `${initBinary} is a file`, provisionable: true };
  let initPath: unknown;
  try {
    initPath = (JSON.parse(readFileSync(file, 'utf8')) as { 'init-path'?: unknown })['init-path'];
  } catch {
    initPath = undefined;
  }
  if (typeof initPath === 'string' && existsSync(initPath) && !lstatSync(initPath).isSymbolicLink()) return { name, ok: true, detail: `${file} sets init-path ${initPath}`, provisionable: true };
  return { name, ok: false, detail: `${initBinary} is a symlink (to ${realpathOr(initBinary)}) and ${file} sets no init-path to a real file: containers run with --init cannot be checkpointed and restored (CRIU cannot bind-mount a symlink)`, fix: `${PROVISION} (sets "init-path": "${realpathOr(initBinary)}" in ${file}; then restart Docker and recreate such containers)`, provisionable: true };
}

function realpathOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

function sameContent(a: string, b: string): boolean {
  try {
    return readFileSync(a).equals(readFileSync(b));
  } catch {
    return false;
  }
}

/** The lab joins hosts with veth pairs and gives containers macvlan addresses: try both. */
async function linkKindsCheck(): Promise<CheckResult> {
  const name = 'kernel: veth and macvlan';
  const a = `herd-dr${process.pid % 10000}`;
  const add = await runCommand('ip', ['link', 'add', a, 'type', 'veth', 'peer', 'name', `${a}p`]);
  if (add.code !== 0) return { name, ok: false, detail: `ip link add type veth: ${add.stderr.trim()}`, fix: 'a kernel with CONFIG_VETH (modprobe veth)', provisionable: false };
  try {
    const mv = await runCommand('ip', ['link', 'add', `${a}m`, 'link', a, 'type', 'macvlan', 'mode', 'bridge']);
    if (mv.code !== 0) return { name, ok: false, detail: `ip link add type macvlan: ${mv.stderr.trim()}`, fix: 'a kernel with CONFIG_MACVLAN (modprobe macvlan)', provisionable: false };
    return { name, ok: true, detail: 'a veth pair and a macvlan link were created and removed', provisionable: false };
  } finally {
    await runCommand('ip', ['link', 'del', a]); // removes the peer and the macvlan child too
  }
}

/** Extra checks only the test suite and benchmarks need. */
export async function runTestChecks(): Promise<CheckResult[]> {
  return [
    await programCheck('ansible-playbook', 'ansible-playbook', ['--version']),
    await programCheck('mosquitto', 'mosquitto', ['-h']),
    await programCheck('podman', 'podman', ['--version']),
    await programCheck('debootstrap', 'debootstrap', ['--version']),
    await programCheck('git', 'git', ['--version'], false, 'apt-get install git'),
  ];
}

export function formatChecks(checks: CheckResult[]): string {
  const width = Math.max(...checks.map((c) => c.name.length));
  return checks
    .map((c) => `${c.ok ? 'PASS' : 'FAIL'}  ${c.name.padEnd(width)}  ${c.detail}${c.ok || c.fix === undefined ? '' : `\n      fix: ${c.fix}`}`)
    .join('\n');
}
