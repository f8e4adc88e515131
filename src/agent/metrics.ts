/**
 * Prometheus metrics of a running agent (`tcpdwell run --metrics-listen HOST:PORT`, path /metrics).
 * Label sets are bounded: state, network namespace, detector, loss reason — never pids or ports.
 */
import type { Server } from 'node:http';
import { Gauge, Histogram, Registry } from 'prom-client';
import { LOSS_REASONS } from '../kernel/abi.js';
import { DWELL_BUCKETS_S, metricsUrl, mirrorCounter, serveMetrics } from '../publish/metrics.js';
import { lossesOf, type AgentStatus } from '../publish/service.js';
import { stateName, stateValue } from '../decode/index.js';
import type { DwellPrecision, DwellRecord, DwellRow, LiveTableSnapshot } from '../track/index.js';

/** What the metrics read from the agent at scrape time. */
export interface MetricsSource {
  states(): LiveTableSnapshot;
  status(): AgentStatus;
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
      const lost = lossesOf(source.status().drops);
      return LOSS_REASONS.map(({ name }) => [{ reason: name }, lost[name]]);
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
    this.observe(stateValue(rec.state), rec.timewait, Number(rec.dwellNs), rec.precision);
  }

  /** observeDwell of a dwell row (the agent's path). */
  observeRow(row: Readonly<DwellRow>): void {
    this.observe(row.state, row.timewait, row.dwellNs, row.precision);
  }

  /** The histogram's child per state label, made once (a labels object per observation was measurable). */
  private readonly children: (Histogram.Internal<'state'> | undefined)[] = [];

  private observe(state: number, timewait: boolean, dwellNs: number, precision: DwellPrecision): void {
    if (precision !== 'exact' && precision !== 'estimated') return;
    const i = state + (timewait ? 256 : 0);
    let child = this.children[i];
    if (!child) this.children[i] = child = this.dwell.labels({ state: timewait ? `${stateName(state)}_tw` : stateName(state) });
    child.observe(dwellNs / 1e9);
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
