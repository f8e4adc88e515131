/**
 * Fleet views: what the collector keeps from the messages it counts. Pure: no I/O.
 *
 * Two kinds of view, because they merge differently across collector instances:
 * - **Additive views** (`FleetViews`): counts of messages and events, connect failures, agent
 *   alerts, and dwell distributions. Each instance holds the part it counted; since every
 *   message is counted by exactly one instance (continuity.ts), the fleet's view is the sum of
 *   the instances' (`mergeSnapshots`; in PromQL, `sum without (instance)`). Dwell histograms
 *   merge exactly because they are HDR histograms of equal settings (HistogramSet).
 * - **Latest-value views** (`HostRecord`, one per host, from its newest Summary): live sockets
 *   per state, TIME_WAIT count, oldest stuck sockets. A sum of these would be wrong, so they are
 *   kept in the shared KV bucket and every instance holds the same picture (collector.ts).
 */
import { endpoint, stateName } from '../decode/index.js';
import { addrText, big, type Header } from '../publish/wire.js';
import { HistogramSet, isConnectFailure, type EncodedHistogram } from '../track/index.js';
import type { tcpdwell } from '../publish/pb/tcpdwell.js';
import type { CollectedMessage } from './messages.js';

/** The newest picture of one host, from its latest Summary. Plain JSON (stored in the KV bucket). */
export interface HostRecord {
  host: string;
  bootId: string;
  epoch: number;
  seq: number;
  /** when the summary was made, Unix ms (agent clock) */
  atMs: number;
  /** live sockets per state (kernel names; timewait socks under their substate) */
  states: Record<string, number>;
  /** oldest sockets per state the agent reported (it sends a few per state) */
  stuck: StuckEntry[];
  eventsTotal: number;
}

export interface StuckEntry {
  state: string;
  timewait: boolean;
  ageS: number;
  lowerBound: boolean;
  ownerComm: string;
  ownerPid: number;
  local: string;
  remote: string;
  localPort: number;
}

const bytesAddr = (b: Uint8Array | null | undefined, port: number): string => {
  const a = addrText(b);
  return a ? endpoint(a, port) : `?:${port}`;
};

/** Unix ms of a boot-time stamp, given the header's offset. */
export function unixMs(header: Header, bootNs: bigint): number {
  return Number((bootNs + big(header.bootToUnixNs as number)) / 1_000_000n);
}

/** A HostRecord from a decoded Summary. */
export function hostRecordFromSummary(host: string, header: Header, s: tcpdwell.v1.Summary): HostRecord {
  const states: Record<string, number> = {};
  for (const c of s.states) {
    const name = stateName(c.state ?? 0);
    states[name] = (states[name] ?? 0) + Number(big(c.count as number));
  }
  return {
    host,
    bootId: header.bootId ?? '',
    epoch: Number(big(header.epoch as number)),
    seq: Number(big(header.seq as number)),
    atMs: unixMs(header, big(s.atNs as number)),
    states,
    stuck: s.stuck.map((x) => ({
      state: stateName(x.state ?? 0),
      timewait: x.timewait ?? false,
      ageS: Number(big(x.ageNs as number)) / 1e9,
      lowerBound: x.lowerBound ?? false,
      ownerComm: x.ownerComm || '?',
      ownerPid: x.ownerPid ?? 0,
      local: bytesAddr(x.saddr, x.sport ?? 0),
      remote: bytesAddr(x.daddr, x.dport ?? 0),
      localPort: x.sport ?? 0,
    })),
    eventsTotal: Number(big(s.eventsTotal as number)),
  };
}

/** True when `a` is a newer picture of its host than `b` (summaries can arrive out of order). */
export function isNewer(a: HostRecord, b: HostRecord | undefined): boolean {
  if (!b) return true;
  if (a.bootId === b.bootId && a.epoch === b.epoch) return a.seq > b.seq;
  return a.atMs > b.atMs || (a.atMs === b.atMs && a.epoch > b.epoch);
}

/** Plain-data form of the additive views, for JSON, tests and merging. */
export interface ViewsSnapshot {
  /** messages counted, by host then kind */
  messages: Record<string, Record<string, number>>;
  /** kernel events (transitions, timewait, snapshot rows) counted, by host */
  events: Record<string, number>;
  /** dwell records counted, by host */
  dwellRecords: Record<string, number>;
  /** failed connects by errno name, then destination "addr:port" ("other" past the bound) */
  connectFailures: Record<string, Record<string, number>>;
  /** agent alerts seen, by host, then "kind/severity" */
  agentAlerts: Record<string, Record<string, number>>;
  /** dwell distributions: fleet per state, per host per state, per listening port per state */
  histograms: { fleet: EncodedHistogram[]; byHost: Record<string, EncodedHistogram[]>; byPort: EncodedHistogram[] };
  /** distributions not kept because a bound was reached */
  histogramsDropped: number;
}

export interface ViewBounds {
  /** distinct destinations kept per failure reason (the rest under "other") */
  maxDestinations: number;
  /** distinct listening ports with their own distribution */
  maxPorts: number;
  /** distinct hosts with their own distribution */
  maxHosts: number;
}

/**
 * maxHosts: per-host dwell distributions for the first 64 hosts only — at 1,000 hosts they were
 * 110,000 of a scrape's 120,000 series; a host's own distribution is a query on the store's
 * `dwell` table (docs/events.md).
 */
export const DEFAULT_BOUNDS: ViewBounds = { maxDestinations: 100, maxPorts: 64, maxHosts: 64 };

const inc = (m: Map<string, number>, k: string, n = 1) => m.set(k, (m.get(k) ?? 0) + n);
const nested = (m: Map<string, Map<string, number>>, a: string) => {
  let x = m.get(a);
  if (!x) m.set(a, (x = new Map()));
  return x;
};
const obj = (m: Map<string, Map<string, number>>) => Object.fromEntries([...m].map(([k, v]) => [k, Object.fromEntries(v)]));

/** The additive views one collector instance keeps (see the module comment). */
export class FleetViews {
  private readonly messages = new Map<string, Map<string, number>>();
  private readonly events = new Map<string, number>();
  private readonly dwellRecords = new Map<string, number>();
  private readonly failures = new Map<string, Map<string, number>>();
  private readonly agentAlerts = new Map<string, Map<string, number>>();
  /** fleet per state (dimension netns, key 0) and per listening port (dimension listen_port) */
  readonly fleet = new HistogramSet();
  readonly byHost = new Map<string, HistogramSet>();
  private readonly ports = new Set<string>();
  histogramsDropped = 0;

  constructor(readonly bounds: ViewBounds = DEFAULT_BOUNDS) {}

  /** Counts one message (the caller has made sure it is counted once fleet-wide). */
  apply(m: CollectedMessage): void {
    const host = m.id.host;
    inc(nested(this.messages, host), m.kind);
    switch (m.kind) {
      case 'transitions':
      case 'snapshot':
        inc(this.events, host, m.rows);
        for (const f of m.failures) this.failure(f.error, f.destination);
        break;
      case 'dwell':
        inc(this.dwellRecords, host, m.rows);
        break;
      case 'summary':
        this.mergeDistributions(host, m.summary.distributions);
        break;
      case 'alerts':
        inc(nested(this.agentAlerts, host), `${m.alert.kind || '?'}/${m.alert.severity || '?'}`);
        break;
    }
  }

  private failure(reason: string, dest: string) {
    const byDest = nested(this.failures, reason);
    inc(byDest, byDest.has(dest) || byDest.size < this.bounds.maxDestinations ? dest : 'other');
  }

  private mergeDistributions(host: string, list: readonly tcpdwell.v1.IDistribution[]) {
    const fleet: EncodedHistogram[] = [];
    const ports: EncodedHistogram[] = [];
    for (const d of list) {
      const e: EncodedHistogram = {
        state: stateName(d.state ?? 0),
        timewait: d.timewait ?? false,
        dimension: d.dimension === 'listen_port' ? 'listen_port' : 'netns',
        key: d.key ?? '0',
        unit: d.unit as 'us',
        significantDigits: d.significantDigits ?? 0,
        totalCount: Number(big(d.count as number)),
        hdr: Buffer.from(d.hdr ?? []).toString('base64'),
      };
      // netns breakdown summed = the host's distribution; cgroup ids mean nothing across hosts.
      if (d.dimension === 'netns') fleet.push({ ...e, key: '0' });
      else if (d.dimension === 'listen_port') {
        if (this.ports.has(e.key) || this.ports.size < this.bounds.maxPorts) {
          this.ports.add(e.key);
          ports.push(e);
        } else this.histogramsDropped++;
      }
    }
    try {
      this.fleet.mergeEncoded(fleet);
      this.fleet.mergeEncoded(ports);
      let hs = this.byHost.get(host);
      if (!hs && this.byHost.size < this.bounds.maxHosts) this.byHost.set(host, (hs = new HistogramSet()));
      if (hs) hs.mergeEncoded(fleet);
      else this.histogramsDropped += fleet.length;
    } catch {
      // Different digits or unit (an agent of another build): kept out rather than merged wrongly.
      this.histogramsDropped += list.length;
    }
  }

  /** Plain data; histograms in their transport form (left empty with `histograms: false`). */
  snapshot(opts: { histograms?: boolean } = {}): ViewsSnapshot {
    const enc = (s: HistogramSet, dim: 'netns' | 'listen_port') => (opts.histograms === false ? [] : s.encode().filter((h) => h.dimension === dim));
    return {
      messages: obj(this.messages),
      events: Object.fromEntries(this.events),
      dwellRecords: Object.fromEntries(this.dwellRecords),
      connectFailures: obj(this.failures),
      agentAlerts: obj(this.agentAlerts),
      histograms: {
        fleet: enc(this.fleet, 'netns'),
        byHost: Object.fromEntries([...this.byHost].map(([h, s]) => [h, enc(s, 'netns')])),
        byPort: enc(this.fleet, 'listen_port'),
      },
      histogramsDropped: this.histogramsDropped + this.fleet.dropped,
    };
  }
}

const addNested = (a: Record<string, Record<string, number>>, b: Record<string, Record<string, number>>) => {
  const out: Record<string, Record<string, number>> = structuredClone(a);
  for (const [k, inner] of Object.entries(b)) {
    const o = (out[k] ??= {});
    for (const [k2, v] of Object.entries(inner)) o[k2] = (o[k2] ?? 0) + v;
  }
  return out;
};
const addFlat = (a: Record<string, number>, b: Record<string, number>) => {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = (out[k] ?? 0) + v;
  return out;
};
const mergeHist = (a: EncodedHistogram[], b: EncodedHistogram[]) => {
  const s = HistogramSet.decode(a);
  s.mergeEncoded(b);
  return s.encode();
};

/** The fleet view from instances' snapshots: sums, and exact histogram merges. */
export function mergeSnapshots(list: readonly ViewsSnapshot[]): ViewsSnapshot {
  let out: ViewsSnapshot = {
    messages: {},
    events: {},
    dwellRecords: {},
    connectFailures: {},
    agentAlerts: {},
    histograms: { fleet: [], byHost: {}, byPort: [] },
    histogramsDropped: 0,
  };
  for (const s of list) {
    const byHost = { ...out.histograms.byHost };
    for (const [h, l] of Object.entries(s.histograms.byHost)) byHost[h] = mergeHist(byHost[h] ?? [], l);
    out = {
      messages: addNested(out.messages, s.messages),
      events: addFlat(out.events, s.events),
      dwellRecords: addFlat(out.dwellRecords, s.dwellRecords),
      connectFailures: addNested(out.connectFailures, s.connectFailures),
      agentAlerts: addNested(out.agentAlerts, s.agentAlerts),
      histograms: { fleet: mergeHist(out.histograms.fleet, s.histograms.fleet), byHost, byPort: mergeHist(out.histograms.byPort, s.histograms.byPort) },
      histogramsDropped: out.histogramsDropped + s.histogramsDropped,
    };
  }
  return out;
}
