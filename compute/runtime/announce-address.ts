/**
 * A container's MAC may sit behind another switch port than neighbours remember (it just
 * moved here, or an earlier container with the same address lived elsewhere): send a
 * gratuitous ARP from inside its network namespace so that switches and neighbours learn
 * the path at once, as hypervisors do after a VM live migration. Best effort.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import type { ContainerRuntime } from './container-runtime.ts';

const execFileAsync = promisify(execFile);

export async function announceAddress(runtime: ContainerRuntime, dockerId: string, hostId: string, log: Logger): Promise<void> {
  try {
    const c = await runtime.inspect(dockerId, hostId);
    if (c.ip === undefined || c.pid === undefined) return;
    await execFileAsync('nsenter', [`--net=/proc/${c.pid}/ns/net`, 'busybox', 'arping', '-U', '-c', '1', '-w', '1', '-I', 'eth0', c.ip], { timeout: 3000 });
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'gratuitous ARP failed (neighbours learn the path when the container next sends)');
  }
}
