/**
 * `top` for this host: loads the kernel program itself (like `trace` and `states`), seeds a
 * Tracker from a snapshot of each namespace, feeds it every ring batch, and turns what it
 * holds into TopData on each tick.
 */
import { hostname } from 'node:os';
import { bootToEpochOffsetNs, clockBoottimeNs } from '../kernel/clock.js';
import { passesFilters, type KernelFilters } from '../kernel/filters.js';
import { namespacesToWalk, type Netns } from '../kernel/namespaces.js';
import { ownNetnsSysctls } from '../kernel/sysctl.js';
import { Tracer } from '../kernel/tracer.js';
import { netstatByNetns } from '../kernel/netstat.js';
import { decodeRecordList, decodeRingBatch, decodeSockFiles, type DecodeStats, type TcpEvent } from '../decode/index.js';
import { HistogramSet, Tracker, type DetectorThresholds } from '../track/index.js';
import { subjectToken } from '../publish/subjects.js';
import { AlertBook, dropRows, dwellTables, CloseBook, FailureBook, History, type HostView, type SocketRow, type TopData } from './model.js';
import type { ViewState } from './view.js';

export interface LocalSourceOptions extends Omit<KernelFilters, 'netns'> {
  netns: Netns[];
  ringBytes?: number;
  objectPath?: string;
  thresholds?: Partial<DetectorThresholds>;
  /** see TracerOptions.peerPinDir: the running agent's pins, for sockets older than top */
  peerPinDir?: string;
  log?: (line: string) => void;
}

/** Detectors run this often (as the agent's default summary interval): growth is counted per evaluation. */
export const EVALUATE_EVERY_MS = 10_000;
/** Sockets listed per state when a port or process filter needs the whole table. */
export const SOCKET_LIST_CAP = 200_000;


export class LocalSource {
  readonly host = subjectToken(hostname());
  private readonly stats: DecodeStats = { records: 0, malformed: 0 };
  private readonly tracker: Tracker;
  private readonly hist = new HistogramSet();
  private readonly failures = new FailureBook();
  private readonly closes = new CloseBook();
  private readonly alerts = new AlertBook();
  private readonly history = new History();
  private readonly offsetNs = bootToEpochOffsetNs();
  private lastEvaluateMs = -Infinity;
  private events = 0;

  private constructor(
    private readonly tracer: Tracer,
    private readonly opts: LocalSourceOptions,
  ) {
    this.tracker = new Tracker({
      clock: clockBoottimeNs,
      onDwell: (r) => {
        const now = Date.now();
        this.failures.add(this.host, r, now);
        this.closes.add(this.host, r, now);
      },
      thresholds: opts.thresholds,
      sysctls: ownNetnsSysctls(),
    });
  }

  /** Loads the kernel program, starts reading the ring and seeds the table from snapshots. */
  static open(opts: LocalSourceOptions): LocalSource {
    const tracer = Tracer.open({ ...opts, netns: opts.netns.map((n) => n.inode) });
    try {
      const s = new LocalSource(tracer, opts);
      s.start();
      return s;
    } catch (err) {
      tracer.close();
      throw err;
    }
  }

  private start(): void {
    this.tracer.readRing((batch) => {
      const events: TcpEvent[] = [];
      decodeRingBatch(batch, (e) => events.push(e), this.stats);
      this.events += events.length;
      this.tracker.ingest(events);
    });
    // Events already in the ring are older than each snapshot: applied first (as the agent does).
    this.tracer.snapshotNamespaces(namespacesToWalk(this.opts.netns), (ns, records) => this.tracker.seed(ns.inode, decodeRecordList(records, this.stats)), {
      drainFirst: true,
    });
  }

  private bootToMs = (ns: bigint) => Number((ns + this.offsetNs) / 1_000_000n);

  /** Everything now. Lists every socket (up to a cap) only when the view filters by port or process. */
  tick(nowMs: number, view: ViewState): TopData {
    this.tracer.drainRing();
    this.hist.merge(this.tracker.takeHistograms());
    if (nowMs - this.lastEvaluateMs >= EVALUATE_EVERY_MS) {
      this.lastEvaluateMs = nowMs;
      const filters = { ...this.opts, netns: this.opts.netns.map((n) => n.inode) };
      const listeners = decodeSockFiles(this.tracer.socketFiles({ listenersOnly: true }), this.stats).filter((l) => passesFilters(filters, l));
      this.tracker.observeListeners({ atNs: clockBoottimeNs(), listeners, netstat: netstatByNetns(listeners) });
      this.alerts.sync(this.host, this.tracker.evaluate(), nowMs, this.bootToMs);
    }
    const table = this.tracker.table();
    const withHost = (list: ReturnType<Tracker['stuck']>): SocketRow[] => list.map((s) => ({ ...s, host: this.host }));
    const needList = view.port !== null || view.process !== null;
    const sockets = needList ? withHost(this.tracker.stuck({ perState: SOCKET_LIST_CAP })) : null;
    const k = this.tracer.counters();
    const dwell = dwellTables(this.hist);
    const host: HostView = {
      host: this.host,
      atMs: nowMs,
      byNetns: table.byNetns,
      stuck: withHost(this.tracker.stuck({ perState: 10 })),
      sockets,
      socketsTruncated: sockets !== null && sockets.length >= SOCKET_LIST_CAP,
      dwell,
      drops: dropRows(
        { ring_full: k.lost_ring_full, kernel_skipped: k.skipped_transitions + k.skipped_timer, malformed: this.stats.malformed },
        { noStorage: k.lost_no_storage, stateGaps: k.state_gaps },
      ),
      events: this.events,
    };
    this.history.push(nowMs, [host]);
    const filters = [
      this.opts.netns.length ? `netns ${this.opts.netns.map((n) => n.inode).join(',')}` : '',
      this.opts.ports?.length ? `port ${this.opts.ports.join(',')}` : '',
      this.opts.family ? this.opts.family : '',
    ].filter(Boolean);
    return {
      source: `local ${this.host}${filters.length ? ` (kernel filter: ${filters.join(', ')})` : ''}`,
      fleet: false,
      hosts: [host],
      dwell,
      history: this.history.samples,
      alerts: this.alerts.list(),
      failures: this.failures.list(),
      closes: this.closes.get(),
      status: null,
    };
  }

  close(): void {
    this.tracer.close();
  }
}
