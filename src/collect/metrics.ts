/**
 * Prometheus metrics of a collector instance (`tcpdwell collect --metrics-listen [HOST:PORT]`,
 * /metrics; /healthz, /readyz and / beside it).
 *
 * - `tcpdwell_collect_*` are this instance's share (counters): the fleet is
 *   `sum without (instance) (...)` over all instances, since each message is counted by one.
 * - `tcpdwell_fleet_*` come from the shared state (gauges): every instance exports the same
 *   values; use `max without (instance) (...)`, or scrape one instance.
 * Label sets are bounded: hosts (the fleet), states, reasons, a capped set of destinations,
 * listening ports and processes (views.ts bounds; stuck sockets are a few per host).
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Registry } from 'prom-client';
import * as hdr from 'hdr-histogram-js';
import { COLLECT_METRICS_PORT, DWELL_BUCKETS_S, instrumentProcess, metricsUrl, serveMetrics, type HealthSource } from '../publish/metrics.js';
import { pb } from '../publish/wire.js';
import { HistogramSet } from '../track/index.js';
import type { Collector } from './collector.js';
import { FLEET_RULES } from './rules.js';
import { isReadOnlySql, type Store } from './store.js';

/**
 * A metric whose values are read at scrape time and handed to prom-client as they are: no
 * per-series label hashing, no set()/inc() per value (at 5,000 hosts the collector's families are
 * ~40,000 series, and prom-client's Gauge and Counter bookkeeping was most of a scrape). The
 * collector's counts are cumulative since it started, so a counter shows them directly.
 */
function valuesMetric(registry: Registry, type: 'gauge' | 'counter', name: string, help: string, read: () => [Record<string, string>, number][]) {
  registry.registerMetric({
    name,
    help,
    type,
    aggregator: 'sum',
    get: async () => ({ name, help, type, aggregator: 'sum', values: read().map(([labels, value]) => ({ labels, value })) }),
    reset: () => {},
  } as never);
}
const gauge = (registry: Registry, name: string, help: string, _labels: string[], read: () => [Record<string, string>, number][]) => valuesMetric(registry, 'gauge', name, help, read);
const counter = (registry: Registry, name: string, help: string, _labels: string[], read: () => [Record<string, string>, number][]) => valuesMetric(registry, 'counter', name, help, read);

interface HdrCounts {
  countsArrayLength: number;
  getCountAtIndex(i: number): number;
  valueFromIndex(i: number): number;
}

/** Cumulative Prometheus buckets (seconds) of an HDR histogram of µs values. */
export function hdrToBuckets(h: hdr.Histogram, bounds: readonly number[] = DWELL_BUCKETS_S): { le: number[]; counts: number[]; sum: number; count: number } {
  const c = h as unknown as HdrCounts;
  const counts = new Array<number>(bounds.length).fill(0);
  let sum = 0;
  for (let i = 0; i < c.countsArrayLength; i++) {
    const n = c.getCountAtIndex(i);
    if (!n) continue;
    const s = c.valueFromIndex(i) / 1e6;
    sum += s * n;
    for (let b = 0; b < bounds.length; b++) if (s <= bounds[b]!) counts[b]! += n;
  }
  return { le: [...bounds], counts, sum, count: h.totalCount };
}

/** The names of Header.drops' counters (a header leaves zeros out: protobuf's defaults). */
const DROP_COUNTERS = Object.keys(pb.Drops.toObject(pb.Drops.create(), { defaults: true }));

/** Fetch or processing failures this recent make the instance unready (NATS away or refusing). */
export const COLLECT_READY_QUIET_MS = 10_000;

/**
 * Readiness of a collector instance: started (streams, bucket and consumer in place), NATS
 * reachable now (`connected`: the status of a connection to the same servers), and no fetch or
 * processing failure within COLLECT_READY_QUIET_MS. Fetches wait quietly while the client
 * reconnects, so failures alone do not tell a collector cut off from NATS.
 */
export function collectorHealth(c: Pick<Collector, 'stats'>, connected: () => boolean, nowMs: () => number = Date.now): HealthSource {
  let errors = c.stats().errors;
  let lastErrorAtMs = -Infinity;
  return {
    ready: () => {
      const now = nowMs();
      const e = c.stats().errors;
      if (e > errors) lastErrorAtMs = now;
      errors = e;
      const up = connected();
      const quiet = now - lastErrorAtMs >= COLLECT_READY_QUIET_MS;
      return [
        {
          name: 'nats',
          ok: up && quiet,
          detail: !up
            ? 'NATS is unreachable: reconnecting (the consumer resumes where it was)'
            : quiet
              ? `consuming; ${c.stats().counted} messages counted`
              : `fetch or processing failed ${Math.round((now - lastErrorAtMs) / 1000)} s ago (${e} failures in all): NATS is refusing or failing requests; see the log`,
        },
      ];
    },
  };
}

export class CollectorMetrics {
  readonly registry = new Registry();
  private server: Server | null = null;
  private readonly health: HealthSource;

  /** `connected`: whether NATS is reachable now (see collectorHealth; without it, only failures count) */
  constructor(c: Collector, connected: () => boolean = () => true) {
    const r = this.registry;
    this.health = collectorHealth(c, connected);
    instrumentProcess(r, 'collector');
    // One snapshot per scrape: every family below reads the same picture, taken once (a scrape
    // at 5,000 hosts took 1.6–2.9 s when each family took its own).
    let cached: { atMs: number; views: ReturnType<Collector['snapshot']>; live: ReturnType<Collector['liveHosts']>; runs: ReturnType<Collector['agentRuns']> } | null = null;
    const scrape = () => {
      const now = Date.now();
      if (!cached || now - cached.atMs > 250) cached = { atMs: now, views: c.views.snapshot({ histograms: false }), live: c.liveHosts(now), runs: c.agentRuns() };
      return cached;
    };
    const views = () => scrape().views;
    const flat = (o: Record<string, Record<string, number>>, a: string, b: string) =>
      Object.entries(o).flatMap(([k1, inner]) => Object.entries(inner).map(([k2, v]) => [{ [a]: k1, [b]: k2 }, v] as [Record<string, string>, number]));
    counter(r, 'tcpdwell_collect_messages_total', "Agent messages counted by this instance (each message is counted by one instance)", ['host', 'kind'], () => flat(views().messages, 'host', 'kind'));
    counter(r, 'tcpdwell_collect_events_total', 'Kernel events in the transition and snapshot batches counted by this instance', ['host'], () =>
      Object.entries(views().events).map(([host, v]) => [{ host }, v]),
    );
    counter(r, 'tcpdwell_collect_connect_failures_total', 'Failed connects (the error on leaving SYN_SENT) by errno and destination (capped; the rest as "other")', ['reason', 'destination'], () =>
      flat(views().connectFailures, 'reason', 'destination'),
    );
    counter(r, 'tcpdwell_collect_agent_alerts_total', 'Alerts published by agents, by detector and severity', ['host', 'kind', 'severity'], () =>
      Object.entries(views().agentAlerts).flatMap(([host, inner]) =>
        Object.entries(inner).map(([ks, v]) => {
          const [kind, severity] = ks.split('/');
          return [{ host, kind: kind!, severity: severity! }, v] as [Record<string, string>, number];
        }),
      ),
    );
    counter(r, 'tcpdwell_collect_duplicates_total', 'Deliveries of messages already counted (redeliveries, agent re-sends)', [], () => [[{}, c.stats().duplicates]]);
    counter(r, 'tcpdwell_collect_own_messages_total', "The collectors' own alerts read back from the stream and skipped", [], () => [[{}, c.stats().own]]);
    counter(r, 'tcpdwell_collect_rejected_total', 'Messages set aside in the dead-letter stream, by reason', ['reason'], () =>
      Object.entries(c.stats().rejected).map(([reason, v]) => [{ reason }, v]),
    );
    counter(r, 'tcpdwell_collect_errors_total', 'Fetch or processing failures (the batch is redelivered)', [], () => [[{}, c.stats().errors]]);
    counter(r, 'tcpdwell_collect_alerts_published_total', 'Fleet alert transitions this instance published', [], () => [[{}, c.stats().alertsPublished]]);

    // Dwell distributions, merged exactly from the agents' HDR histograms: exposed as a
    // Prometheus histogram (buckets are additive, so instances sum).
    const dwellHelp = "Time sockets spent in a state (from the agents' HDR histograms; scope fleet, host or listen_port; timewait phases as STATE_tw)";
    r.registerMetric({
      name: 'tcpdwell_collect_dwell_seconds',
      help: dwellHelp,
      type: 'histogram',
      aggregator: 'sum',
      get: async () => {
        const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
        const emit = (set: HistogramSet, dim: 'netns' | 'listen_port', labels: (key: string) => Record<string, string>) => {
          for (const { key, histogram } of set.entries()) {
            if (key.dimension !== dim) continue;
            const b = hdrToBuckets(histogram);
            const l = { ...labels(key.key), state: key.timewait ? `${key.state}_tw` : key.state };
            b.le.forEach((le, i) => values.push({ metricName: 'tcpdwell_collect_dwell_seconds_bucket', labels: { ...l, le }, value: b.counts[i]! }));
            values.push({ metricName: 'tcpdwell_collect_dwell_seconds_bucket', labels: { ...l, le: '+Inf' }, value: b.count });
            values.push({ metricName: 'tcpdwell_collect_dwell_seconds_sum', labels: l, value: b.sum });
            values.push({ metricName: 'tcpdwell_collect_dwell_seconds_count', labels: l, value: b.count });
          }
        };
        // The live histograms, not the snapshot's encoded copies (encoding and decoding them again
        // was most of a scrape).
        emit(c.views.fleet, 'netns', () => ({ scope: 'fleet', host: '', port: '' }));
        for (const [host, set] of c.views.byHost) emit(set, 'netns', () => ({ scope: 'host', host, port: '' }));
        emit(c.views.fleet, 'listen_port', (port) => ({ scope: 'listen_port', host: '', port }));
        return { name: 'tcpdwell_collect_dwell_seconds', help: dwellHelp, type: 'histogram', aggregator: 'sum', values };
      },
      reset: () => {},
    } as never);

    // Shared state: the same on every instance.
    gauge(r, 'tcpdwell_fleet_sockets', "Live TCP sockets per state per host, from each host's newest summary", ['host', 'state'], () =>
      scrape().live.flatMap((h) => Object.entries(h.states).map(([state, n]) => [{ host: h.host, state }, n] as [Record<string, string>, number])),
    );
    gauge(r, 'tcpdwell_fleet_time_wait_sockets', 'TIME_WAIT sockets per host (TIME_WAIT pressure)', ['host'], () => scrape().live.map((h) => [{ host: h.host }, h.states.TIME_WAIT ?? 0]));
    gauge(r, 'tcpdwell_fleet_close_wait_oldest_seconds', 'Age of the oldest CLOSE_WAIT socket per host and owning process (a leak never leaves the state)', ['host', 'process'], () => {
      const out = new Map<string, [Record<string, string>, number]>();
      for (const h of scrape().live) {
        for (const s of h.stuck) {
          if (s.state !== 'CLOSE_WAIT' || s.timewait) continue;
          const k = `${h.host}\t${s.ownerComm}`;
          if ((out.get(k)?.[1] ?? -1) < s.ageS) out.set(k, [{ host: h.host, process: s.ownerComm }, s.ageS]);
        }
      }
      return [...out.values()];
    });
    gauge(r, 'tcpdwell_fleet_hosts', 'Hosts with a current summary', [], () => [[{}, scrape().live.length]]);
    const perHost = (f: (run: ReturnType<Collector['agentRuns']>[number]) => number): [Record<string, string>, number][] => {
      const m = new Map<string, number>();
      for (const s of scrape().runs) m.set(s.host, (m.get(s.host) ?? 0) + f(s));
      return [...m].map(([host, n]) => [{ host }, n]);
    };
    // Per host only where not zero (5,000 hosts of zeros are 10,000 series that say nothing); the
    // fleet total is always there (host="").
    const nonZero = (list: [Record<string, string>, number][]): [Record<string, string>, number][] => [
      [{ host: '' }, list.reduce((n, [, v]) => n + v, 0)],
      ...list.filter(([, v]) => v !== 0),
    ];
    gauge(r, 'tcpdwell_fleet_agent_seq_missing', "Agent messages lost from a host's sequence: holes declared lost after the grace, less those that came late (host=\"\": the fleet; hosts listed where not 0)", ['host'], () =>
      nonZero(perHost((s) => s.lost - s.late)),
    );
    gauge(r, 'tcpdwell_fleet_agent_seq_pending', 'Agent messages not (yet) seen below the highest seen and not declared lost: holes younger than the grace (host="": the fleet; hosts listed where not 0)', ['host'], () =>
      nonZero(perHost((s) => s.pending)),
    );
    gauge(r, 'tcpdwell_collect_continuity_ranges', 'Disjoint ranges of arrived messages kept above the agents\' contiguous prefixes (the memory holes cost; 0 once every hole is filled or declared lost)', [], () => [
      [{}, scrape().runs.reduce((n, s) => n + s.ranges, 0)],
    ]);
    gauge(r, 'tcpdwell_fleet_agent_drops', "The agents' loss counters (Header.drops), summed over each host's runs (host=\"\": the fleet, every counter, 0 when nothing was lost; hosts listed where not 0)", ['host', 'reason'], () => {
      const m = new Map<string, number>(DROP_COUNTERS.map((k) => [`\t${k}`, 0]));
      for (const s of scrape().runs) {
        for (const [k, v] of Object.entries(s.drops)) {
          if (v === 0) continue;
          m.set(`${s.host}\t${k}`, (m.get(`${s.host}\t${k}`) ?? 0) + v);
          m.set(`\t${k}`, (m.get(`\t${k}`) ?? 0) + v);
        }
      }
      return [...m].map(([k, v]) => {
        const [host, reason] = k.split('\t');
        return [{ host: host!, reason: reason! }, v];
      });
    });
    gauge(r, 'tcpdwell_fleet_alerts_firing', 'Fleet alerts firing now, by rule (every rule shown, 0 when quiet)', ['rule'], () => {
      const m = new Map<string, number>(FLEET_RULES.map((rule) => [rule, 0]));
      for (const a of c.firing()) m.set(a.rule, (m.get(a.rule) ?? 0) + 1);
      return [...m].map(([rule, n]) => [{ rule }, n]);
    });
  }

  /**
   * Serves /metrics, /healthz, /readyz and / on HOST:PORT (true: 0.0.0.0:19465), and POST /sql
   * when there is a store: one read-only statement (what `tcpdwell query|sql --store
   * http://HOST:PORT` send), JSON { columns, rows } with 64-bit integers as strings. Returns the
   * URL of /metrics.
   */
  async listen(spec: string | true, store?: Store): Promise<string> {
    this.server = await serveMetrics(this.registry, spec, {
      who: 'tcpdwell collect',
      defaultPort: COLLECT_METRICS_PORT,
      health: this.health,
      extra: store ? (req, res) => sqlRoute(store, req, res) : undefined,
    });
    return metricsUrl(this.server);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** POST /sql: the statement in the body, its result as JSON; a usage problem is a 400 with one line. */
function sqlRoute(store: Store, req: IncomingMessage, res: ServerResponse): boolean {
  if (req.url !== '/sql') return false;
  if (req.method !== 'POST') {
    res.writeHead(405, { allow: 'POST' }).end('POST one read-only SQL statement to /sql\n');
    return true;
  }
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (d: string) => {
    body += d;
    if (body.length > 1 << 20) req.destroy();
  });
  req.on('end', () => {
    if (!isReadOnlySql(body)) {
      res.writeHead(400).end('tcpdwell sql runs one read-only statement (SELECT, WITH, DESCRIBE, SHOW, EXPLAIN, SUMMARIZE)\n');
      return;
    }
    store.sql(body).then(
      (r) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(r, (_, v) => (typeof v === 'bigint' ? v.toString() : v))),
      (err: Error) => res.writeHead(400).end(`${err.message.split('\n')[0]}\n`),
    );
  });
  return true;
}
