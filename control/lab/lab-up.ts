/**
 * `herd lab up`: builds N compute hosts on this machine — a network namespace each on a
 * shared bridge, a Docker daemon and an sshd per host, each host's containers confined
 * to their own CPU set, PCP, base images, and the Herd daemons. Every step first looks
 * whether its result already exists, so running `up` twice is harmless.
 */
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import Docker from 'dockerode';
import type { Logger } from 'pino';
import { HerdError } from '../../protocol/errors.ts';
import { connectBroker, closeBroker, type BrokerEndpoint } from '../../protocol/mqtt.ts';
import { watchCluster } from '../../protocol/cluster-view.ts';
import { runChecks } from '../doctor.ts';
import { computeUsername, credentialsPath, initAuth, type AuthFiles } from '../auth/auth-init.ts';
import { operatorClientId } from '../../protocol/access.ts';
import { cliBrokerEndpoint } from '../../protocol/config.ts';
import { writeSecretFile } from '../../protocol/credentials.ts';
import { ensureHostDisk } from './host-disk.ts';
import { buildLabImages, loadLabImages, type LabProgress } from './images.ts';
import { LAB_DASHBOARD_PORT, labLayout, type LabHost, type LabLayout } from './layout.ts';
import { livePid, mustRun, runCommand, spawnDetached, stopPid, waitFor } from './shell.ts';
import { herdRoot, readLabState, writeLabState, type LabState } from './state.ts';
import { DIRECT_RESTORE_RUNTIME } from '../../compute/config.ts';

export interface LabUpOptions {
  hosts: number;
  /** Operations per second of each host's disk; kept from the running lab when absent. */
  diskIops?: number;
  /** Run the Ansible playbook even when every check passes. */
  provision?: boolean;
  log: Logger;
  /** Progress for humans: phases, and bytes as images load. */
  progress: LabProgress;
}

export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) throw new HerdError('NOT_ROOT', `${what} needs root (it creates network namespaces, mounts and daemons): run it as root (or with sudo)`);
}

async function ensureDependencies(options: LabUpOptions): Promise<void> {
  let failed = (await runChecks()).filter((c) => !c.ok);
  const unfixable = failed.filter((c) => !c.provisionable);
  if (unfixable.length > 0) {
    throw new HerdError('MISSING_DEPENDENCY', `this machine cannot run the lab: ${unfixable.map((c) => `${c.name} (${c.detail}; fix: ${c.fix})`).join('; ')}`);
  }
  if (failed.length > 0 || options.provision === true) {
    options.progress.phase(failed.length > 0 ? `provisioning: missing ${failed.map((c) => c.name).join(', ')}` : 'provisioning (--provision)');
    const setup = `${herdRoot()}/scripts/setup`;
    const r = await runCommand(setup, [], { timeoutMs: 30 * 60_000, env: { ...process.env, HERD_SETUP_SKIP_NPM: '1' } });
    if (r.code !== 0) throw new HerdError('MISSING_DEPENDENCY', `provisioning with ${setup} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().split('\n').slice(-8).join(' | ')}`);
    failed = (await runChecks()).filter((c) => !c.ok);
    if (failed.length > 0) throw new HerdError('MISSING_DEPENDENCY', `still missing after provisioning: ${failed.map((c) => `${c.name} (${c.detail})`).join('; ')}`);
  }
}

async function linkExists(name: string, netns?: string): Promise<boolean> {
  const args = netns === undefined ? ['link', 'show', name] : ['-n', netns, 'link', 'show', name];
  return (await runCommand('ip', args)).code === 0;
}

async function netnsExists(name: string): Promise<boolean> {
  return existsSync(`/var/run/netns/${name}`);
}

async function ensureNetwork(layout: LabLayout): Promise<void> {
  if (!(await linkExists(layout.bridge))) {
    await mustRun('creating the lab bridge', 'ip', ['link', 'add', layout.bridge, 'type', 'bridge']);
    await mustRun('addressing the lab bridge', 'ip', ['addr', 'add', `${layout.gateway}/${layout.prefixLength}`, 'dev', layout.bridge]);
  }
  await mustRun('bringing the lab bridge up', 'ip', ['link', 'set', layout.bridge, 'up']);
  for (const host of layout.hosts) {
    if (!(await netnsExists(host.netns))) await mustRun(`creating namespace ${host.netns}`, 'ip', ['netns', 'add', host.netns]);
    if (!(await linkExists(host.ifname, host.netns))) {
      if (await linkExists(host.vethRoot)) await mustRun('removing a stale veth', 'ip', ['link', 'del', host.vethRoot]);
      await mustRun(`creating veth for ${host.id}`, 'ip', ['link', 'add', host.vethRoot, 'type', 'veth', 'peer', 'name', `${host.vethRoot}p`]);
      await mustRun(`moving veth into ${host.netns}`, 'ip', ['link', 'set', `${host.vethRoot}p`, 'netns', host.netns]);
      await mustRun(`renaming veth in ${host.netns}`, 'ip', ['-n', host.netns, 'link', 'set', `${host.vethRoot}p`, 'name', host.ifname]);
      await mustRun(`addressing ${host.id}`, 'ip', ['-n', host.netns, 'addr', 'add', `${host.ip}/${layout.prefixLength}`, 'dev', host.ifname]);
    }
    await mustRun(`attaching ${host.id} to the bridge`, 'ip', ['link', 'set', host.vethRoot, 'master', layout.bridge, 'up']);
    await mustRun(`bringing ${host.id} up`, 'ip', ['-n', host.netns, 'link', 'set', host.ifname, 'up']);
    await mustRun(`bringing lo up in ${host.id}`, 'ip', ['-n', host.netns, 'link', 'set', 'lo', 'up']);
    const route = await runCommand('ip', ['-n', host.netns, 'route', 'show', 'default']);
    if (route.stdout.trim() === '') await mustRun(`default route of ${host.id}`, 'ip', ['-n', host.netns, 'route', 'add', 'default', 'via', layout.gateway]);
  }
}

/** A cpuset (and cpuacct) cgroup per host, used as the host's Docker cgroup-parent. */
function ensureCgroups(layout: LabLayout): void {
  const mems = readFileSync('/sys/fs/cgroup/cpuset/cpuset.mems', 'utf8').trim();
  for (const host of layout.hosts) {
    const dir = `/sys/fs/cgroup/cpuset/${host.cgroupName}`;
    mkdirSync(dir, { recursive: true });
    // mems must be written before tasks can join; cpus before mems is fine too.
    writeFileSync(`${dir}/cpuset.mems`, mems);
    writeFileSync(`${dir}/cpuset.cpus`, host.cpus.join(','));
  }
}

/**
 * An sshd per host, each host with its own transfer key. A host's authorized_keys lists its
 * peers' keys, each with `restrict` and the forced command bin/herd-ssh-command (only Herd's
 * receiver and fence run, only into the directories of a migration prepared on this host, under its
 * data roots); known_hosts pins every host key.
 */
async function ensureSsh(layout: LabLayout): Promise<void> {
  mkdirSync(layout.sshDir, { recursive: true, mode: 0o700 });
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const known: string[] = [];
  for (const host of layout.hosts) {
    mkdirSync(host.dir, { recursive: true });
    mkdirSync(host.runDir, { recursive: true });
    if (!existsSync(host.sshKey)) await mustRun(`creating the transfer key of ${host.id}`, 'ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `herd-transfer@${host.id}`, '-f', host.sshKey]);
    if (!existsSync(host.sshdHostKey)) await mustRun(`creating host key of ${host.id}`, 'ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', host.id, '-f', host.sshdHostKey]);
    known.push(`${host.ip} ${readFileSync(`${host.sshdHostKey}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ')}`);
  }
  for (const host of layout.hosts) {
    // Only Docker's data root: every directory a migration writes is there (checkpoints, staged images, upper dirs,
    // volumes). Never the compute state dir, whose migration records the reconciler acts on. And of the data root,
    // only the directories of a migration prepared on this host (compute/migration/transfer-grants.ts).
    writeSecretFile(host.sshReceiverConfig, [`root ${host.dockerDataRoot}`, `state ${host.computeStateDir}`, `docker ${host.dockerSocket}`, 'grants required', ''].join('\n'));
    // Each peer's key runs the forced command with the peer's host id: it writes into and fences only its own migrations.
    const forced = (peer: string) => `restrict,command="${herdRoot()}/bin/herd-ssh-command ${host.sshReceiverConfig} ${peer}"`;
    const peers = layout.hosts.filter((p) => p.id !== host.id).map((p) => `${forced(p.id)} ${readFileSync(`${p.sshKey}.pub`, 'utf8').trim()}`);
    writeSecretFile(host.authorizedKeys, `${peers.join('\n')}\n`);
    writeFileSync(
      host.sshdConfig,
      [
        `ListenAddress ${host.ip}`,
        'Port 22',
        `HostKey ${host.sshdHostKey}`,
        `PidFile ${host.sshdPidFile}`,
        `AuthorizedKeysFile ${host.authorizedKeys}`,
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        // sshd's default, as on a stock host: compute/migration/ssh-pool.ts opens more connections when one is full.
        'MaxSessions 10',
        'MaxStartups 64:30:128',
        // sshd runs each session's forced command through root's shell, and Debian's bash sources ~/.bashrc when sshd
        // runs it (SSH_SOURCE_BASHRC) unless it is a nested shell. The lab's hosts share this machine's /root, whose
        // .bashrc may be a developer's (pyenv init: ~120 ms of forks per session, several sessions per migration); a
        // cluster host's transfer sessions would not run it. SHLVL=1 makes bash a nested shell: it reads no rc file.
        'SetEnv SHLVL=1',
        '',
      ].join('\n'),
    );
    if (livePid(host.sshdPidFile, 'sshd') === undefined) {
      await mustRun(`starting sshd of ${host.id}`, 'nsenter', [`--net=/var/run/netns/${host.netns}`, '/usr/sbin/sshd', '-f', host.sshdConfig, '-E', host.sshdLog]);
    }
  }
  writeFileSync(layout.knownHosts, `${known.join('\n')}\n`);
}

function dockerdConfig(layout: LabLayout, host: LabHost): object {
  return {
    experimental: true,
    'data-root': host.dockerDataRoot,
    'exec-root': host.dockerExecRoot,
    pidfile: host.dockerPidFile,
    hosts: [`unix://${host.dockerSocket}`],
    bridge: 'none',
    iptables: false,
    'ip-masq': false,
    'storage-driver': 'overlay2',
    'cgroup-parent': `/${host.cgroupName}`,
    'log-driver': 'json-file',
    'shutdown-timeout': 5,
    // A dockerd restart leaves containers running (as on provisioned hosts: ansible docker role).
    'live-restore': true,
    // Docker's init (--init) from the real file, not Debian's /usr/bin/docker-init symlink, which CRIU cannot
    // restore as a bind mount's source (as the ansible docker role sets it; compute/runtime/docker-runtime.ts).
    ...dockerInitPath(),
    // Direct restore (compute/runtime/direct-restore.ts), as the ansible docker role registers it.
    runtimes: { [DIRECT_RESTORE_RUNTIME]: { path: `${herdRoot()}/bin/herd-runc` } },
  };
}

/** A daemon.json's text without its runtimes (what a SIGHUP does not reload), to compare. */
function withoutRuntimes(text: string | undefined): string {
  try {
    const { runtimes: _runtimes, ...rest } = JSON.parse(text ?? '') as Record<string, unknown>;
    return JSON.stringify(rest);
  } catch {
    return '';
  }
}

/** daemon.json's "init-path": where docker-init really is, when it is a symlink (Debian: to tini-static). */
function dockerInitPath(): { 'init-path'?: string } {
  for (const candidate of ['/usr/bin/docker-init', '/usr/libexec/docker/docker-init', '/usr/local/bin/docker-init']) {
    try {
      if (lstatSync(candidate).isSymbolicLink()) return { 'init-path': realpathSync(candidate) };
      return {};
    } catch {
      // not there: the next candidate
    }
  }
  return {};
}

async function ensureDocker(layout: LabLayout, host: LabHost): Promise<Docker> {
  mkdirSync(host.runDir, { recursive: true });
  const config = `${JSON.stringify(dockerdConfig(layout, host), null, 2)}\n`;
  const before = existsSync(host.dockerConfig) ? readFileSync(host.dockerConfig, 'utf8') : undefined;
  writeFileSync(host.dockerConfig, config);
  let running = livePid(host.dockerPidFile, 'dockerd');
  if (running !== undefined && before !== config) {
    // A running dockerd reloads its runtimes on SIGHUP; any other change (such as init-path, in a lab made
    // by an older Herd) takes a restart, which leaves the containers running (live-restore).
    if (withoutRuntimes(before) === withoutRuntimes(config)) process.kill(running, 'SIGHUP');
    else {
      await stopPid(running);
      running = undefined;
    }
  }
  if (running === undefined) {
    // `ip netns exec` remounts /sys and dockerd then fails ("Devices cgroup isn't mounted"): nsenter only the network.
    spawnDetached('nsenter', [`--net=/var/run/netns/${host.netns}`, 'dockerd', '--config-file', host.dockerConfig], host.dockerLog);
  }
  const docker = new Docker({ socketPath: host.dockerSocket });
  await waitFor(`the Docker daemon of ${host.id} (log: ${host.dockerLog})`, 60_000, async () => (await docker.version()).Version);
  return docker;
}

async function ensureContainerNetwork(layout: LabLayout, host: LabHost, docker: Docker): Promise<void> {
  const existing = await docker.listNetworks({ filters: { name: [layout.containerNetwork] } });
  if (existing.some((n) => n.Name === layout.containerNetwork)) return;
  await docker.createNetwork({
    Name: layout.containerNetwork,
    Driver: 'macvlan',
    Options: { parent: host.ifname },
    IPAM: { Driver: 'default', Config: [{ Subnet: layout.subnet, Gateway: layout.gateway, IPRange: host.containerIpRange }] },
  });
}

/**
 * The lab's PCP has no systemd to restart it: pmproxy 6.0.3 was seen to segfault on an
 * early request (kernel log), taking every metric with it. A small shell loop, ended by
 * `lab down`, starts whichever of pmcd and pmproxy is not running, every 2 s.
 */
function ensurePcpWatchdog(layout: LabLayout): void {
  if (livePid(layout.pcpWatchdogPidFile, 'herd-pcp-watchdog') !== undefined) return;
  const loop = 'while sleep 2; do for s in pmcd pmproxy; do pgrep -x $s >/dev/null || { echo "$(date -u +%FT%TZ) $s not running: starting it"; /etc/init.d/$s start; }; done; done';
  const pid = spawnDetached('/bin/bash', ['-c', `exec -a herd-pcp-watchdog /bin/bash -c '${loop}'`], layout.pcpWatchdogLog);
  writeFileSync(layout.pcpWatchdogPidFile, `${pid}\n`);
}

async function ensurePcp(say: (l: string) => void): Promise<boolean> {
  let started = false;
  for (const service of ['pmcd', 'pmproxy']) {
    const running = (await runCommand('pgrep', ['-x', service])).code === 0;
    if (running) continue;
    const r = await runCommand(`/etc/init.d/${service}`, ['start'], { timeoutMs: 120_000 });
    if (r.code !== 0) throw new HerdError('LAB_FAILED', `starting ${service}: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`);
    started = true;
    say(`started ${service}`);
  }
  await waitFor('PCP REST API on :44322', 60_000, async () => {
    const res = await fetch('http://127.0.0.1:44322/pmapi/fetch?names=hinv.ncpu');
    return res.ok ? true : undefined;
  });
  return started;
}

/** The lab's identities (one per host, the control daemon, the monitor, the operator) and its CA: kept across `up`s. */
function ensureAuth(layout: LabLayout): AuthFiles & { tls: NonNullable<AuthFiles['tls']> } {
  const files = initAuth({ dir: layout.authDir, computeHosts: layout.hosts.map((h) => h.id), controlNode: LAB_CONTROL_NODE, tlsNames: [layout.gateway] });
  if (files.tls === undefined) throw new HerdError('LAB_FAILED', `no TLS files in ${layout.authDir}`);
  return { ...files, tls: files.tls };
}

/** How a lab daemon (by its username) connects to the lab's broker. */
function labBrokerClient(layout: LabLayout, username: string) {
  return { url: layout.brokerUrl, credentialsFile: credentialsPath(layout.authDir, username), caFile: `${layout.authDir}/ca.pem` };
}

/** The lab operator's endpoint (lab up's own checks; the CLI gets it from the lab state). */
export function labOperatorEndpoint(layout: LabLayout): BrokerEndpoint {
  return cliBrokerEndpoint(labBrokerClient(layout, 'operator'));
}

const LAB_CONTROL_NODE = 'lab';

async function ensureControl(layout: LabLayout): Promise<void> {
  writeSecretFile(layout.controlConfig, `${JSON.stringify(labControlConfig(layout), null, 2)}\n`);
  if (livePid(layout.controlPidFile, 'control') !== undefined) return;
  const pid = spawnDetached(`${herdRoot()}/bin/herd`, ['control', '--config', layout.controlConfig], layout.controlLog);
  writeFileSync(layout.controlPidFile, `${pid}\n`);
}

/**
 * The lab's control daemon: the control loop with short windows and intervals (the lab is
 * for watching it work), started paused so that test suites sharing the lab keep their
 * containers where they put them; `herd demo` and `herd control resume` start it.
 */
export function labControlConfig(layout: LabLayout) {
  return {
    nodeId: LAB_CONTROL_NODE,
    metrics: { host: layout.gateway },
    // Actions (pause, resume, drain) with the lab operator's credentials: on loopback only.
    dashboard: { host: '127.0.0.1', port: LAB_DASHBOARD_PORT, actions: true },
    broker: {
      embedded: true,
      host: layout.gateway,
      port: layout.brokerPort,
      auth: { usersFile: `${layout.authDir}/users.yaml` },
      tls: { certFile: `${layout.authDir}/broker.pem`, keyFile: `${layout.authDir}/broker.key` },
      credentialsFile: credentialsPath(layout.authDir, 'control'),
      caFile: `${layout.authDir}/ca.pem`,
    },
    loop: {
      startPaused: true,
      windowSeconds: 12,
      evaluationIntervalSeconds: 15,
      initialDelaySeconds: 15,
      hostIntervalSeconds: LAB_SAMPLE_SECONDS,
      containerIntervalSeconds: LAB_SAMPLE_SECONDS,
      reactive: { consecutiveSamples: 3, minIntervalSeconds: 20 },
      safety: { cooldownSeconds: 90, retryBackoffSeconds: 90, hysteresisEvaluations: 2, maxMovesPerEvaluation: 1, maxInFlightTotal: 2, maxInFlightPerHost: 1 },
      stateDir: `${layout.stateDir}/control`,
    },
  };
}

/** The lab's monitor samples hosts and containers every 2 s. */
export const LAB_SAMPLE_SECONDS = 2;

/** The monitor runs in the root namespace, next to pmproxy, and watches every lab host. */
async function ensureMonitor(layout: LabLayout, disks: Map<string, string>): Promise<void> {
  const config = {
    broker: labBrokerClient(layout, 'monitor'),
    metrics: { host: layout.gateway },
    datasetDir: layout.metricsDir,
    hostIntervalSeconds: LAB_SAMPLE_SECONDS,
    containerIntervalSeconds: LAB_SAMPLE_SECONDS,
    hosts: layout.hosts.map((h) => ({
      id: h.id,
      pmproxyUrl: 'http://127.0.0.1:44322',
      dockerSocket: h.dockerSocket,
      cgroupParent: h.cgroupName,
      cpus: h.cpus,
      // The root-side veth sees the host's traffic with in and out swapped.
      interfaces: [h.vethRoot],
      swapNetworkDirection: true,
      // The host's own disk (its loop device), not the machine's.
      disks: [disks.get(h.id)],
    })),
  };
  writeSecretFile(layout.monitorConfig, `${JSON.stringify(config, null, 2)}\n`);
  if (livePid(layout.monitorPidFile, 'monitor') !== undefined) return;
  const pid = spawnDetached(`${herdRoot()}/bin/herd`, ['monitor', '--config', layout.monitorConfig], layout.monitorLog);
  writeFileSync(layout.monitorPidFile, `${pid}\n`);
}

async function ensureCompute(layout: LabLayout, host: LabHost): Promise<void> {
  mkdirSync(host.computeStateDir, { recursive: true });
  const broker = labBrokerClient(layout, computeUsername(host.id));
  writeSecretFile(
    host.computeConfig,
    [
      `hostId: ${host.id}`,
      'broker:',
      `  url: ${broker.url}`,
      `  credentialsFile: ${broker.credentialsFile}`,
      `  caFile: ${broker.caFile}`,
      'docker:',
      `  socketPath: ${host.dockerSocket}`,
      `  dataRoot: ${host.dockerDataRoot}`,
      `  execRoot: ${host.dockerExecRoot}`,
      'ssh:',
      `  address: ${host.ip}`,
      '  port: 22',
      '  user: root',
      `  privateKeyPath: ${host.sshKey}`,
      `  knownHostsPath: ${layout.knownHosts}`,
      `stateDir: ${host.computeStateDir}`,
      'metrics:',
      `  host: ${host.ip}`,
      `cpus: [${host.cpus.join(', ')}]`,
      // The lab settles interrupted migrations sooner than the 30 s default (its fault tests wait for it).
      'reconcileIntervalSeconds: 10',
      '',
    ].join('\n'),
  );
  if (livePid(host.computePidFile, 'compute') !== undefined) return;
  const pid = spawnDetached('nsenter', [`--net=/var/run/netns/${host.netns}`, `${herdRoot()}/bin/herd`, 'compute', '--config', host.computeConfig], host.computeLog);
  writeFileSync(host.computePidFile, `${pid}\n`);
}

async function waitForBroker(layout: LabLayout): Promise<void> {
  await waitFor(`the control daemon's broker at ${layout.brokerUrl} (log: ${layout.controlLog})`, 30_000, async () => {
    const endpoint = labOperatorEndpoint(layout);
    const c = await connectBroker({ ...endpoint, clientId: operatorClientId(endpoint.username, 'herd-lab-probe', 'lab'), reconnectPeriodMs: 0, connectTimeoutMs: 1000 });
    await closeBroker(c);
    return true;
  }, 300);
}

async function waitForHostsOnline(layout: LabLayout, log: Logger): Promise<void> {
  const endpoint = labOperatorEndpoint(layout);
  const client = await connectBroker({ ...endpoint, clientId: operatorClientId(endpoint.username, 'herd-lab', 'lab'), reconnectPeriodMs: 0 });
  try {
    const view = await watchCluster(client, log);
    try {
      await waitFor(`compute daemons ${layout.hosts.map((h) => h.id).join(', ')} to report online`, 60_000, () =>
        layout.hosts.every((h) => view.host(h.id)?.state === 'online') ? true : undefined,
      );
    } catch (err) {
      const tails = layout.hosts
        .filter((h) => view.host(h.id)?.state !== 'online')
        .map((h) => `${h.id} (${h.computeLog}): ${existsSync(h.computeLog) ? readFileSync(h.computeLog, 'utf8').trim().split('\n').slice(-3).join(' | ') : 'no log'}`);
      throw new HerdError('LAB_FAILED', `${(err as Error).message}; last log lines: ${tails.join('; ')}`, { cause: err });
    }
    await view.close();
  } finally {
    await closeBroker(client);
  }
}

export async function labUp(options: LabUpOptions): Promise<LabState> {
  requireRoot('herd lab up');
  const previous = readLabState();
  if (previous !== undefined && previous.hosts !== options.hosts) {
    throw new HerdError('CONFLICT', `a lab with ${previous.hosts} host(s) is already up; run "herd lab down" first to change the number of hosts`);
  }
  if (previous !== undefined && options.diskIops !== undefined && previous.diskIops !== options.diskIops) {
    throw new HerdError('CONFLICT', `a lab whose disks have ${previous.diskIops === undefined ? 'no operations limit' : `${previous.diskIops} operations per second`} is already up; run "herd lab down" first to change --disk-iops`);
  }
  const diskIops = previous === undefined ? options.diskIops : previous.diskIops;
  const layout = labLayout({ hosts: options.hosts, cpuCount: availableParallelism() });
  const say = (line: string) => options.progress.phase(line);
  await ensureDependencies(options);
  mkdirSync(layout.stateDir, { recursive: true });
  mkdirSync(layout.runDir, { recursive: true });
  chmodSync(layout.stateDir, 0o755);

  // Cross-daemon restore needs shared mount propagation (CRIU mnt-v2 "Failed to copy sharing").
  const mountinfo = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === '/');
  const rootWasShared = mountinfo !== undefined && / shared:\d+/.test(mountinfo);
  if (!rootWasShared) await mustRun('making / rshared', 'mount', ['--make-rshared', '/']);

  const state: LabState = previous ?? { hosts: options.hosts, createdAt: new Date().toISOString(), rootWasShared, startedPcp: false, brokerUrl: layout.brokerUrl, ...(diskIops === undefined ? {} : { diskIops }) };
  say(`identities and TLS certificates (${layout.authDir})`);
  const auth = ensureAuth(layout);
  Object.assign(state, { brokerUrl: layout.brokerUrl, credentialsFile: auth.credentials.operator, caFile: auth.tls.caFile });
  writeLabState(state);

  say(`network: bridge ${layout.bridge} ${layout.gateway}/${layout.prefixLength}, ${layout.hosts.length} namespace(s)`);
  await ensureNetwork(layout);
  ensureCgroups(layout);
  say('sshd per host');
  await ensureSsh(layout);
  const dockers: Docker[] = [];
  const disks = new Map<string, string>();
  for (const host of layout.hosts) {
    disks.set(host.id, await ensureHostDisk(host, diskIops));
    say(`dockerd of ${host.id} (cpus ${host.cpus.join(',')}, disk ${disks.get(host.id)})`);
    dockers.push(await ensureDocker(layout, host));
  }
  say('PCP (pmcd, pmproxy)');
  state.startedPcp = (await ensurePcp(say)) || state.startedPcp;
  writeLabState(state);
  if (state.startedPcp) ensurePcpWatchdog(layout);
  say('base images');
  const saved = await buildLabImages(layout.imagesDir, dockers[0] as Docker);
  for (const [i, host] of layout.hosts.entries()) {
    await loadLabImages(dockers[i] as Docker, saved, options.progress, host.id);
    await ensureContainerNetwork(layout, host, dockers[i] as Docker);
  }
  say('Herd daemons');
  await ensureControl(layout);
  // The daemons connect at once: the broker must listen first.
  await waitForBroker(layout);
  for (const host of layout.hosts) await ensureCompute(layout, host);
  await ensureMonitor(layout, disks);
  await waitForHostsOnline(layout, options.log);
  say(`lab is up: ${layout.hosts.map((h) => `${h.id}=${h.ip}`).join(' ')}; broker ${layout.brokerUrl}; dashboard ${layout.dashboardUrl}`);
  return state;
}
