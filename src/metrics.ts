/**
 * Prometheus metrics of a running agent (`tcpdwell run --metrics-listen HOST:PORT`, path /metrics).
 * Label sets are bounded: state, network namespace, detector, loss reason — never pids or ports.
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { UsageError } from './errors.js';
import type { DwellRecord, LiveTableSnapshot } from './track/index.js';

/** What the metrics read from the agent at scrape time. */
export interface MetricsSource {
  states(): LiveTableSnapshot;
  status(): {
    events: number;
    drops: { lost_ring_full: number; malformed: number; skipped_transitions: number; spoolDropped: number; state_gaps: number };
    tracker: { alertsFired: number };
    alertsFiring: number;
  };
}

/** Dwell buckets in seconds: 10 µs to an hour, the range TCP states live in. */
export const DWELL_BUCKETS_S = [1e-5, 1e-4, 1e-3, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 900, 3600];

/** A Counter that mirrors a cumulative number read at scrape time. */
export function mirrorCounter(registry: Registry, name: string, help: string, labelNames: string[], read: () => [Record<string, string>, number][]) {
  const last = new Map<string, number>();
  return new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      for (const [labels, value] of read()) {
        const k = JSON.stringify(labels);
        const delta = value - (last.get(k) ?? 0);
        // A zero is shown too: "nothing lost" should be visible, not absent.
        if (delta > 0 || !last.has(k)) this.inc(labels, Math.max(0, delta));
        last.set(k, value);
      }
    },
  });
}

/** An HTTP server answering /metrics from the registry on HOST:PORT (port 0: any free one). */
export async function serveMetrics(registry: Registry, spec: string, who: string): Promise<Server> {
  const m = /^(.*):(\d+)$/.exec(spec);
  if (!m || Number(m[2]) > 65535) throw new UsageError(`--metrics-listen ${spec}: give HOST:PORT, e.g. 127.0.0.1:9464`);
  const host = m[1]!.replace(/^\[(.*)\]$/, '$1') || '0.0.0.0';
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end(`${who}: metrics are at /metrics\n`);
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: Error) => res.writeHead(500).end(`${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new UsageError(`--metrics-listen ${spec}: ${err.message}`)));
    server.listen(Number(m[2]), host, resolve);
  });
  return server;
}

/** Where a metrics server listens, as a URL. */
export function metricsUrl(server: Server): string {
  const addr = server.address() as { address: string; port: number };
  return `http://${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}/metrics`;
}

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly dwell: Histogram<'state'>;
  private server: Server | null = null;

  constructor(source: MetricsSource) {
    const r = this.registry;
    new Gauge({
      name: 'tcpdwell_sockets',
      help: 'TCP sockets per state right now, per network namespace (timewait socks under their substate, as ss shows them)',
      labelNames: ['state', 'netns'],
      registers: [r],
      collect() {
        this.reset();
        for (const { netns, counts } of source.states().byNetns) {
          for (const [state, n] of Object.entries(counts)) this.set({ state, netns: String(netns) }, n);
        }
      },
    });
    this.dwell = new Histogram({
      name: 'tcpdwell_dwell_seconds',
      help: 'Time sockets spent in a state before leaving it (exact and estimated dwells; timewait phases as TIME_WAIT_tw/FIN_WAIT2_tw)',
      labelNames: ['state'],
      buckets: DWELL_BUCKETS_S,
      registers: [r],
    });
    mirrorCounter(r, 'tcpdwell_events_total', 'Kernel events decoded', [], () => [[{}, source.status().events]]);
    mirrorCounter(r, 'tcpdwell_events_lost_total', 'Events lost, by reason', ['reason'], () => {
      const d = source.status().drops;
      return [
        [{ reason: 'ring_full' }, d.lost_ring_full],
        [{ reason: 'malformed' }, d.malformed],
        [{ reason: 'kernel_skipped' }, d.skipped_transitions],
        [{ reason: 'spool_dropped' }, d.spoolDropped],
      ];
    });
    mirrorCounter(r, 'tcpdwell_state_gaps_total', 'Transitions that followed a missed one (their dwell unknown)', [], () => [
      [{}, source.status().drops.state_gaps],
    ]);
    mirrorCounter(r, 'tcpdwell_alerts_fired_total', 'Detector alerts that started firing', [], () => [[{}, source.status().tracker.alertsFired]]);
    new Gauge({
      name: 'tcpdwell_alerts_firing',
      help: 'Detector alerts firing now',
      registers: [r],
      collect() {
        this.set(source.status().alertsFiring);
      },
    });
  }

  /** Feeds one dwell record into the dwell histogram (lower bounds are not dwells). */
  observeDwell(rec: DwellRecord): void {
    if (rec.precision !== 'exact' && rec.precision !== 'estimated') return;
    this.dwell.observe({ state: rec.timewait ? `${rec.state}_tw` : rec.state }, Number(rec.dwellNs) / 1e9);
  }

  /** Serves /metrics on HOST:PORT; returns the URL. */
  async listen(spec: string): Promise<string> {
    this.server = await serveMetrics(this.registry, spec, 'tcpdwell');
    return metricsUrl(this.server);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
