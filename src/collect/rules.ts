/**
 * Fleet-wide alert rules, over the latest picture of every host. Pure: no I/O, clock passed in.
 *
 * The agents' own detectors see one host; these see the fleet: a process leaking CLOSE_WAIT
 * sockets on several hosts at once is a bug in the service's code (or a dependency it shares),
 * not one host's bad day.
 */
import type { HostRecord } from './views.js';

export interface FleetRuleThresholds {
  /** CLOSE_WAIT sockets at least this old count as leaked (seconds) */
  closeWaitAgeS: number;
  /** fire when the same process leaks on at least this many hosts */
  closeWaitMinHosts: number;
  /** TIME_WAIT sockets on one host at or above this */
  timeWaitSockets: number;
  /** a host whose newest summary is older than this (seconds) is left out */
  hostStaleS: number;
}

export const DEFAULT_FLEET_THRESHOLDS: FleetRuleThresholds = { closeWaitAgeS: 60, closeWaitMinHosts: 2, timeWaitSockets: 20_000, hostStaleS: 300 };

export type FleetRule = 'fleet_close_wait_leak' | 'time_wait_pressure';
/** Every fleet rule (metrics show each, 0 when quiet). */
export const FLEET_RULES: readonly FleetRule[] = ['fleet_close_wait_leak', 'time_wait_pressure'];

/** A rule's finding. `key` is stable while the condition lasts. */
export interface FleetAlert {
  rule: FleetRule;
  key: string;
  summary: string;
  explanation: string;
  value: number;
  threshold: number;
  labels: Record<string, string>;
}

const EXPLAIN = {
  fleet_close_wait_leak:
    'CLOSE_WAIT means the peer closed and this process has not called close() on its socket. Old CLOSE_WAIT sockets of the same ' +
    'process on several hosts point at the code (a missing close() on an error path, a pool that never returns connections), not at one host. ' +
    'Look at the process on the hosts listed: `ss -tanp state close-wait`, and its handling of closed connections.',
  time_wait_pressure:
    'TIME_WAIT sockets are connections this host closed first, held ~60 s so late segments are not taken for a new connection. Many of them ' +
    'exhaust ephemeral ports towards a destination (connect fails with EADDRNOTAVAIL) and fill tcp_max_tw_buckets. Look for short-lived ' +
    'outgoing connections that could be reused (keep-alive, pooling), and at ip_local_port_range.',
} as const;

/** Hosts whose picture is current. */
export function liveHosts(hosts: Iterable<HostRecord>, t: FleetRuleThresholds, nowMs: number): HostRecord[] {
  return [...hosts].filter((h) => nowMs - h.atMs <= t.hostStaleS * 1000);
}

/** Every rule that fires now, sorted by key. */
export function evaluateFleetRules(hosts: Iterable<HostRecord>, t: FleetRuleThresholds, nowMs: number): FleetAlert[] {
  const out: FleetAlert[] = [];
  const live = liveHosts(hosts, t, nowMs);
  // CLOSE_WAIT leak by process, across hosts.
  const byComm = new Map<string, Map<string, { count: number; oldestS: number; ports: Set<number> }>>();
  for (const h of live) {
    for (const s of h.stuck) {
      if (s.state !== 'CLOSE_WAIT' || s.timewait || s.ageS < t.closeWaitAgeS) continue;
      let hosts = byComm.get(s.ownerComm);
      if (!hosts) byComm.set(s.ownerComm, (hosts = new Map()));
      const e = hosts.get(h.host) ?? { count: 0, oldestS: 0, ports: new Set<number>() };
      e.count++;
      e.oldestS = Math.max(e.oldestS, s.ageS);
      e.ports.add(s.localPort);
      hosts.set(h.host, e);
    }
  }
  for (const [comm, hosts] of byComm) {
    if (hosts.size < t.closeWaitMinHosts) continue;
    const names = [...hosts.keys()].sort();
    const oldest = Math.max(...[...hosts.values()].map((e) => e.oldestS));
    const ports = [...new Set([...hosts.values()].flatMap((e) => [...e.ports]))].sort((a, b) => a - b);
    out.push({
      rule: 'fleet_close_wait_leak',
      key: `fleet_close_wait_leak/${comm}`,
      summary: `${comm} holds CLOSE_WAIT sockets older than ${t.closeWaitAgeS}s on ${hosts.size} hosts (${names.join(', ')}); oldest ${oldest.toFixed(0)}s`,
      explanation: EXPLAIN.fleet_close_wait_leak,
      value: hosts.size,
      threshold: t.closeWaitMinHosts,
      labels: { process: comm, hosts: names.join(','), ports: ports.join(','), unit: 'hosts' },
    });
  }
  for (const h of live) {
    const tw = h.states.TIME_WAIT ?? 0;
    if (tw < t.timeWaitSockets) continue;
    out.push({
      rule: 'time_wait_pressure',
      key: `time_wait_pressure/${h.host}`,
      summary: `${h.host} holds ${tw} TIME_WAIT sockets (threshold ${t.timeWaitSockets})`,
      explanation: EXPLAIN.time_wait_pressure,
      value: tw,
      threshold: t.timeWaitSockets,
      labels: { host: h.host, unit: 'sockets' },
    });
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}
