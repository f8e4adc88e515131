/**
 * The fleet agent (`tcpdwell run`): kernel → loader → decode → (track) → publish.
 * Events are batched by size or by a short interval, whichever comes first; every batch is
 * numbered, spooled, then published to JetStream.
 */
import { hostname } from 'node:os';
import { readFileSync } from 'node:fs';
import { decodeRecords, decodeRingBatch, RING_HEADER_BYTES, type DecodeStats, type TcpEvent } from './decode.js';
import { EVENT_FIELDS, EVENT_SIZE, EventFlags } from './generated/abi.js';
import { bootToEpochOffsetNs } from './clock.js';
import { listNetns, type Netns } from './netns.js';
import { Tracer, type KernelCounters, type TracerOptions } from './tracer.js';
import { Publisher, type PublisherOptions } from './publish/publisher.js';
import { Spool } from './publish/spool.js';
import { encodeAlert, encodeSummary, encodeTransitions, pb, type Drops, type Header, type MessageKind } from './publish/wire.js';
import { DwellColumns, TransitionColumns } from './publish/columns.js';
import { Tracker, type Alert, type DetectorThresholds, type LiveTableSnapshot, type TrackerStats } from './track/index.js';
import { statSync } from 'node:fs';
import { AgentMetrics } from './metrics.js';
import { ownNetnsSysctls } from './sysctl.js';
import type { ConnectionSettings } from './publish/nats-options.js';
import { startControlService, type ControlService } from './publish/service.js';
import { clockBoottimeNs } from 'bpf-ts-loader';

/** Default batch timer: with the ring's 10 ms poll, events reach NATS well within 100 ms. */
export const DEFAULT_FLUSH_MS = 50;
const RING_BATCH_BYTES = 128 << 10;

/**
 * Runs the event path (decode → track → encode) over synthetic connections once at start, so V8
 * has compiled it before the first burst rather than during it. (The stalls measured at the start
 * of a 100k events/s burst — 100–250 ms of busy event loop in its first half second — remained
 * with it: BENCHMARKS.md.) Nothing of it is kept or published; it takes a few hundred ms once.
 */
export function warmUp(): void {
  // What a connection looks like to the agent: the client's five transitions and its timewait
  // start, the accepted child's five (owner known, actor in process context on some).
  const steps: [type: number, oldState: number, newState: number, child: boolean][] = [
    [1, 7, 2, false], [1, 10, 3, true], [1, 2, 1, false], [1, 3, 1, true], [1, 1, 4, false], [1, 1, 8, true],
    [1, 4, 5, false], [2, 0, 6, false], [1, 5, 7, false], [1, 8, 9, true], [1, 9, 7, true],
  ];
  const connections = 4000;
  const n = connections * steps.length;
  const entry = RING_HEADER_BYTES + EVENT_SIZE;
  const batch = Buffer.alloc(n * entry);
  for (let i = 0; i < n; i++) {
    const at = i * entry;
    const r = at + RING_HEADER_BYTES;
    const c = Math.floor(i / steps.length);
    const [type, oldState, newState, child] = steps[i % steps.length]!;
    const ts = 1_000_000_000 + i * 1000;
    batch.writeUInt32LE(EVENT_SIZE, at);
    batch.writeBigUInt64LE(BigInt(ts), r + EVENT_FIELDS.ts_ns.offset);
    batch.writeBigUInt64LE(BigInt(1 + 2 * c + (child ? 1 : 0)), r + EVENT_FIELDS.cookie.offset);
    batch.writeBigUInt64LE(BigInt(ts - 5000), r + EVENT_FIELDS.entered_ns.offset);
    if (type === 2) batch.writeBigUInt64LE(BigInt(ts + 60e9), r + EVENT_FIELDS.expires_ns.offset);
    batch.writeBigUInt64LE(1234n, r + EVENT_FIELDS.cgroup_id.offset);
    batch.writeUInt32LE(4026531840, r + EVENT_FIELDS.netns.offset);
    batch.writeUInt32LE(1000 + (i % 7), r + EVENT_FIELDS.pid.offset);
    batch.writeUInt32LE(1000, r + EVENT_FIELDS.owner_pid.offset);
    batch.writeUInt16LE(2, r + EVENT_FIELDS.family.offset);
    const port = 30000 + (c % 20000);
    batch.set([127, 0, 0, child ? 1 + (c % 8) : 1], r + EVENT_FIELDS.saddr.offset);
    batch.set([127, 0, 0, child ? 1 : 1 + (c % 8)], r + EVENT_FIELDS.daddr.offset);
    batch.writeUInt16LE(child ? 8000 + (c % 16) : port, r + EVENT_FIELDS.sport.offset);
    batch.writeUInt16LE(child ? port : 8000 + (c % 16), r + EVENT_FIELDS.dport.offset);
    batch.write(i % 3 ? 'warm-up' : 'swapper/1', r + EVENT_FIELDS.comm.offset, 'latin1');
    batch.write('warm-up', r + EVENT_FIELDS.owner_comm.offset, 'latin1');
    batch.writeUInt8(type, r + EVENT_FIELDS.type.offset);
    batch.writeUInt8(oldState, r + EVENT_FIELDS.old_state.offset);
    batch.writeUInt8(newState, r + EVENT_FIELDS.new_state.offset);
    batch.writeUInt8(type === 2 ? 6 : 0, r + EVENT_FIELDS.substate.offset);
    batch.writeUInt8(
      EventFlags.ENTERED_KNOWN | EventFlags.OWNER_KNOWN | (i % 3 ? EventFlags.PROCESS_CTX : 0) | (child ? EventFlags.CHILD : 0),
      r + EVENT_FIELDS.flags.offset,
    );
  }
  const dwell = new DwellColumns();
  const transitions = new TransitionColumns();
  const tracker = new Tracker({ clock: () => 0n, onDwell: (r) => dwell.push(r), sysctls: {} });
  const events: TcpEvent[] = [];
  const header = { hostId: 'warm-up', seq: 1 };
  const take = (e: TcpEvent, buf: Buffer, o: number) => {
    events.push(e);
    transitions.appendRecord(buf, o);
  };
  // Small batches, so the per-batch code (encoding) runs often enough to be optimized too.
  const per = 200 * entry;
  for (let off = 0; off < batch.length; off += per) {
    events.length = 0;
    decodeRingBatch(batch.subarray(off, off + per), take, { records: 0, malformed: 0 });
    tracker.ingest(events);
    transitions.encode(header, 1n);
    if (dwell.length) dwell.encode(header);
  }
  tracker.table();
  tracker.takeHistograms().encode();
}

/** The most bytes one row of a TransitionBatch or DwellBatch can take (varints at full width, two comm strings). */
const ROW_BYTES_MAX = 256;

/** Default of AgentOptions.healIntervalMs: 5 minutes. */
export const DEFAULT_HEAL_MS = 300_000;

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
  /** transitions read since the last flush, as TransitionBatch columns straight from the records */
  private readonly transitions = new TransitionColumns();
  private seq = 0n;
  private eventSeq = 1n;
  private events = 0;
  private batches = 0;
  private flushTimer?: NodeJS.Timeout;
  private summaryTimer?: NodeJS.Timeout;
  private healTimer?: NodeJS.Timeout;
  private filters: Pick<TracerOptions, 'netns' | 'ports' | 'family'>;
  private service: ControlService | null = null;
  private readonly offsetNs = bootToEpochOffsetNs();
  private readonly tracker: Tracker;
  private readonly dwellRows = new DwellColumns();
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
        this.dwellRows.push(r);
        this.metrics?.observeDwell(r);
        if (this.dwellRows.length >= this.maxRows()) this.flushDwell();
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

  /**
   * Rows per message: batchMaxEvents, and few enough that a message cannot pass the server's
   * max_payload (a row takes at most ROW_BYTES_MAX encoded), so batches never need splitting.
   */
  private maxRows(): number {
    return Math.max(1, Math.min(this.opts.batchMaxEvents ?? 4096, Math.floor((this.publisher.maxPayload - 1024) / ROW_BYTES_MAX)));
  }

  private begin() {
    const events: TcpEvent[] = [];
    const take = (e: TcpEvent, buf: Buffer, offset: number) => {
      events.push(e);
      this.transitions.appendRecord(buf, offset);
      if (this.transitions.length >= this.maxRows()) this.flushTransitions();
    };
    warmUp();
    // Batches of at most RING_BATCH_BYTES: a message can leave only after the batch it was
    // filled from has been processed, so smaller batches bound the wait (measured: 1 MiB
    // batches, ~7,700 events, held the loop 60–100 ms on a busy 2-core VM).
    this.tracer.readRing(
      (batch) => {
        events.length = 0;
        decodeRingBatch(batch, take, this.decodeStats);
        this.tracker.ingest(events);
      },
      10,
      RING_BATCH_BYTES,
    );
    this.publishSnapshot();
    this.flushTimer = setInterval(() => this.flush(), this.opts.flushIntervalMs ?? DEFAULT_FLUSH_MS);
    this.summaryTimer = setInterval(() => this.publishSummary(), this.opts.summaryIntervalMs ?? 10_000);
    const healMs = this.opts.healIntervalMs ?? DEFAULT_HEAL_MS;
    if (healMs > 0) this.healTimer = setInterval(() => this.heal(), healMs);
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

  /** Encodes snapshot events as Snapshots, split so that none exceeds the server's max payload. */
  private putTransitions(kind: 'snapshot', events: TcpEvent[]) {
    if (events.length === 0) return;
    const header = this.header();
    const first = this.eventSeq;
    const payload = pb.Snapshot.encode({ header, sockets: pb.TransitionBatch.decode(encodeTransitions(events, header, first)) }).finish();
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
    if (n === 0) return;
    const header = this.header();
    this.put('dwell', header, this.dwellRows.encode(header), n);
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
    const wanted = this.filters.netns?.length ? listNetns().filter((n) => this.filters.netns!.includes(n.inode)) : listNetns();
    const own = statSync('/proc/self/ns/net').ino;
    const reachable = (netns ?? wanted).filter((ns) => this.enterNetns || ns.inode === own);
    const skipped = (netns ?? wanted).length - reachable.length;
    if (skipped > 0 && !(quiet && this.unreachableLogged)) {
      this.opts.log?.(`snapshot: ${skipped} other network namespaces skipped (capabilities dropped; start with --resnapshot to keep CAP_SYS_ADMIN for this)`);
      this.unreachableLogged = true;
    }
    for (const ns of reachable) {
      const mine: TcpEvent[] = [];
      // The agent's own namespace needs no setns() (and so no CAP_SYS_ADMIN).
      decodeRecords(this.tracer.snapshot(ns.inode === own ? { inode: ns.inode, path: '' } : ns), (e) => mine.push(e), this.decodeStats);
      // Events already read are older than this snapshot: apply them first.
      this.tracer.drainRing();
      this.tracker.seed(ns.inode, mine);
      for (const e of mine) events.push(e);
    }
    return events;
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
    clearInterval(this.healTimer);
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
