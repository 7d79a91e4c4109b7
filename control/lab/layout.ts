/**
 * The lab's layout: names, addresses and paths for N compute hosts on one machine.
 * Pure: the same inputs give the same layout, so up, down and status agree.
 */
export const LAB_MAX_HOSTS = 8;
/** Where the lab's control daemon serves its dashboard. */
export const LAB_DASHBOARD_PORT = 9480;

export interface LabHost {
  /** Herd host id, e.g. "h1". */
  id: string;
  index: number;
  netns: string;
  /** Root-namespace end of the host's veth pair (attached to the bridge). */
  vethRoot: string;
  /** Interface name inside the namespace. */
  ifname: string;
  ip: string;
  /** Range Docker's IPAM hands out on this host's macvlan network (distinct per host). */
  containerIpRange: string;
  cpus: number[];
  cgroupName: string;
  dir: string;
  runDir: string;
  dockerSocket: string;
  /** On the host's own disk: an ext4 file system in `diskImage`, loop-mounted (control/lab/host-disk.ts). */
  dockerDataRoot: string;
  diskImage: string;
  /** With `--disk-iops`: where control/lab/herd-disk.py serves diskImage as `disk.img`, its pid file and log. */
  diskServerDir: string;
  diskServerPidFile: string;
  diskServerLog: string;
  dockerExecRoot: string;
  dockerPidFile: string;
  dockerConfig: string;
  dockerLog: string;
  sshdConfig: string;
  /** This host's own transfer key (its peers' authorized_keys run only bin/herd-ssh-command for it). */
  sshKey: string;
  /** Peers' keys this host's sshd accepts, each with the forced command. */
  authorizedKeys: string;
  /** What the forced command may do on this host (its data roots, state dir, Docker socket). */
  sshReceiverConfig: string;
  sshdHostKey: string;
  sshdPidFile: string;
  sshdLog: string;
  computeConfig: string;
  computePidFile: string;
  computeLog: string;
  computeStateDir: string;
}

export interface LabLayout {
  stateDir: string;
  runDir: string;
  stateFile: string;
  bridge: string;
  subnet: string;
  prefixLength: number;
  gateway: string;
  /** Docker network (macvlan) every host has, so containers keep their IP across hosts. */
  containerNetwork: string;
  brokerPort: number;
  /** mqtts:// on the bridge's address: the lab's broker speaks TLS and admits only the identities in authDir. */
  brokerUrl: string;
  /** The control daemon's web dashboard (loopback: the lab's operator is on this machine). */
  dashboardUrl: string;
  /** Users file, credentials per identity, CA and broker certificate (herd auth init). */
  authDir: string;
  controlConfig: string;
  controlPidFile: string;
  controlLog: string;
  monitorConfig: string;
  monitorPidFile: string;
  /** Restarts pmcd/pmproxy when they die (pmproxy 6.0.3 has been seen to segfault). */
  pcpWatchdogPidFile: string;
  pcpWatchdogLog: string;
  monitorLog: string;
  metricsDir: string;
  sshDir: string;
  knownHosts: string;
  imagesDir: string;
  hosts: LabHost[];
}

export interface LabOptions {
  hosts: number;
  cpuCount: number;
  stateDir?: string;
  runDir?: string;
  brokerPort?: number;
}

const SUBNET_PREFIX = '10.213.0';

export function labLayout(options: LabOptions): LabLayout {
  if (!Number.isInteger(options.hosts) || options.hosts < 1 || options.hosts > LAB_MAX_HOSTS) {
    throw new RangeError(`--hosts must be an integer from 1 to ${LAB_MAX_HOSTS} (got ${options.hosts})`);
  }
  const stateDir = options.stateDir ?? '/var/lib/herd-lab';
  const runDir = options.runDir ?? '/run/herd-lab';
  const brokerPort = options.brokerPort ?? 1883;
  const gateway = `${SUBNET_PREFIX}.1`;
  const hosts: LabHost[] = [];
  for (let index = 1; index <= options.hosts; index++) {
    const id = `h${index}`;
    const dir = `${stateDir}/${id}`;
    const hostRun = `${runDir}/${id}`;
    hosts.push({
      id,
      index,
      netns: `herd-${id}`,
      vethRoot: `herd-v${index}`,
      ifname: 'eth0',
      ip: `${SUBNET_PREFIX}.${10 + index}`,
      containerIpRange: `${SUBNET_PREFIX}.${64 + 16 * (index - 1)}/28`,
      // Hosts get distinct cores while the machine has enough; beyond that they share round-robin.
      cpus: [(index - 1) % Math.max(1, options.cpuCount)],
      cgroupName: `herd-${id}`,
      dir,
      runDir: hostRun,
      dockerSocket: `${hostRun}/docker.sock`,
      dockerDataRoot: `${dir}/docker`,
      diskImage: `${dir}/disk.img`,
      diskServerDir: `${dir}/disk`,
      diskServerPidFile: `${hostRun}/herd-disk.pid`,
      diskServerLog: `${dir}/herd-disk.log`,
      dockerExecRoot: `${hostRun}/x`,
      dockerPidFile: `${hostRun}/dockerd.pid`,
      dockerConfig: `${dir}/daemon.json`,
      dockerLog: `${dir}/dockerd.log`,
      sshdConfig: `${dir}/sshd_config`,
      sshKey: `${dir}/id_ed25519`,
      authorizedKeys: `${dir}/authorized_keys`,
      sshReceiverConfig: `${dir}/ssh-receiver.conf`,
      sshdHostKey: `${dir}/ssh_host_ed25519_key`,
      sshdPidFile: `${hostRun}/sshd.pid`,
      sshdLog: `${dir}/sshd.log`,
      computeConfig: `${dir}/compute.yaml`,
      computePidFile: `${hostRun}/compute.pid`,
      computeLog: `${dir}/compute.log`,
      computeStateDir: `${dir}/compute`,
    });
  }
  return {
    stateDir,
    runDir,
    stateFile: `${stateDir}/lab.json`,
    bridge: 'herd-br0',
    subnet: `${SUBNET_PREFIX}.0/24`,
    prefixLength: 24,
    gateway,
    containerNetwork: 'herd-lan',
    brokerPort,
    brokerUrl: `mqtts://${gateway}:${brokerPort}`,
    dashboardUrl: `http://127.0.0.1:${LAB_DASHBOARD_PORT}/`,
    authDir: `${stateDir}/auth`,
    controlConfig: `${stateDir}/control.yaml`,
    controlPidFile: `${runDir}/control.pid`,
    controlLog: `${stateDir}/control.log`,
    monitorConfig: `${stateDir}/monitor.yaml`,
    monitorPidFile: `${runDir}/monitor.pid`,
    pcpWatchdogPidFile: `${runDir}/pcp-watchdog.pid`,
    pcpWatchdogLog: `${stateDir}/pcp-watchdog.log`,
    monitorLog: `${stateDir}/monitor.log`,
    metricsDir: `${stateDir}/metrics`,
    sshDir: `${stateDir}/ssh`,
    knownHosts: `${stateDir}/ssh/known_hosts`,
    imagesDir: `${stateDir}/images`,
    hosts,
  };
}
