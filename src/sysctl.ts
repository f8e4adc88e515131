/** Sysctls the detectors compare against, read for our own network namespace (another
 * namespace's /proc/sys cannot be read from here: those readers answer null). */
import { readFileSync, statSync } from 'node:fs';
import type { SysctlReaders } from './track/index.js';

export function ownNetnsSysctls(): SysctlReaders {
  const own = statSync('/proc/self/ns/net').ino;
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
