/**
 * `top --nats`: the fleet as its agents publish it. FleetModel is pure (messages in, TopData
 * out); FleetSource subscribes to tcpdwell.v1.<host>.summary, .alerts and .dwell (dwell records
 * carry the connect failures) and feeds it.
 */
import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import { stateName } from '../decode/index.js';
import { connectNats, type ConnectionSettings } from '../publish/connection.js';
import type { tcpdwell } from '../publish/pb/tcpdwell.js';
import { agentSubjects, parseAgentSubject } from '../publish/subjects.js';
import { addrText, big, decodeDwell, pb, type Header } from '../publish/wire.js';
import { HistogramSet, HISTOGRAM_UNIT, type EncodedHistogram, type HistogramDimension } from '../track/index.js';
import { AlertBook, dropRows, dwellTables, emptyDwell, CloseBook, FailureBook, History, type HostView, type SocketRow, type TopData } from './model.js';

interface HostState {
  view: HostView;
  hist: HistogramSet;
}

/** The fleet, from decoded messages. Pure: no connection here. */
export class FleetModel {
  private readonly hosts = new Map<string, HostState>();
  private readonly all = new HistogramSet();
  private readonly alerts = new AlertBook();
  private readonly failures = new FailureBook();
  private readonly closes = new CloseBook();
  private readonly history = new History();
  messages = 0;
  undecodable = 0;

  constructor(private readonly source: string) {}

  /** One message from tcpdwell.v1.<host>.<kind>; undecodable ones are counted, not thrown. */
  ingest(subject: string, data: Uint8Array, nowMs: number): void {
    this.messages++;
    const { host: subjectHost, kind } = parseAgentSubject(subject) ?? { host: '?', kind: '' };
    try {
      if (kind === 'summary') this.summary(subjectHost, pb.Summary.decode(data), nowMs);
      else if (kind === 'alerts') this.alert(subjectHost, pb.Alert.decode(data), nowMs);
      else if (kind === 'dwell') {
        const { header, records } = decodeDwell(data);
        for (const r of records) {
          this.failures.add(header.hostId || subjectHost, r, nowMs);
          this.closes.add(header.hostId || subjectHost, r, nowMs);
        }
      }
    } catch {
      this.undecodable++;
    }
  }

  private toMs(ns: unknown, header: Header | null | undefined): number {
    return Number((big(ns as number) + big(header?.bootToUnixNs as number)) / 1_000_000n);
  }

  private summary(subjectHost: string, m: tcpdwell.v1.Summary, nowMs: number): void {
    const host = m.header?.hostId || subjectHost;
    let h = this.hosts.get(host);
    if (!h) this.hosts.set(host, (h = { hist: new HistogramSet(), view: { host, atMs: nowMs, byNetns: [], stuck: [], sockets: null, socketsTruncated: false, dwell: emptyDwell(), drops: [], events: 0 } }));
    const counts = (list: tcpdwell.v1.IStateCount[] | null | undefined) => Object.fromEntries((list ?? []).map((s) => [stateName(s.state ?? 0), Number(s.count ?? 0)]));
    const encoded: EncodedHistogram[] = (m.distributions ?? []).map((d) => ({
      state: stateName(d.state ?? 0),
      timewait: d.timewait ?? false,
      dimension: d.dimension as HistogramDimension,
      key: d.key ?? '',
      unit: (d.unit || HISTOGRAM_UNIT) as typeof HISTOGRAM_UNIT,
      significantDigits: d.significantDigits ?? 0,
      totalCount: Number(d.count),
      hdr: Buffer.from(d.hdr ?? []).toString('base64'),
    }));
    // Each summary carries its interval's histograms: added up, they cover everything since top started.
    h.hist.mergeEncoded(encoded);
    this.all.mergeEncoded(encoded);
    const stuck: SocketRow[] = (m.stuck ?? []).map((s) => ({
      host,
      cookie: big(s.cookie as number),
      state: stateName(s.state ?? 0),
      timewait: s.timewait ?? false,
      ageNs: big(s.ageNs as number),
      ageIsLowerBound: s.lowerBound ?? false,
      netns: s.netns ?? 0,
      cgroupId: big(s.cgroupId as number),
      family: s.family === 6 ? 'inet6' : 'inet',
      saddr: addrText(s.saddr),
      sport: s.sport ?? 0,
      daddr: addrText(s.daddr),
      dport: s.dport ?? 0,
      ownerPid: s.ownerPid || null,
      ownerComm: s.ownerPid ? (s.ownerComm ?? '') : null,
    }));
    const d = m.header?.drops ?? {};
    const n = (v: unknown) => Number(big(v as number));
    h.view = {
      ...h.view,
      atMs: m.header ? this.toMs(m.atNs, m.header) : nowMs,
      byNetns: m.byNetns?.length ? m.byNetns.map((x) => ({ netns: x.netns ?? 0, counts: counts(x.states) })) : [{ netns: 0, counts: counts(m.states) }],
      stuck,
      dwell: dwellTables(h.hist),
      drops: dropRows(
        { ring_full: n(d.ringFull), kernel_skipped: n(d.kernelSkipped) + n(d.kernelSkippedTimer), malformed: n(d.malformed), spool_dropped: n(d.spoolDropped) },
        { noStorage: n(d.noStorage), stateGaps: n(d.stateGaps) },
      ),
      events: Number(m.eventsTotal),
    };
  }

  private alert(subjectHost: string, a: tcpdwell.v1.Alert, nowMs: number): void {
    const host = a.header?.hostId || subjectHost;
    this.alerts.update({
      host,
      key: a.key,
      detector: a.kind,
      summary: a.message,
      netns: a.netns,
      firing: a.severity !== 'resolved',
      sinceMs: a.header ? this.toMs(a.sinceNs, a.header) : nowMs,
      atMs: a.header ? this.toMs(a.atNs, a.header) : nowMs,
    });
  }

  /** The picture now; each call is one sample of the trend. */
  tick(nowMs: number): TopData {
    const hosts = [...this.hosts.values()].map((h) => h.view).sort((a, b) => a.host.localeCompare(b.host));
    this.history.push(nowMs, hosts);
    return {
      source: this.source,
      fleet: true,
      hosts,
      dwell: dwellTables(this.all),
      history: this.history.samples,
      alerts: this.alerts.list(),
      failures: this.failures.list(),
      closes: this.closes.get(),
      status: this.undecodable ? `${this.undecodable} of ${this.messages} messages could not be decoded (skipped)` : null,
    };
  }
}

/** The subscriptions feeding a FleetModel. */
export class FleetSource {
  readonly model: FleetModel;
  private readonly subs: Subscription[] = [];

  private constructor(
    private readonly nc: NatsConnection,
    connection: ConnectionSettings,
    host: string | undefined,
  ) {
    this.model = new FleetModel(connection.servers.join(','));
    for (const kind of ['summary', 'alerts', 'dwell']) {
      const sub = nc.subscribe(agentSubjects(host, kind), { callback: (_err, m) => this.model.ingest(m.subject, m.data, Date.now()) });
      this.subs.push(sub);
    }
  }

  static async connect(connection: ConnectionSettings, host?: string): Promise<FleetSource> {
    const nc = await connectNats(connection);
    const s = new FleetSource(nc, connection, host);
    await nc.flush();
    return s;
  }

  tick(nowMs: number): TopData {
    return this.model.tick(nowMs);
  }

  async close(): Promise<void> {
    for (const s of this.subs) s.unsubscribe();
    await this.nc.close();
  }
}
