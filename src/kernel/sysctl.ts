/** Sysctls the detectors compare against, read for our own network namespace (another
 * namespace's /proc/sys cannot be read from here: those readers answer null). */
import { readFileSync } from 'node:fs';
import { ownNetnsInode } from './namespaces.js';

/** The per-namespace sysctls the TIME_WAIT detector compares against (src/track/detectors). */
export interface SysctlReaders {
  /** net.ipv4.ip_local_port_range of a namespace, or null when it cannot be read */
  portRange?: (netns: number) => { low: number; high: number } | null;
  /** net.ipv4.tcp_max_tw_buckets of a namespace, or null */
  maxTwBuckets?: (netns: number) => number | null;
}

export function ownNetnsSysctls(): SysctlReaders {
  const own = ownNetnsInode();
  const read = (path: string) => {
    try {
      return readFileSync(path, 'utf8').trim().split(/\s+/).map(Number);
    } catch {
      return null;
    }
  };
  return {
    portRange: (netns) => {
      const v = netns === own ? read('/proc/sys/net/ipv4/ip_local_port_range') : null;
      return v && v.length === 2 ? { low: v[0]!, high: v[1]! } : null;
    },
    maxTwBuckets: (netns) => (netns === own ? (read('/proc/sys/net/ipv4/tcp_max_tw_buckets')?.[0] ?? null) : null),
  };
}
