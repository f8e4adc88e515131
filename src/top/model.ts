/**
 * What `tcpdwell top` shows, as plain data, and the pure bookkeeping that builds it: dwell
 * percentiles from the tracker's HDR histograms, connect failures from dwell records, alerts
 * as they start and stop firing, and a short history of counts for the trend. No I/O here:
 * sources (local.ts: the kernel; fleet.ts: NATS) fill it, render.ts draws it.
 */
import type { Histogram, JsHistogram } from 'hdr-histogram-js';
import { endpoint } from '../decode/index.js';
import { LOSS_REASONS, type LossReason } from '../kernel/abi.js';
import { DETECTOR_STATE, HistogramSet, isConnectFailure, type Alert, type DetectorName, type DwellRecord, type StateCounts, type StateName, type StuckSocket } from '../track/index.js';

/** Upper bounds (µs) of the histogram bar's buckets: decades from 10 µs, then 1 min, 10 min, more. */
export const BAR_BOUNDS_US = [10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 6e7, 6e8, Infinity] as const;
export const BAR_LABELS = ['10µs', '100µs', '1ms', '10ms', '100ms', '1s', '10s', '1min', '10min', 'more'] as const;

/** One state's dwell distribution, summarised (values in µs, the histograms' unit). */
export interface DwellSummary {
  count: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  maxUs: number;
  /** counts per BAR_BOUNDS_US bucket */
  bars: number[];
}

/** Dwell summaries keyed "STATE" (a full socket's state) or "STATE/timewait" (a timewait phase). */
export type DwellTable = Record<string, DwellSummary>;

export interface DwellTables {
  all: DwellTable;
  byNetns: Record<number, DwellTable>;
}

/** A socket still in its state (StuckSocket, with the host it is on). */
export interface SocketRow extends StuckSocket {
  host: string;
}

/** One host's picture. */
export interface HostView {
  host: string;
  /** wall-clock ms the data is from */
  atMs: number;
  byNetns: { netns: number; counts: StateCounts }[];
  /** the oldest sockets of each state */
  stuck: SocketRow[];
  /** every socket, when the source can list them (so port and process filters can count); else null */
  sockets: SocketRow[] | null;
  /** true when `sockets` stopped at a cap (counts under a port/process filter are then a lower bound) */
  socketsTruncated: boolean;
  dwell: DwellTables;
  /** loss counters, name → value, in display order */
  drops: [string, number][];
  events: number;
}

/** An alert as `top` lists it. */
export interface AlertView {
  host: string;
  key: string;
  detector: string;
  /** the state `tcpdwell explain` should be run for; null for an unknown detector */
  state: StateName | null;
  summary: string;
  netns: number;
  firing: boolean;
  /** wall-clock ms it started firing, and of the last change */
  sinceMs: number;
  atMs: number;
}

/** Failed connects to one destination for one reason. */
export interface FailureView {
  host: string;
  netns: number;
  reason: string;
  destination: string;
  count: number;
  lastMs: number;
  owner: string | null;
}

/** One connection's close, with its vital signs (CloseBook keeps the worst few). */
export interface CloseView {
  host: string;
  netns: number;
  /** the state it left at the close */
  state: string;
  local: string;
  remote: string;
  owner: string | null;
  srttUs: number;
  totalRetrans: number;
  bytesAcked: number;
  bytesReceived: number;
  resetBy: 'sent' | 'received' | null;
  atMs: number;
}

/** The closes since start: totals, and the worst few (most retransmits, then highest RTT). */
export interface ClosesView {
  closes: number;
  resetSent: number;
  resetReceived: number;
  retransmitted: number;
  /** closes that retransmitted at all */
  withRetrans: number;
  worst: CloseView[];
}

/** One sample of the counts, for the trend. */
export interface HistorySample {
  atMs: number;
  /** host → counts per namespace */
  hosts: Record<string, { netns: number; counts: StateCounts }[]>;
}

/** Everything one frame shows. */
export interface TopData {
  /** "local" or the NATS servers */
  source: string;
  fleet: boolean;
  hosts: HostView[];
  /** dwell over every host (the local view: the one host's) */
  dwell: DwellTables;
  history: HistorySample[];
  alerts: AlertView[];
  failures: FailureView[];
  /** connection closes and their vital signs (absent: none seen) */
  closes?: ClosesView;
  /** one line about the source's state (e.g. "waiting for summaries"), or null */
  status: string | null;
}

export const emptyDwell = (): DwellTables => ({ all: {}, byNetns: {} });

/** The summary of one histogram: percentiles and the bar's bucket counts. */
export function summarizeHistogram(h: Histogram): DwellSummary {
  const bars = new Array<number>(BAR_BOUNDS_US.length).fill(0);
  // The pure-JS histogram (what histograms.ts builds) can walk its recorded values.
  const it = (h as Partial<JsHistogram>).recordedValuesIterator;
  if (it) {
    it.reset();
    while (it.hasNext()) {
      const v = it.next();
      bars[bucketOf(v.valueIteratedTo)]! += v.countAddedInThisIterationStep;
    }
  }
  return {
    count: h.totalCount,
    p50Us: h.getValueAtPercentile(50),
    p90Us: h.getValueAtPercentile(90),
    p99Us: h.getValueAtPercentile(99),
    maxUs: h.maxValue,
    bars,
  };
}

function bucketOf(us: number): number {
  for (let i = 0; i < BAR_BOUNDS_US.length; i++) if (us < BAR_BOUNDS_US[i]!) return i;
  return BAR_BOUNDS_US.length - 1;
}

/** Dwell summaries of a histogram set: host-wide per state, and per network namespace. */
export function dwellTables(set: HistogramSet): DwellTables {
  const all: DwellTable = {};
  for (const [name, h] of set.totals()) all[name] = summarizeHistogram(h);
  const byNetns: Record<number, DwellTable> = {};
  for (const { key, histogram } of set.entries()) {
    if (key.dimension !== 'netns') continue;
    (byNetns[Number(key.key)] ??= {})[key.timewait ? `${key.state}/timewait` : key.state] = summarizeHistogram(histogram);
  }
  return { all, byNetns };
}

/**
 * The DROPS line: every loss reason (bpf/tcpdwell.h) a source has a count for, then what made
 * dwells unknown (no socket storage, state gaps).
 */
export function dropRows(lost: Partial<Record<LossReason, number>>, unknown: { noStorage: number; stateGaps: number }): [string, number][] {
  const rows: [string, number][] = [];
  for (const { name } of LOSS_REASONS) {
    const n = lost[name];
    if (n !== undefined) rows.push([name.replace('_', ' '), n]);
  }
  rows.push(['no storage', unknown.noStorage], ['state gaps', unknown.stateGaps]);
  return rows;
}

/** Connect failures (SYN_SENT left with an error), counted from dwell records. */
export class FailureBook {
  private readonly byKey = new Map<string, FailureView>();

  constructor(private readonly maxKeys = 1000) {}

  /** Counts the record if it is a failed connect. */
  add(host: string, r: DwellRecord, nowMs: number): void {
    if (!isConnectFailure(r.state, r.error)) return;
    const destination = endpoint(r.daddr, r.dport);
    const key = `${host}|${r.netns}|${r.error}|${destination}`;
    let f = this.byKey.get(key);
    if (!f) {
      if (this.byKey.size >= this.maxKeys) return;
      this.byKey.set(key, (f = { host, netns: r.netns, reason: r.error, destination, count: 0, lastMs: nowMs, owner: null }));
    }
    f.count++;
    f.lastMs = nowMs;
    if (r.ownerPid !== null) f.owner = `${r.ownerComm ?? '?'}/${r.ownerPid}`;
  }

  list(): FailureView[] {
    return [...this.byKey.values()].map((f) => ({ ...f }));
  }
}

/** Connection closes from dwell records (those with vital signs): totals and the worst few. */
export class CloseBook {
  private readonly view: ClosesView = { closes: 0, resetSent: 0, resetReceived: 0, retransmitted: 0, withRetrans: 0, worst: [] };

  constructor(private readonly keep = 5) {}

  /** Counts the record if it is a connection's close. */
  add(host: string, r: DwellRecord, nowMs: number): void {
    const v = r.vitals;
    if (!v) return;
    const s = this.view;
    s.closes++;
    if (r.resetBy === 'sent') s.resetSent++;
    else if (r.resetBy === 'received') s.resetReceived++;
    s.retransmitted += v.totalRetrans;
    if (v.totalRetrans > 0) s.withRetrans++;
    const worse = (a: { totalRetrans: number; srttUs: number }, b: { totalRetrans: number; srttUs: number }) => a.totalRetrans - b.totalRetrans || a.srttUs - b.srttUs;
    const last = s.worst[s.worst.length - 1];
    if (s.worst.length >= this.keep && last && worse(v, last) <= 0) return;
    s.worst.push({
      host,
      netns: r.netns,
      state: r.state,
      local: endpoint(r.saddr, r.sport),
      remote: endpoint(r.daddr, r.dport),
      owner: r.ownerPid !== null ? `${r.ownerComm ?? '?'}/${r.ownerPid}` : null,
      ...v,
      resetBy: r.resetBy,
      atMs: nowMs,
    });
    s.worst.sort((a, b) => worse(b, a));
    if (s.worst.length > this.keep) s.worst.length = this.keep;
  }

  get(): ClosesView {
    return { ...this.view, worst: this.view.worst.map((w) => ({ ...w })) };
  }
}

/** Alerts as they start and stop firing; resolved ones stay listed (newest first) up to a cap. */
export class AlertBook {
  private readonly items = new Map<string, AlertView>();

  constructor(private readonly keep = 50) {}

  /** One alert's news: firing (again) or resolved. */
  update(a: Omit<AlertView, 'state'>): void {
    const key = `${a.host}|${a.key}`;
    const old = this.items.get(key);
    this.items.delete(key);
    this.items.set(key, { ...a, state: DETECTOR_STATE[a.detector as DetectorName] ?? null, sinceMs: old?.firing && a.firing ? old.sinceMs : a.sinceMs });
    while (this.items.size > this.keep) {
      const oldestResolved = [...this.items].find(([, v]) => !v.firing)?.[0] ?? this.items.keys().next().value!;
      this.items.delete(oldestResolved);
    }
  }

  /** Everything the tracker says fires now, for one host: new keys fire, missing keys resolve. */
  sync(host: string, alerts: readonly Alert[], nowMs: number, bootToMs: (ns: bigint) => number): void {
    const now = new Set(alerts.map((a) => `${host}|${a.key}`));
    for (const a of alerts) {
      const old = this.items.get(`${host}|${a.key}`);
      if (old?.firing) {
        old.summary = a.summary;
        continue;
      }
      this.update({ host, key: a.key, detector: a.detector, summary: a.summary, netns: a.netns, firing: true, sinceMs: bootToMs(a.sinceNs), atMs: nowMs });
    }
    for (const [k, v] of this.items) if (v.host === host && v.firing && !now.has(k)) this.update({ ...v, firing: false, atMs: nowMs });
  }

  /** Firing first, then by time, newest first. */
  list(): AlertView[] {
    return [...this.items.values()].sort((a, b) => Number(b.firing) - Number(a.firing) || b.atMs - a.atMs);
  }
}

/** The last `keep` samples of the counts. */
export class History {
  readonly samples: HistorySample[] = [];

  constructor(private readonly keep = 120) {}

  push(atMs: number, hosts: readonly HostView[]): void {
    this.samples.push({ atMs, hosts: Object.fromEntries(hosts.map((h) => [h.host, h.byNetns])) });
    if (this.samples.length > this.keep) this.samples.shift();
  }
}
