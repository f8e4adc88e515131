/**
 * Prometheus metrics of a running agent (`tcpdwell run --metrics-listen [HOST:PORT]`, path
 * /metrics; /healthz, /readyz and / beside it). Label sets are bounded: state, network namespace,
 * detector, loss reason — never pids or ports.
 */
import type { Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { LOSS_REASONS, RstDirection } from '../kernel/abi.js';
import { AGENT_METRICS_PORT, DWELL_BUCKETS_S, instrumentProcess, metricsUrl, mirrorCounter, serveMetrics } from '../publish/metrics.js';
import { lossesOf } from '../publish/service.js';
import { errnoName, stateName, stateValue } from '../decode/index.js';
import { DETECTORS, type DwellPrecision, type DwellRecord, type DwellRow, type LiveTableSnapshot } from '../track/index.js';
import type { ContainerSockets } from './containers.js';
import { agentHealth, type HealthTarget } from './health.js';

const SYN_SENT = stateValue('SYN_SENT');

/** RTT at the close, seconds: 50 µs (loopback) to 10 s (a satellite link, or a path in trouble). */
export const CLOSE_RTT_BUCKETS_S = [5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];
/** Segments retransmitted over a connection's life: 0 (the usual) apart, then by rough decades. */
export const CLOSE_RETRANS_BUCKETS = [0, 1, 2, 5, 10, 20, 50, 100, 1000];

/** What the metrics read from the agent at scrape time. */
export interface MetricsSource extends HealthTarget {
  states(): LiveTableSnapshot;
  containerSockets(): ContainerSockets[];
  alertsByDetector(): Map<string, number>;
}

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly dwell: Histogram<'state'>;
  private readonly connectFailures: Counter<'reason'>;
  private readonly closeRtt: Histogram<'state'>;
  private readonly closeRetrans: Histogram<'state'>;
  private readonly closeBytes: Counter<'direction'>;
  private readonly closes: Counter<'reset'>;
  private server: Server | null = null;

  constructor(private readonly source: MetricsSource) {
    const r = this.registry;
    instrumentProcess(r, 'agent');
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
    new Gauge({
      name: 'tcpdwell_container_sockets',
      help: 'TCP sockets per state right now, per container (the socket\'s cgroup: short container id, systemd unit or cgroup path; at most 50 containers, the rest as "other")',
      labelNames: ['container', 'runtime', 'pod_uid', 'state'],
      registers: [r],
      collect() {
        this.reset();
        for (const c of source.containerSockets()) {
          for (const [state, n] of Object.entries(c.counts)) this.set({ container: c.container, runtime: c.runtime, pod_uid: c.podUid, state }, n);
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
    new Gauge({
      name: 'tcpdwell_spool_bytes',
      help: 'Bytes waiting in the store-and-forward spool (sent when NATS takes them; the oldest dropped past tcpdwell_spool_max_bytes)',
      registers: [r],
      collect() {
        this.set(source.status().spool.bytes);
      },
    });
    new Gauge({
      name: 'tcpdwell_spool_max_bytes',
      help: 'The spool bound (--spool-max-bytes)',
      registers: [r],
      collect() {
        this.set(source.status().spool.maxBytes);
      },
    });
    new Gauge({
      name: 'tcpdwell_nats_connected',
      help: '1 while the agent is connected to NATS, 0 while it spools',
      registers: [r],
      collect() {
        this.set(source.status().nats.connected ? 1 : 0);
      },
    });
    mirrorCounter(r, 'tcpdwell_alerts_fired_total', 'Detector alerts that started firing', [], () => [[{}, source.status().tracker.alertsFired]]);
    new Gauge({
      name: 'tcpdwell_detector_alerts_firing',
      help: 'Detector alerts firing now, per detector (every detector shown, 0 when quiet)',
      labelNames: ['detector'],
      registers: [r],
      collect() {
        const firing = source.alertsByDetector();
        for (const d of DETECTORS) this.set({ detector: d.name }, firing.get(d.name) ?? 0);
      },
    });
    this.connectFailures = new Counter({
      name: 'tcpdwell_connect_failures_total',
      help: 'Connects that failed (the error on leaving SYN_SENT), by errno name: ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ...',
      labelNames: ['reason'],
      registers: [r],
    });
    // Every connection's vital signs at its close (labels: the state it left, or none: bounded).
    const byState = (name: string, help: string, buckets: number[]) => new Histogram({ name, help, labelNames: ['state'], buckets, registers: [r] });
    this.closeRtt = byState(
      'tcpdwell_close_rtt_seconds',
      'Smoothed RTT of connections at their close (tcp_sock srtt, as ss -ti shows it), by the state they left; closes that never measured one are left out',
      CLOSE_RTT_BUCKETS_S,
    );
    this.closeRetrans = byState(
      'tcpdwell_close_retransmitted_segments',
      'Segments each connection retransmitted over its life, observed at its close, by the state it left',
      CLOSE_RETRANS_BUCKETS,
    );
    this.closeBytes = new Counter({
      name: 'tcpdwell_close_bytes_total',
      help: 'Bytes of closed connections: acked by the peer (direction="acked") and received in order (direction="received"), as tcp_sock counts them (the data, the SYN and FINs one each)',
      labelNames: ['direction'],
      registers: [r],
    });
    this.closes = new Counter({
      name: 'tcpdwell_closes_total',
      help: 'Connections closed, by the RST before the close: reset="received", "sent", or "none" (an abort that resets after its close, SO_LINGER 0, counts as none here and as a reset sent in the reset events)',
      labelNames: ['reset'],
      registers: [r],
    });
    this.closesBy = { none: this.closes.labels({ reset: 'none' }), sent: this.closes.labels({ reset: 'sent' }), received: this.closes.labels({ reset: 'received' }) };
    this.acked = this.closeBytes.labels({ direction: 'acked' });
    this.received = this.closeBytes.labels({ direction: 'received' });
    // Zeros shown too: "no resets" should be visible, not absent.
    for (const c of [...Object.values(this.closesBy), this.acked, this.received]) c.inc(0);
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
    if (rec.state === 'SYN_SENT' && rec.error !== null && !rec.timewait) this.connectFailures.inc({ reason: rec.error });
    this.observe(stateValue(rec.state), rec.timewait, Number(rec.dwellNs), rec.precision);
    const v = rec.vitals;
    if (v) this.observeClose(stateValue(rec.state), v.srttUs, v.totalRetrans, v.bytesAcked, v.bytesReceived, rec.resetBy === 'sent' ? RstDirection.SENT : rec.resetBy === 'received' ? RstDirection.RECEIVED : 0);
  }

  /** observeDwell of a dwell row (the agent's path). */
  observeRow(row: Readonly<DwellRow>): void {
    if (row.errno !== 0 && row.state === SYN_SENT && !row.timewait) this.connectFailures.inc({ reason: errnoName(row.errno) });
    this.observe(row.state, row.timewait, row.dwellNs, row.precision);
    if (row.closing) this.observeClose(row.state, row.srttUs, row.totalRetrans, row.bytesAcked, row.bytesReceived, row.reset);
  }

  private readonly closesBy: Record<'none' | 'sent' | 'received', Counter.Internal>;
  private readonly acked: Counter.Internal;
  private readonly received: Counter.Internal;
  /** per state: the RTT and retransmit histograms' children, made once */
  private readonly closeChildren: ([Histogram.Internal<'state'>, Histogram.Internal<'state'>] | undefined)[] = [];

  private observeClose(state: number, srttUs: number, retrans: number, acked: number, received: number, reset: number): void {
    let c = this.closeChildren[state];
    if (!c) {
      const labels = { state: stateName(state) };
      this.closeChildren[state] = c = [this.closeRtt.labels(labels), this.closeRetrans.labels(labels)];
    }
    if (srttUs > 0) c[0].observe(srttUs / 1e6);
    c[1].observe(retrans);
    if (acked > 0) this.acked.inc(acked);
    if (received > 0) this.received.inc(received);
    (reset === RstDirection.SENT ? this.closesBy.sent : reset === RstDirection.RECEIVED ? this.closesBy.received : this.closesBy.none).inc();
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

  /** Serves /metrics, /healthz, /readyz and / on HOST:PORT (true: 0.0.0.0:19464); returns the URL of /metrics. */
  async listen(spec: string | true): Promise<string> {
    this.server = await serveMetrics(this.registry, spec, { who: 'tcpdwell run', defaultPort: AGENT_METRICS_PORT, health: agentHealth(this.source) });
    return metricsUrl(this.server);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
