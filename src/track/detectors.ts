/**
 * Detectors: the classic questions of reading `netstat` output, answered with numbers. Each
 * has thresholds that can be configured and a message saying what the state means and what to
 * look at. Pure: the tracker feeds them events and the live table; readers of sysctls are
 * injected.
 */
import { UsageError } from '../errors.js';
import type { LiveTable } from './live-table.js';
import { SlotFlag } from './live-table.js';
import { S } from './states.js';
import type { Alert, DetectorName } from './types.js';
import { SlidingCounter } from './windows.js';

/** Thresholds for every detector. Durations in ns (bigint), counts and rates as numbers. */
export interface DetectorThresholds {
  /** a CLOSE_WAIT socket older than this counts as leaked (default 60 s) */
  closeWaitAgeNs: bigint;
  /** leaked CLOSE_WAIT sockets of one owner before it fires (default 1) */
  closeWaitMinSockets: number;
  /** also fire when an owner's CLOSE_WAIT count grew at this many evaluations in a row (default 3)... */
  closeWaitGrowthEvaluations: number;
  /** ...and has reached at least this many (default 50) */
  closeWaitGrowthMinCount: number;
  /** window for the SYN_RECV rate, connect failures and resets (default 60 s) */
  windowNs: bigint;
  /** handshakes per second on one listening port (sockets entering SYN_RECV) (default 2000) */
  synRecvPerSecond: number;
  /** half-open connections (request socks) on one listening port at the last snapshot (default 256) */
  requestSocksPerListener: number;
  /** failed connects to one destination for one reason within the window (default 10) */
  connectFailures: number;
  /** TIME_WAIT sockets from one local address to one destination, as a fraction of the ephemeral port range (default 0.5) */
  timeWaitPortFraction: number;
  /** timewait sockets in a namespace as a fraction of net.ipv4.tcp_max_tw_buckets (default 0.8) */
  timeWaitBucketsFraction: number;
  /** connections aborted (a synchronized state straight to CLOSE: RST sent or received) in a namespace within the window (default 500) */
  resets: number;
}

export const DEFAULT_THRESHOLDS: Readonly<DetectorThresholds> = {
  closeWaitAgeNs: 60_000_000_000n,
  closeWaitMinSockets: 1,
  closeWaitGrowthEvaluations: 3,
  closeWaitGrowthMinCount: 50,
  windowNs: 60_000_000_000n,
  synRecvPerSecond: 2000,
  requestSocksPerListener: 256,
  connectFailures: 10,
  timeWaitPortFraction: 0.5,
  timeWaitBucketsFraction: 0.8,
  resets: 500,
};

/** Thresholds merged over the defaults and checked; a bad value is a UsageError (exit code 2). */
export function resolveThresholds(over: Partial<DetectorThresholds> = {}): DetectorThresholds {
  const t = { ...DEFAULT_THRESHOLDS, ...over };
  for (const [name, value] of Object.entries(t) as [keyof DetectorThresholds, unknown][]) {
    if (!(name in DEFAULT_THRESHOLDS)) throw new UsageError(`unknown threshold ${name}; known: ${Object.keys(DEFAULT_THRESHOLDS).join(', ')}`);
    const isNs = typeof DEFAULT_THRESHOLDS[name] === 'bigint';
    if (isNs) {
      if (typeof value !== 'bigint' || value <= 0n) throw new UsageError(`threshold ${name}: ${String(value)} must be a positive duration in ns (a bigint)`);
      continue;
    }
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw new UsageError(`threshold ${name}: ${String(value)} must be a positive number`);
    }
    if (name.endsWith('Fraction') && value > 1) throw new UsageError(`threshold ${name}: ${value} must be a fraction in (0, 1]`);
    if (!name.endsWith('Fraction') && name !== 'synRecvPerSecond' && !Number.isInteger(value)) {
      throw new UsageError(`threshold ${name}: ${value} must be a whole number`);
    }
  }
  return t;
}

/** The sysctls the TIME_WAIT detector compares against, per network namespace (they are per-namespace). */
const DURATION_NS: Record<string, bigint> = { ns: 1n, us: 1000n, ms: 1_000_000n, s: 1_000_000_000n, m: 60_000_000_000n, h: 3_600_000_000_000n };

/**
 * One threshold from text or JSON: durations ("300ms", "60s", "5m", or ns as an integer) for the
 * *Ns thresholds, numbers for the others. Throws UsageError naming what is expected.
 */
export function parseThresholdValue(name: string, value: unknown): bigint | number {
  if (!(name in DEFAULT_THRESHOLDS)) throw new UsageError(`unknown threshold ${name}; known: ${Object.keys(DEFAULT_THRESHOLDS).join(', ')}`);
  if (typeof DEFAULT_THRESHOLDS[name as keyof DetectorThresholds] === 'bigint') {
    const d = /^(\d+)(ns|us|ms|s|m|h)?$/.exec(String(value));
    if (!d || BigInt(d[1]!) === 0n) throw new UsageError(`threshold ${name} is a duration, e.g. 300ms, 60s or 5m`);
    return BigInt(d[1]!) * DURATION_NS[d[2] ?? 'ns']!;
  }
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`threshold ${name} must be a positive number`);
  return n;
}

export interface SysctlReaders {
  /** net.ipv4.ip_local_port_range of a namespace, or null when it cannot be read */
  portRange?: (netns: number) => { low: number; high: number } | null;
  /** net.ipv4.tcp_max_tw_buckets of a namespace, or null */
  maxTwBuckets?: (netns: number) => number | null;
}

/** What each detector's condition means and what to look at (shared with `tcpdwell explain`). */
export const EXPLAIN: Record<DetectorName, string> = {
  close_wait_leak:
    'CLOSE_WAIT means the peer has closed its side and the kernel is waiting for this application to call close(). ' +
    'Sockets that stay there are a descriptor leak: a code path that stops reading on EOF, an error path that forgets close(), ' +
    'or a pool that never notices dead connections. Look at the owner process: its open descriptors (ls /proc/PID/fd), ' +
    'the code that handles the peer closing, and whether the count keeps growing.',
  syn_pressure:
    'SYN_RECV is the half-open stage of a handshake: the SYN was answered, the final ACK not yet seen. Many at once on a listener ' +
    'mean a SYN flood (spoofed SYNs that never complete), clients behind heavy loss, or an application that accepts too slowly ' +
    'so the queues fill. Look at the source addresses, net.ipv4.tcp_syncookies, the listen backlog (somaxconn, listen(2)) and ' +
    'how fast the owner accepts.',
  connect_failures:
    'Outgoing connections that never got past SYN_SENT. ECONNREFUSED: the host answered with RST, nothing listens on that port ' +
    '(service down, wrong port). ETIMEDOUT: no answer at all (host down, firewall dropping, overload). EHOSTUNREACH / ' +
    'ENETUNREACH: no route or an ICMP unreachable (routing, interface, firewall reject). Many SYN_SENT to many destinations ' +
    'can also be a scan. Look at the destination, the owner process and its configuration.',
  time_wait_pressure:
    'TIME_WAIT is normal: the side that closes first keeps the connection for 60 s (2×MSL) so stray packets cannot hit a new one. ' +
    'But each holds its 4-tuple, so many short connections from one local address to one destination use up the ephemeral ports ' +
    '(net.ipv4.ip_local_port_range) and connect() starts failing with EADDRNOTAVAIL; past net.ipv4.tcp_max_tw_buckets the kernel ' +
    'drops timewait sockets early. Look at connection reuse (keep-alive, pooling) in the owner, net.ipv4.tcp_tw_reuse, and more ' +
    'local addresses or a wider port range.',
  rst_storm:
    'Connections going from an established state straight to CLOSE were aborted by a reset, sent or received: a crashing or ' +
    'restarting peer, SO_LINGER 0 closes, a middlebox or firewall killing connections, or a load balancer health-checking ' +
    'aggressively. Look at which ports and peers, and what restarted.',
};

/** Inputs the tracker gathers from events. */
export class DetectorInputs {
  readonly connectFailures: SlidingCounter<string>;
  readonly handshakes: SlidingCounter<number>;
  readonly resets: SlidingCounter<number>;

  constructor(windowNs: bigint, maxKeys: number) {
    this.connectFailures = new SlidingCounter(windowNs, maxKeys);
    this.handshakes = new SlidingCounter(windowNs, maxKeys);
    this.resets = new SlidingCounter(windowNs, maxKeys);
  }

  get dropped(): number {
    return this.connectFailures.dropped + this.handshakes.dropped + this.resets.dropped;
  }
}

/** Key for per-listener counters: netns and port in one number (u32 × 2^16 < 2^53). */
export const listenerKey = (netns: number, port: number): number => netns * 65536 + port;
const splitListenerKey = (k: number): [number, number] => [Math.floor(k / 65536), k % 65536];

const endpoint = (addr: string, port: number) => (addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`);
const seconds = (ns: number) => `${(ns / 1e9).toFixed(ns < 10e9 ? 1 : 0)} s`;

type Finding = Omit<Alert, 'sinceNs' | 'atNs' | 'explanation'>;

/** Runs every detector over the table and the windowed inputs. */
export class Detectors {
  private readonly firing = new Map<string, bigint>();
  private readonly closeWaitHistory = new Map<string, { count: number; grew: number }>();
  fired = 0;

  constructor(
    private t: DetectorThresholds,
    private readonly readers: SysctlReaders,
  ) {}

  /** New thresholds from the next evaluation on; what is firing stays firing until it is not. */
  setThresholds(t: DetectorThresholds): void {
    this.t = t;
  }

  evaluate(table: LiveTable, inputs: DetectorInputs, nowNs: bigint): Alert[] {
    const findings: Finding[] = [];
    const now = Number(nowNs);
    const ageMin = Number(this.t.closeWaitAgeNs);

    // One pass over the table for the detectors that look at live sockets.
    const closeWait = new Map<string, { netns: number; pid: number | null; comm: string | null; count: number; aged: number; oldest: number; slot: number }>();
    const timeWait = new Map<number, { total: number; tuples: Map<string, number> }>();
    const requests = new Map<number, number>();
    const ranges = new Map<number, { low: number; high: number } | null>();
    table.scan((slot, state) => {
      const flags = table.flagsOf(slot);
      if (state === S.CLOSE_WAIT) {
        const netns = table.netnsOf(slot);
        const pid = table.ownerPid(slot);
        const k = `${netns}/${pid ?? 'unknown'}`;
        let g = closeWait.get(k);
        if (!g) closeWait.set(k, (g = { netns, pid, comm: table.ownerComm(slot), count: 0, aged: 0, oldest: Infinity, slot }));
        g.count++;
        const entered = table.entered(slot);
        if (now - entered >= ageMin) g.aged++;
        if (entered < g.oldest) {
          g.oldest = entered;
          g.slot = slot;
        }
      } else if (flags & SlotFlag.TIMEWAIT) {
        const netns = table.netnsOf(slot);
        let tw = timeWait.get(netns);
        if (!tw) timeWait.set(netns, (tw = { total: 0, tuples: new Map() }));
        tw.total++;
        if (state !== S.TIME_WAIT) return;
        let range = ranges.get(netns);
        if (range === undefined) ranges.set(netns, (range = this.readers.portRange?.(netns) ?? null));
        const sport = table.sport(slot);
        // Only connections that took an ephemeral port use up the range.
        if (range && sport >= range.low && sport <= range.high) {
          const tk = `${table.saddrId(slot)}|${table.daddrId(slot)}|${table.dport(slot)}`;
          tw.tuples.set(tk, (tw.tuples.get(tk) ?? 0) + 1);
        }
      } else if (flags & SlotFlag.REQUEST) {
        const k = listenerKey(table.netnsOf(slot), table.sport(slot));
        requests.set(k, (requests.get(k) ?? 0) + 1);
      }
    });

    this.closeWaitLeaks(table, closeWait, now, findings);
    this.synPressure(inputs, requests, nowNs, findings);
    this.connectFailures(inputs, nowNs, findings);
    this.timeWaitPressure(table, timeWait, ranges, findings);
    this.resetStorms(inputs, nowNs, findings);

    const alerts: Alert[] = [];
    const seen = new Set<string>();
    for (const f of findings) {
      seen.add(f.key);
      let since = this.firing.get(f.key);
      if (since === undefined) {
        this.firing.set(f.key, (since = nowNs));
        this.fired++;
      }
      alerts.push({ ...f, explanation: EXPLAIN[f.detector], sinceNs: since, atNs: nowNs });
    }
    for (const k of this.firing.keys()) if (!seen.has(k)) this.firing.delete(k);
    return alerts;
  }

  private closeWaitLeaks(
    table: LiveTable,
    groups: Map<string, { netns: number; pid: number | null; comm: string | null; count: number; aged: number; oldest: number; slot: number }>,
    now: number,
    out: Finding[],
  ): void {
    for (const k of this.closeWaitHistory.keys()) if (!groups.has(k)) this.closeWaitHistory.delete(k);
    for (const [k, g] of groups) {
      const h = this.closeWaitHistory.get(k) ?? { count: 0, grew: 0 };
      h.grew = g.count > h.count ? h.grew + 1 : 0;
      h.count = g.count;
      this.closeWaitHistory.set(k, h);
      const aged = g.aged >= this.t.closeWaitMinSockets;
      const growing = h.grew >= this.t.closeWaitGrowthEvaluations && g.count >= this.t.closeWaitGrowthMinCount;
      if (!aged && !growing) continue;
      const id = table.identity(g.slot);
      const who = g.pid !== null ? `${g.comm ?? '?'} (pid ${g.pid})` : 'an unknown process (socket older than the agent)';
      const why = aged
        ? `${g.aged} of them for more than ${seconds(Number(this.t.closeWaitAgeNs))}`
        : `growing for ${h.grew} evaluations in a row`;
      out.push({
        detector: 'close_wait_leak',
        key: `close_wait_leak/${k}`,
        netns: g.netns,
        summary:
          `${who} holds ${g.count} socket${g.count === 1 ? '' : 's'} in CLOSE_WAIT in netns ${g.netns}, ${why}; ` +
          `the oldest (${endpoint(id.saddr, id.sport)} ← ${endpoint(id.daddr, id.dport)}) for ${seconds(now - g.oldest)}`,
        value: aged ? g.aged : g.count,
        threshold: aged ? this.t.closeWaitMinSockets : this.t.closeWaitGrowthMinCount,
        ownerPid: g.pid,
        ownerComm: g.comm,
        labels: {
          unit: aged ? 'sockets past the age threshold' : 'sockets',
          sockets: String(g.count),
          oldestAgeNs: String(Math.round(now - g.oldest)),
          local: endpoint(id.saddr, id.sport),
          remote: endpoint(id.daddr, id.dport),
        },
      });
    }
  }

  private synPressure(inputs: DetectorInputs, requests: Map<number, number>, nowNs: bigint, out: Finding[]): void {
    const rates = inputs.handshakes.sums(nowNs);
    const windowS = inputs.handshakes.windowS;
    const keys = new Set([...rates.keys(), ...requests.keys()]);
    for (const k of keys) {
      const [netns, port] = splitListenerKey(k);
      const rate = (rates.get(k) ?? 0) / windowS;
      const half = requests.get(k) ?? 0;
      const byRate = rate >= this.t.synRecvPerSecond;
      const byHalfOpen = half >= this.t.requestSocksPerListener;
      if (!byRate && !byHalfOpen) continue;
      out.push({
        detector: 'syn_pressure',
        key: `syn_pressure/${netns}/${port}`,
        netns,
        summary: byHalfOpen
          ? `listening port ${port} in netns ${netns} had ${half} half-open connections (SYN_RECV request socks) at the last snapshot`
          : `listening port ${port} in netns ${netns} takes ${rate.toFixed(0)} handshakes/s (sockets entering SYN_RECV)`,
        value: byHalfOpen ? half : rate,
        threshold: byHalfOpen ? this.t.requestSocksPerListener : this.t.synRecvPerSecond,
        ownerPid: null,
        ownerComm: null,
        labels: { unit: byHalfOpen ? 'request socks' : 'handshakes/s', listenPort: String(port), handshakesPerSecond: rate.toFixed(1), halfOpen: String(half) },
      });
    }
  }

  private connectFailures(inputs: DetectorInputs, nowNs: bigint, out: Finding[]): void {
    for (const [k, n] of inputs.connectFailures.sums(nowNs)) {
      if (n < this.t.connectFailures) continue;
      const [netns, daddr, dport, reason] = k.split('|') as [string, string, string, string];
      const dest = endpoint(daddr, Number(dport));
      out.push({
        detector: 'connect_failures',
        key: `connect_failures/${k.replaceAll('|', '/')}`,
        netns: Number(netns),
        summary: `${n} connects to ${dest} failed with ${reason} in netns ${netns} within ${seconds(inputs.connectFailures.windowS * 1e9)}`,
        value: n,
        threshold: this.t.connectFailures,
        ownerPid: null,
        ownerComm: null,
        labels: { unit: 'failed connects', destination: dest, reason },
      });
    }
  }

  private timeWaitPressure(
    table: LiveTable,
    byNetns: Map<number, { total: number; tuples: Map<string, number> }>,
    ranges: Map<number, { low: number; high: number } | null>,
    out: Finding[],
  ): void {
    for (const [netns, tw] of byNetns) {
      const range = ranges.get(netns);
      if (range) {
        const size = range.high - range.low + 1;
        for (const [k, n] of tw.tuples) {
          if (n < this.t.timeWaitPortFraction * size) continue;
          const [sa, da, dport] = k.split('|').map(Number) as [number, number, number];
          const local = table.address(sa);
          const dest = endpoint(table.address(da), dport);
          out.push({
            detector: 'time_wait_pressure',
            key: `time_wait_pressure/${netns}/${local}/${dest}`,
            netns,
            summary: `${n} TIME_WAIT sockets from ${local} to ${dest} in netns ${netns} hold ${((100 * n) / size).toFixed(0)} % of the ephemeral port range ${range.low}-${range.high}`,
            value: n / size,
            threshold: this.t.timeWaitPortFraction,
            ownerPid: null,
            ownerComm: null,
            labels: { unit: 'fraction of the ephemeral port range', local, destination: dest, sockets: String(n), portRange: `${range.low}-${range.high}` },
          });
        }
      }
      const max = this.readers.maxTwBuckets?.(netns) ?? null;
      if (max && tw.total >= this.t.timeWaitBucketsFraction * max) {
        out.push({
          detector: 'time_wait_pressure',
          key: `time_wait_pressure/${netns}/buckets`,
          netns,
          summary: `${tw.total} timewait sockets in netns ${netns}: ${((100 * tw.total) / max).toFixed(0)} % of net.ipv4.tcp_max_tw_buckets (${max}); past it the kernel skips TIME_WAIT`,
          value: tw.total / max,
          threshold: this.t.timeWaitBucketsFraction,
          ownerPid: null,
          ownerComm: null,
          labels: { unit: 'fraction of tcp_max_tw_buckets', sockets: String(tw.total), maxTwBuckets: String(max) },
        });
      }
    }
  }

  private resetStorms(inputs: DetectorInputs, nowNs: bigint, out: Finding[]): void {
    for (const [netns, n] of inputs.resets.sums(nowNs)) {
      if (n < this.t.resets) continue;
      out.push({
        detector: 'rst_storm',
        key: `rst_storm/${netns}`,
        netns,
        summary: `${n} connections in netns ${netns} were aborted (established → CLOSE, a reset) within ${seconds(inputs.resets.windowS * 1e9)}`,
        value: n,
        threshold: this.t.resets,
        ownerPid: null,
        ownerComm: null,
        labels: { unit: 'aborted connections' },
      });
    }
  }
}
