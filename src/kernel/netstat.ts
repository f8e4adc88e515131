/**
 * The kernel's own SYN-pressure counters: the TcpExt section of /proc/net/netstat, which is per
 * network namespace. Another namespace's is read through a process in it (/proc/PID/net/netstat
 * shows the netstat of PID's namespace; readable by anyone, no setns, no capability), so the
 * agent can read it after dropping its capabilities. Which process: one the listener walk found
 * holding a socket there (checked to still be in that namespace).
 */
import { readFileSync, statSync } from 'node:fs';

/** The counters the SYN pressure detector reads (names as in /proc/net/netstat, `nstat -az`). */
export const NETSTAT_COUNTERS = [
  'ListenOverflows', // a SYN or a completed handshake arrived at a full accept queue (dropped)
  'ListenDrops', // every SYN or handshake a listener dropped, for any reason (includes the overflows)
  'TCPReqQFullDrop', // a SYN dropped because the SYN queue was full and syncookies are off
  'TCPReqQFullDoCookies', // a SYN answered with a cookie because the SYN queue was full
  'SyncookiesSent', // SYN cookies sent (tcp_syncookies=2 sends them with the queue not full, too)
  'SyncookiesRecv', // valid cookies in a final ACK: handshakes completed without a request sock
  'SyncookiesFailed', // ACKs whose cookie did not check out
] as const;
export type NetstatCounter = (typeof NETSTAT_COUNTERS)[number];
export type NetstatCounters = Record<NetstatCounter, number>;

/** The TcpExt counters of one netstat file's text; null when it has no TcpExt section. */
export function parseNetstat(text: string): NetstatCounters | null {
  const lines = text.split('\n');
  for (let i = 0; i + 1 < lines.length; i++) {
    if (!lines[i]!.startsWith('TcpExt:') || !lines[i + 1]!.startsWith('TcpExt:')) continue;
    const names = lines[i]!.split(/\s+/).slice(1);
    const values = lines[i + 1]!.split(/\s+/).slice(1).map(Number);
    const out = {} as NetstatCounters;
    for (const c of NETSTAT_COUNTERS) out[c] = values[names.indexOf(c)] ?? 0;
    return out;
  }
  return null;
}

const inode = (path: string): number | null => {
  try {
    return statSync(path).ino;
  } catch {
    return null;
  }
};

function read(path: string): NetstatCounters | null {
  try {
    return parseNetstat(readFileSync(path, 'utf8'));
  } catch {
    return null; // the process is gone
  }
}

/**
 * The counters of each namespace for which one of `holders` (a process known to hold a socket
 * there) still lives in it, and of this process's own namespace. Namespaces none of them is in
 * any more are left out: their counters cannot be read without entering them.
 */
export function netstatByNetns(holders: Iterable<{ netns: number; pid: number }>, procDir = '/proc'): Map<number, NetstatCounters> {
  const out = new Map<number, NetstatCounters>();
  const own = inode(`${procDir}/self/ns/net`);
  if (own !== null) {
    const c = read(`${procDir}/self/net/netstat`);
    if (c) out.set(own, c);
  }
  for (const { netns, pid } of holders) {
    if (out.has(netns) || inode(`${procDir}/${pid}/ns/net`) !== netns) continue;
    const c = read(`${procDir}/${pid}/net/netstat`);
    if (c) out.set(netns, c);
  }
  return out;
}
