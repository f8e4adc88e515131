/**
 * The fleet agent (`tcpdwell run`): kernel → loader → decode → (track) → publish.
 * Events are batched by size or by a short interval, whichever comes first; every batch is
 * numbered, spooled, then published to JetStream.
 */
import { hostname } from 'node:os';
import { readFileSync } from 'node:fs';
import { decodeRecords, decodeRingBatch, type DecodeStats, type TcpEvent } from './decode.js';
import { bootToEpochOffsetNs } from './clock.js';
import { listNetns, type Netns } from './netns.js';
import { Tracer, type KernelCounters, type TracerOptions } from './tracer.js';
import { Publisher, type PublisherOptions } from './publish/publisher.js';
import { Spool } from './publish/spool.js';
import { encodeAlert, encodeDwell, encodeSummary, encodeTransitions, pb, type Drops, type Header, type MessageKind } from './publish/wire.js';
import { Tracker, type Alert, type DetectorThresholds, type DwellRecord, type LiveTableSnapshot, type TrackerStats } from './track/index.js';
import { statSync } from 'node:fs';
import { AgentMetrics } from './metrics.js';
import { ownNetnsSysctls } from './sysctl.js';
import type { ConnectionSettings } from './publish/nats-options.js';
import { startControlService, type ControlService } from './publish/service.js';
import { clockBoottimeNs } from 'bpf-ts-loader';

export const AGENT_VERSION: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;

export interface AgentOptions {
  /** host id used in subjects and headers (default: the hostname, dots as underscores) */
  host?: string;
  connection: ConnectionSettings;
  spoolDir: string;
  spoolMaxBytes?: number;
  /** a batch is published at this many events ... */
  batchMaxEvents?: number;
  /** ... or after this long, whichever comes first */
  flushIntervalMs?: number;
  /** summary every this many ms */
  summaryIntervalMs?: number;
  tracer?: TracerOptions;
  stream?: Omit<PublisherOptions, 'connection' | 'spool' | 'log'>;
  /** disable the control service's `config` endpoint */
  controlConfig?: boolean;
  /** detector thresholds over the defaults (src/track/detectors.ts) */
  thresholds?: Partial<DetectorThresholds>;
  /** serve Prometheus metrics on HOST:PORT */
  metricsListen?: string;
  log?: (line: string) => void;
}

export interface AgentStatus {
  host: string;
  version: string;
  epoch: string;
  uptimeS: number;
  events: number;
  batches: number;
  drops: KernelCounters & { malformed: number; spoolDropped: number; spoolDroppedEvents: number; spoolCorrupt: number };
  spool: { messages: number; bytes: number };
  nats: { connected: boolean; published: number; publishErrors: number };
  filters: Pick<TracerOptions, 'netns' | 'ports' | 'family'>;
  tracker: TrackerStats;
  alertsFiring: number;
}

/** A subject token: no dots, spaces or wildcards. */
export function subjectToken(s: string): string {
  return s.replace(/[^A-Za-z0-9_-]/g, '_');
}

/** The agent's reply-inbox prefix unless configured: _INBOX_<host> (see deploy/nats/tcpdwell-auth.conf). */
export const defaultInboxPrefix = (host: string) => `_INBOX_${host}`;

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
  private pending: TcpEvent[] = [];
  private seq = 0n;
  private eventSeq = 1n;
  private events = 0;
  private batches = 0;
  private flushTimer?: NodeJS.Timeout;
  private summaryTimer?: NodeJS.Timeout;
  private filters: Pick<TracerOptions, 'netns' | 'ports' | 'family'>;
  private service: ControlService | null = null;
  private readonly offsetNs = bootToEpochOffsetNs();
  private readonly tracker: Tracker;
  private dwellPending: DwellRecord[] = [];
  /** alerts firing, by key, to publish each once when it fires and once when it resolves */
  private readonly firing = new Map<string, Alert>();
  private metrics: AgentMetrics | null = null;
  /** where the metrics are served, when they are */
  metricsUrl: string | null = null;

  private constructor(
    private readonly opts: AgentOptions,
    private readonly tracer: Tracer,
    private readonly spool: Spool,
    private readonly publisher: Publisher,
  ) {
    this.host = subjectToken(opts.host ?? hostname());
    this.filters = { netns: opts.tracer?.netns, ports: opts.tracer?.ports, family: opts.tracer?.family };
    this.tracker = new Tracker({
      clock: clockBoottimeNs,
      onDwell: (r) => {
        this.dwellPending.push(r);
        this.metrics?.observeDwell(r);
      },
      thresholds: opts.thresholds,
      sysctls: ownNetnsSysctls(),
    });
  }

  /** Loads the kernel program, opens the spool, connects (or starts spooling), publishes the snapshot. */
  static async start(opts: AgentOptions): Promise<Agent> {
    const log = opts.log ?? (() => {});
    const spool = new Spool(opts.spoolDir, opts.spoolMaxBytes ?? 256 << 20);
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
    return agent;
  }

  private begin() {
    this.tracer.readRing((batch) => {
      const events: TcpEvent[] = [];
      decodeRingBatch(batch, (e) => events.push(e), this.decodeStats);
      this.tracker.ingest(events);
      for (const e of events) this.pending.push(e);
      if (this.pending.length >= (this.opts.batchMaxEvents ?? 4096)) this.flush();
    });
    this.publishSnapshot();
    this.flushTimer = setInterval(() => this.flush(), this.opts.flushIntervalMs ?? 100);
    this.summaryTimer = setInterval(() => this.publishSummary(), this.opts.summaryIntervalMs ?? 10_000);
  }

  private subject(kind: MessageKind): string {
    return `tcpdwell.v1.${this.host}.${kind}`;
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
      agentVersion: AGENT_VERSION,
      epoch: Number(this.spool.epoch),
      seq: Number(this.seq),
      drops,
      bootToUnixNs: Number(this.offsetNs),
      sentAtBootNs: Number(clockBoottimeNs()),
    };
  }

  private put(kind: MessageKind, header: Header, payload: Uint8Array, events: number) {
    const msgId = `${this.host}.${this.bootId}.${this.spool.epoch}.${header.seq}`;
    this.spool.append(BigInt(header.seq as number), { subject: this.subject(kind), msgId, events, payload });
    this.batches++;
    this.publisher.kick();
  }

  /** Encodes events as TransitionBatches, split so that none exceeds the server's max payload. */
  private putTransitions(kind: 'transitions' | 'snapshot', events: TcpEvent[]) {
    if (events.length === 0) return;
    const header = this.header();
    const first = this.eventSeq;
    let payload = encodeTransitions(events, header, first);
    if (kind === 'snapshot') payload = pb.Snapshot.encode({ header, sockets: pb.TransitionBatch.decode(payload) }).finish();
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

  /** Encodes dwell records as DwellBatches, split like transitions. */
  private putDwell(records: DwellRecord[]) {
    if (records.length === 0) return;
    const header = this.header();
    const payload = encodeDwell(records, header);
    if (payload.length > this.publisher.maxPayload - 1024 && records.length > 1) {
      this.seq--;
      const half = Math.ceil(records.length / 2);
      this.putDwell(records.slice(0, half));
      this.putDwell(records.slice(half));
      return;
    }
    this.put('dwell', header, payload, records.length);
  }

  /** Publishes what has been batched so far. */
  flush(): void {
    if (this.pending.length > 0) {
      const events = this.pending;
      this.pending = [];
      this.putTransitions('transitions', events);
    }
    if (this.dwellPending.length > 0) {
      const records = this.dwellPending;
      this.dwellPending = [];
      this.putDwell(records);
    }
  }

  /**
   * False once the agent has dropped CAP_SYS_ADMIN (src/privileges.ts, no --resnapshot): a
   * snapshot then covers only its own network namespace, which needs no setns().
   */
  enterNetns = true;

  private publishSnapshot(netns?: Netns[]) {
    const events: TcpEvent[] = [];
    const wanted = this.filters.netns?.length ? listNetns().filter((n) => this.filters.netns!.includes(n.inode)) : listNetns();
    const own = statSync('/proc/self/ns/net').ino;
    const reachable = (netns ?? wanted).filter((ns) => this.enterNetns || ns.inode === own);
    const skipped = (netns ?? wanted).length - reachable.length;
    if (skipped > 0) this.opts.log?.(`snapshot: ${skipped} other network namespaces skipped (capabilities dropped; start with --resnapshot to keep CAP_SYS_ADMIN for this)`);
    for (const ns of reachable) {
      const mine: TcpEvent[] = [];
      // The agent's own namespace needs no setns() (and so no CAP_SYS_ADMIN).
      decodeRecords(this.tracer.snapshot(ns.inode === own ? { inode: ns.inode, path: '' } : ns), (e) => mine.push(e), this.decodeStats);
      // Events already read are older than this snapshot: apply them first.
      this.tracer.drainRing();
      this.tracker.seed(ns.inode, mine);
      events.push(...mine);
    }
    this.putTransitions('snapshot', events);
    return events.length;
  }

  /** Publishes the live table, this interval's histograms and the oldest sockets; then alerts. */
  publishSummary(): void {
    this.flush();
    const header = this.header();
    const s = this.spool.stats();
    const payload = encodeSummary(header, {
      table: this.tracker.table(),
      histograms: this.tracker.takeHistograms().encode(),
      stuck: this.tracker.stuck({ perState: 5 }),
      eventsTotal: this.events,
      spoolBytes: s.bytes,
      spoolMessages: s.messages,
    });
    this.put('summary', header, payload, 0);
    this.publishAlerts();
  }

  /** Publishes each alert once when it starts firing, and once when it is resolved. */
  private publishAlerts(): void {
    const now = new Map(this.tracker.evaluate().map((a) => [a.key, a]));
    for (const [key, a] of now) {
      if (this.firing.has(key)) continue;
      this.firing.set(key, a);
      const header = this.header();
      this.put('alerts', header, encodeAlert(header, a, 'firing'), 0);
    }
    for (const [key, a] of this.firing) {
      if (now.has(key)) continue;
      this.firing.delete(key);
      const header = this.header();
      this.put('alerts', header, encodeAlert(header, { ...a, atNs: clockBoottimeNs() }, 'resolved'), 0);
    }
  }

  /** Changes detector thresholds (control service `config`); returns them all. */
  setThresholds(t: Partial<DetectorThresholds>): DetectorThresholds {
    return this.tracker.setThresholds(t);
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
  setFilters(f: Pick<TracerOptions, 'netns' | 'ports' | 'family'>): void {
    this.filters = { ...f };
    this.tracer.setFilters({ ...f, wakeupBytes: this.opts.tracer?.wakeupBytes });
  }

  status(): AgentStatus {
    const k = this.tracer.counters();
    const s = this.spool.stats();
    const p = this.publisher.stats();
    return {
      host: this.host,
      version: AGENT_VERSION,
      epoch: this.spool.epoch.toString(),
      uptimeS: (Date.now() - this.startedAt) / 1000,
      events: this.events,
      batches: this.batches,
      drops: { ...k, malformed: this.decodeStats.malformed, spoolDropped: s.dropped, spoolDroppedEvents: s.droppedEvents, spoolCorrupt: s.corrupt },
      spool: { messages: s.messages, bytes: s.bytes },
      nats: { connected: p.connected, published: p.published, publishErrors: p.publishErrors },
      filters: this.filters,
      tracker: this.tracker.stats(),
      alertsFiring: this.firing.size,
    };
  }

  /** Stops in order: stop reading the ring, drain it, flush, final summary, drain NATS, detach BPF. */
  async stop(timeoutMs = 5000): Promise<AgentStatus> {
    clearInterval(this.flushTimer);
    clearInterval(this.summaryTimer);
    this.tracer.drainRing();
    this.flush();
    this.publishSummary();
    await this.service?.stop().catch(() => {});
    await this.metrics?.close();
    await this.publisher.close(timeoutMs);
    const status = this.status();
    this.tracer.close();
    return status;
  }
}
