/** Linux capabilities of this process (what compute daemons and `herd doctor` need to know). */
import { readFileSync } from 'node:fs';

export const CAP_SYS_RESOURCE = 24;

/** Whether this process holds a capability in its effective set (from /proc/self/status, or the text given). */
export function hasCapability(bit: number, statusText = readFileSync('/proc/self/status', 'utf8')): boolean {
  const hex = /^CapEff:\s*([0-9a-f]+)/m.exec(statusText)?.[1];
  return hex !== undefined && (BigInt(`0x${hex}`) & (1n << BigInt(bit))) !== 0n;
}

/** CRIU reads other users' rlimits only with CAP_SYS_RESOURCE. */
export const hasSysResource = (statusText?: string): boolean => hasCapability(CAP_SYS_RESOURCE, statusText);
