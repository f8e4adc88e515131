/**
 * The fleet agent (`tcpdwell run`): kernel → loader → decode → track → publish, wired.
 * Events are batched by size or by a latency budget, whichever comes first (batching.ts); every
 * batch is numbered, spooled, then published to JetStream.
 */
import { hostname } from 'node:os';
import { readFileSync } from 'node:fs';
import { VERSION } from '../common/version.js';
import { bootToEpochOffsetNs, clockBoottimeNs } from '../kernel/clock.js';
import { passesFilters, type KernelFilters } from '../kernel/filters.js';
import { namespacesToWalk, type Netns } from '../kernel/namespaces.js';
import { ownNetnsSysctls } from '../kernel/sysctl.js';
import { Tracer, type TracerOptions } from '../kernel/tracer.js';
import { netstatByNetns } from '../kernel/netstat.js';
import { decodeRecordList, decodeSockFiles, forEachRingRecord, RecordView, type DecodeStats, type TcpEvent } from '../decode/index.js';
import { Tracker, type DetectorThresholds, type DwellRowSink, type LiveTableSnapshot } from '../track/index.js';
import { DwellColumns, TransitionColumns } from '../publish/columns.js';
import type { ConnectionSettings } from '../publish/connection.js';
import { Publisher, type PublisherOptions } from '../publish/publisher.js';
import { startControlService, type AgentStatus, type ControlService } from '../publish/service.js';
import { Spool } from '../publish/spool.js';
import { agentSubject, defaultInboxPrefix, subjectToken, type MessageKind } from '../publish/subjects.js';
import { encodeAlert, encodeDwellCgroups, encodeSnapshot, encodeSummary, encodeTransitions, type Drops, type Header } from '../publish/wire.js';
import { AlertTransitions } from './alerts.js';
import { FlushPolicy } from './batching.js';
import { ContainerNames } from './containers.js';
import { DEFAULT_FLUSH_MS, DEFAULT_HEAL_MS, DEFAULT_SPOOL_MAX_BYTES, DEFAULT_SUMMARY_MS } from './defaults.js';
import { AgentMetrics } from './metrics.js';
import { warmUp } from './warm-up.js';

const RING_BATCH_BYTES = 128 << 10;

/** The most bytes one row of a TransitionBatch or DwellBatch can take (varints at full width, two comm strings). */
const ROW_BYTES_MAX = 256;

export interface AgentOptions {
  /** host id used in subjects and headers (default: the hostname, dots as underscores) */
  host?: string;
  connection: ConnectionSettings;
  spoolDir: string;
  spoolMaxBytes?: number;
  /** a batch is published at this many events ... */
  batchMaxEvents?: number;
  /** ... or once its oldest event has waited this long (the latency budget, ms), whichever comes first */
  flushIntervalMs?: number;
  /** summary every this many ms */
  summaryIntervalMs?: number;
  /**
   * Re-read the traced namespaces' sockets (the iterator) this often and reconcile the live
   * table with them (ms; 0 = never; default DEFAULT_HEAL_MS). The table follows the kernel's
   * events; this catches what no event said (see Agent.heal).
   */
  healIntervalMs?: number;
  tracer?: TracerOptions;
  stream?: Omit<PublisherOptions, 'connection' | 'spool' | 'log'>;
  /** disable the control service's `config` endpoint */
  controlConfig?: boolean;
  /** detector thresholds over the defaults (src/track/detectors.ts) */
  thresholds?: Partial<DetectorThresholds>;
  /** serve Prometheus metrics (and /healthz, /readyz) on HOST:PORT; true: 0.0.0.0 and the default port */
  metricsListen?: string | true;
  log?: (line: string) => void;
}

function readBootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

export class Agent {
  readonly host: string;
  private readonly bootId = readBootId();
  private readonly startedAt = Date.now();
  private readonly decodeStats: DecodeStats = { records: 0, malformed: 0 };
  /** transitions read since the last flush, as TransitionBatch columns straight from the records */
  private readonly transitions = new TransitionColumns();
  private seq = 0n;
  private eventSeq = 1n;
  private events = 0;
  private batches = 0;
  private flushTimer?: NodeJS.Timeout;
  private summaryTimer?: NodeJS.Timeout;
  private healTimer?: NodeJS.Timeout;
  private filters: KernelFilters;
  private service: ControlService | null = null;
  private readonly offsetNs = bootToEpochOffsetNs();
  private readonly tracker: Tracker;
  private readonly dwellRows = new DwellColumns();
  /** alerts firing, to publish each once when it fires and once when it resolves */
  private readonly alerts = new AlertTransitions();
  private metrics: AgentMetrics | null = null;
  /** when a batch goes out: by size (maxRows) or latency budget (batching.ts) */
  private readonly batching: FlushPolicy;
  /** cgroup ids → containers, shipped beside the records (readers elsewhere cannot resolve them) */
  readonly containers = new ContainerNames();
  /** where the metrics are served, when they are */
  metricsUrl: string | null = null;
  /** true once started (programs attached, ring read, first snapshot): /readyz, READY=1 */
  reading = false;

  private constructor(
    private readonly opts: AgentOptions,
    private readonly tracer: Tracer,
    private readonly spool: Spool,
    private readonly publisher: Publisher,
  ) {
    this.host = subjectToken(opts.host ?? hostname());
    this.filters = { netns: opts.tracer?.netns, ports: opts.tracer?.ports, family: opts.tracer?.family };
    // Dwell records go straight into the DwellBatch columns, as rows (no object per record).
    const rows = this.dwellRows;
    const sink: DwellRowSink = {
      fromRecord: (v, off, row) => {
        rows.fromRecord(v, off, row);
        this.containers.noteDwell(v.cgroup(off));
        this.metrics?.observeRow(row);
        if (this.batchFull(rows.length)) this.flushDwell();
      },
      fromSlot: (t, slot, row) => {
        rows.fromSlot(t, slot, row);
        this.containers.noteDwell(t.cgroupOf(slot));
        this.metrics?.observeRow(row);
        if (this.batchFull(rows.length)) this.flushDwell();
      },
      fromObject: (r) => {
        rows.push(r);
        this.containers.noteDwell(r.cgroupId);
        this.metrics?.observeDwell(r);
        if (this.batchFull(rows.length)) this.flushDwell();
      },
    };
    this.batching = new FlushPolicy(opts.flushIntervalMs ?? DEFAULT_FLUSH_MS);
    this.tracker = new Tracker({
      clock: clockBoottimeNs,
      dwellRows: sink,
      thresholds: opts.thresholds,
      sysctls: ownNetnsSysctls(),
    });
  }

  /** Loads the kernel program, opens the spool, connects (or starts spooling), publishes the snapshot. */
  static async start(opts: AgentOptions): Promise<Agent> {
    const log = opts.log ?? (() => {});
    const spool = new Spool(opts.spoolDir, opts.spoolMaxBytes ?? DEFAULT_SPOOL_MAX_BYTES);
    if (spool.pending().length) log(`resuming ${spool.pending().length} spooled messages from ${opts.spoolDir}`);
    const tracer = Tracer.open(opts.tracer ?? {});
    // Replies to this agent land under its own prefix, which the server can confine it to.
    const connection = { ...opts.connection, inboxPrefix: opts.connection.inboxPrefix ?? defaultInboxPrefix(subjectToken(opts.host ?? hostname())) };
    let publisher: Publisher;
    try {
      publisher = await Publisher.start({ connection, spool, log, ...opts.stream });
    } catch (err) {
      tracer.close();
      throw err;
    }
    const agent = new Agent(opts, tracer, spool, publisher);
    if (opts.metricsListen) {
      agent.metrics = new AgentMetrics(agent);
      try {
        agent.metricsUrl = await agent.metrics.listen(opts.metricsListen);
      } catch (err) {
        tracer.close();
        await publisher.close(0);
        throw err;
      }
      log(`metrics at ${agent.metricsUrl}`);
    }
    agent.begin();
    if (publisher.connection && opts.controlConfig !== false) agent.service = await startControlService(publisher.connection, agent);
    else if (publisher.connection) agent.service = await startControlService(publisher.connection, agent, { config: false });
    agent.reading = true;
    return agent;
  }

  /**
   * Rows per message: batchMaxEvents, and few enough that a message cannot pass the server's
   * max_payload (a row takes at most ROW_BYTES_MAX encoded), so batches never need splitting.
   */
  private maxRows(): number {
    return Math.max(1, Math.min(this.opts.batchMaxEvents ?? 4096, Math.floor((this.publisher.maxPayload - 1024) / ROW_BYTES_MAX)));
  }

  /**
   * The one place that decides, per event, that a batch is cut and published now (the
   * flush timer publishes the rest): a batch of `rows` rows is full.
   */
  private batchFull(rows: number): boolean {
    return rows >= this.maxRows();
  }

  private begin() {
    // Each record is read in place (src/decode/view.ts): appended to the TransitionBatch
    // columns and tracked, with no TcpEvent in between.
    const view = new RecordView();
    const take = (v: RecordView, off: number) => {
      this.transitions.appendView(v, off);
      this.tracker.ingestRecord(v, off);
      if (this.batchFull(this.transitions.length)) this.flushTransitions();
    };
    warmUp();
    // Batches of at most RING_BATCH_BYTES: a message can leave only after the batch it was
    // filled from has been processed, so smaller batches bound the wait (measured: 1 MiB
    // batches, ~7,700 events, held the loop 60–100 ms on a busy 2-core VM).
    // Nothing of a batch outlives the callback (rows are copied into the batches' columns), so
    // each is released at once: left to the garbage collector, which this path rarely wakes,
    // batches piled up (make soak: RSS +23 MiB over the first minutes, then flat).
    this.tracer.readRing(
      (batch) => {
        forEachRingRecord(batch, view, this.decodeStats, take);
        this.batching.note('transitions', this.transitions.length);
        this.batching.note('dwell', this.dwellRows.length);
      },
      10,
      RING_BATCH_BYTES,
      { release: true },
    );
    this.publishSnapshot();
    this.pollListeners(); // the baseline the first evaluation's drop counts start from
    this.flushTimer = setInterval(() => {
      // Rows also arrive outside ring batches (heal, overdue timewaits): their wait starts here.
      this.batching.note('transitions', this.transitions.length);
      this.batching.note('dwell', this.dwellRows.length);
      for (const kind of this.batching.due({ transitions: this.transitions.length, dwell: this.dwellRows.length })) {
        if (kind === 'transitions') this.flushTransitions();
        else this.flushDwell();
      }
    }, this.batching.tickMs);
    this.summaryTimer = setInterval(() => this.publishSummary(), this.opts.summaryIntervalMs ?? DEFAULT_SUMMARY_MS);
    const healMs = this.opts.healIntervalMs ?? DEFAULT_HEAL_MS;
    if (healMs > 0) this.healTimer = setInterval(() => this.heal(), healMs);
  }

  private header(): Header {
    const k = this.tracer.counters();
    const s = this.spool.stats();
    const drops: Drops = {
      ringFull: k.lost_ring_full,
      malformed: this.decodeStats.malformed,
      spoolDropped: s.dropped,
      spoolDroppedEvents: s.droppedEvents,
      noStorage: k.lost_no_storage,
      spoolCorrupt: s.corrupt,
      kernelSkipped: k.skipped_transitions,
      kernelSkippedTimer: k.skipped_timer,
      stateGaps: k.state_gaps,
    };
    this.seq++;
    return {
      hostId: this.host,
      bootId: this.bootId,
      agentVersion: VERSION,
      epoch: Number(this.spool.epoch),
      seq: Number(this.seq),
      drops,
      bootToUnixNs: Number(this.offsetNs),
      sentAtBootNs: Number(clockBoottimeNs()),
    };
  }

  private put(kind: MessageKind, header: Header, payload: Uint8Array, events: number) {
    const msgId = `${this.host}.${this.bootId}.${this.spool.epoch}.${header.seq}`;
    this.spool.append(BigInt(header.seq as number), { subject: agentSubject(this.host, kind), msgId, events, payload });
    this.batches++;
    this.publisher.kick();
  }

  /** Encodes snapshot events as Snapshots, split so that none exceeds the server's max payload. */
  private putTransitions(kind: 'snapshot', events: TcpEvent[]) {
    if (events.length === 0) return;
    const header = this.header();
    const first = this.eventSeq;
    const payload = encodeSnapshot(header, encodeTransitions(events, header, first));
    if (payload.length > this.publisher.maxPayload - 1024 && events.length > 1) {
      this.seq--; // this header was not used
      const half = Math.ceil(events.length / 2);
      this.putTransitions(kind, events.slice(0, half));
      this.putTransitions(kind, events.slice(half));
      return;
    }
    this.eventSeq += BigInt(events.length);
    this.events += events.length;
    this.put(kind, header, payload, events.length);
  }

  /** Publishes the transitions read so far as one TransitionBatch. */
  private flushTransitions(): void {
    const n = this.transitions.length;
    this.batching.flushed('transitions');
    if (n === 0) return;
    const header = this.header();
    const payload = this.transitions.encode(header, this.eventSeq);
    this.eventSeq += BigInt(n);
    this.events += n;
    this.put('transitions', header, payload, n);
  }

  /** Publishes the dwell records so far as one DwellBatch. */
  private flushDwell(): void {
    const n = this.dwellRows.length;
    this.batching.flushed('dwell');
    if (n === 0) return;
    const header = this.header();
    // The rows' cgroup dictionary, appended: protobuf merges it into the same DwellBatch.
    const rows = this.dwellRows.encode(header);
    const dict = encodeDwellCgroups(this.containers.takeDwell(), this.publisher.maxPayload - 1024 - rows.length);
    this.put('dwell', header, dict.length ? Buffer.concat([rows, dict]) : rows, n);
  }

  /** Publishes what has been batched so far. */
  flush(): void {
    this.flushTransitions();
    this.flushDwell();
  }

  /**
   * False once the agent has dropped CAP_SYS_ADMIN (src/privileges.ts, no --resnapshot): a
   * snapshot then covers only its own network namespace, which needs no setns().
   */
  enterNetns = true;

  private publishSnapshot(netns?: Netns[]) {
    const events = this.reseed(netns);
    this.putTransitions('snapshot', events);
    return events.length;
  }

  /**
   * Reconciles the live table with the sockets the kernel lists now, without publishing them.
   * The table follows events, and an event the kernel never delivered leaves it wrong until the
   * socket's next one (make soak measured the end events of ~1000 timewaits expiring together
   * going missing now and then, uncounted): this puts right whatever no event said. The walk
   * locks each socket, so it never sees a state half-changed. Counted in the tracker's healed*
   * statistics; returns the sockets listed.
   */
  heal(): number {
    const before = this.tracker.stats();
    const n = this.reseed(undefined, true).length;
    const after = this.tracker.stats();
    const fixed = after.healedAdded - before.healedAdded + (after.healedRemoved - before.healedRemoved) + (after.healedCorrected - before.healedCorrected);
    if (fixed > 0) this.opts.log?.(`heal: ${fixed} sockets put right in the live table (${n} listed by the kernel)`);
    return n;
  }

  private unreachableLogged = false;

  /** Walks the namespaces (all traced ones by default) and seeds the tracker; returns the records. */
  private reseed(netns?: Netns[], quiet = false): TcpEvent[] {
    const events: TcpEvent[] = [];
    const wanted = netns ?? namespacesToWalk((this.filters.netns ?? []).map((inode) => ({ inode, path: '' })));
    const { unreachable, files } = this.tracer.snapshotNamespaces(
      wanted,
      (ns, records) => {
        const mine = decodeRecordList(records, this.decodeStats);
        this.tracker.seed(ns.inode, mine);
        for (const e of mine) events.push(e);
      },
      { drainFirst: true, ownOnly: !this.enterNetns },
    );
    // The walk of the socket files names the holders of the sockets of namespaces not walked too.
    this.tracker.observeHolders(decodeSockFiles(files, this.decodeStats));
    if (unreachable.length > 0 && !(quiet && this.unreachableLogged)) {
      this.opts.log?.(`snapshot: ${unreachable.length} other network namespaces skipped (capabilities dropped; start with --resnapshot to keep CAP_SYS_ADMIN for this)`);
      this.unreachableLogged = true;
    }
    return events;
  }

  /** Publishes the live table, this interval's histograms and the oldest sockets; then alerts. */
  publishSummary(): void {
    this.flush();
    const header = this.header();
    const s = this.spool.stats();
    const histograms = this.tracker.takeHistograms().encode();
    const stuck = this.tracker.stuck({ perState: 5 });
    const payload = encodeSummary(header, {
      table: this.tracker.table(),
      histograms,
      stuck,
      eventsTotal: this.events,
      spoolBytes: s.bytes,
      spoolMessages: s.messages,
      cgroups: this.containers.forSummary(stuck, histograms),
    });
    this.put('summary', header, payload, 0);
    this.publishAlerts();
  }

  /** Publishes each alert once when it starts firing, and once when it is resolved. */
  private publishAlerts(): void {
    this.pollListeners();
    this.alerts.update(this.tracker.evaluate(), clockBoottimeNs(), (a, severity) => {
      const header = this.header();
      this.put('alerts', header, encodeAlert(header, a, severity, this.containers.forAlert(a, severity)), 0);
    });
  }

  /**
   * What the kernel says about SYN pressure now — every listener's queues (a walk of the host's
   * socket files: no setns, no capability) and each namespace's netstat counters — for the detectors.
   */
  pollListeners(): void {
    const listeners = decodeSockFiles(this.tracer.socketFiles({ listenersOnly: true }), this.decodeStats).filter((l) => passesFilters(this.filters, l));
    this.tracker.observeListeners({ atNs: clockBoottimeNs(), listeners, netstat: netstatByNetns(listeners) });
  }

  /** Changes detector thresholds (control service `config`); returns them all. */
  setThresholds(t: Partial<DetectorThresholds>): DetectorThresholds {
    return this.tracker.setThresholds(t);
  }

  /** Alerts firing now, per detector (the metrics' tcpdwell_detector_alerts_firing). */
  alertsByDetector(): Map<string, number> {
    return this.alerts.byDetector();
  }

  /** Live sockets per container (bounded; the metrics' tcpdwell_container_sockets). */
  containerSockets() {
    return this.containers.sockets(this.tracker.byCgroup());
  }

  /** The live socket table now (control service `states`). */
  states(): LiveTableSnapshot {
    return this.tracker.table();
  }

  /** Takes a fresh snapshot on request; returns how many sockets it listed. */
  snapshotNow(): number {
    this.flush();
    return this.publishSnapshot();
  }

  /** Changes what the kernel program emits. */
  setFilters(f: KernelFilters): void {
    this.filters = { ...f };
    this.tracer.setFilters({ ...f, wakeupBytes: this.opts.tracer?.wakeupBytes });
  }

  status(): AgentStatus {
    const k = this.tracer.counters();
    const s = this.spool.stats();
    const p = this.publisher.stats();
    return {
      host: this.host,
      version: VERSION,
      epoch: this.spool.epoch.toString(),
      uptimeS: (Date.now() - this.startedAt) / 1000,
      events: this.events,
      batches: this.batches,
      drops: { ...k, malformed: this.decodeStats.malformed, spoolDropped: s.dropped, spoolDroppedEvents: s.droppedEvents, spoolCorrupt: s.corrupt },
      spool: { messages: s.messages, bytes: s.bytes, maxBytes: this.opts.spoolMaxBytes ?? DEFAULT_SPOOL_MAX_BYTES },
      nats: { connected: p.connected, streamMissing: p.streamMissing, published: p.published, publishErrors: p.publishErrors },
      filters: this.filters,
      tracker: this.tracker.stats(),
      alertsFiring: this.alerts.size,
    };
  }

  /** Stops in order: stop reading the ring, drain it, flush, final summary, drain NATS, detach BPF. */
  async stop(timeoutMs = 5000): Promise<AgentStatus> {
    clearInterval(this.flushTimer);
    clearInterval(this.summaryTimer);
    clearInterval(this.healTimer);
    this.tracer.drainRing();
    this.flush();
    this.publishSummary();
    await this.service?.stop().catch(() => {});
    await this.metrics?.close();
    await this.publisher.close(timeoutMs);
    this.spool.close();
    const status = this.status();
    this.tracer.close();
    return status;
  }
}
