/**
 * `tcpdwell collect`: the fleet collector. Reads the stream TCPDWELL through a durable pull
 * consumer that any number of instances share, stores every message exactly once, keeps the
 * fleet views, evaluates fleet-wide rules and publishes their alerts.
 *
 * Where state lives, and why:
 * - **Which messages were counted**: the store (store.ts). A fetched batch is decoded, handed
 *   to the store, which stores each message not stored before, whole, and says which those
 *   were; only they are counted into the views; *then* the batch is acked. A redelivery (lost
 *   ack, crashed instance, expired ack wait) or an agent's re-send finds its message stored and
 *   is acked as a duplicate, whichever instance gets it. A store that fails acks nothing: the
 *   batch comes back (JetStream keeps it), so a store outage loses nothing. Correctness rests on
 *   the store's key, not on a compare-and-set in NATS: no shared state is written per message.
 *   Without a store, the gate is this instance's memory (continuity.ts): run one instance.
 * - **Sequence continuity** (continuity.ts): per agent run, in memory, as a prefix and a few
 *   ranges; a hole is declared lost once after the grace (logged, stored in `holes`) and costs
 *   nothing afterwards. Instances sharing a store learn what the others stored by reading the
 *   store's `messages` once a second; a run first met (after a restart, or one another instance
 *   has been storing) starts where the store says it stands (`ensureRuns`), so no hole is made up.
 * - **Additive views** (counts, failures, dwell histograms): in each instance's memory, its
 *   share; the fleet is their sum (views.ts).
 * - **Latest-value views** (each host's newest Summary): in memory, from the summaries this
 *   instance stored and, with a shared store, every host's latest summary read back each rule
 *   evaluation, so every instance evaluates the same picture.
 * - **Fleet alert state**: a small KV bucket (@nats-io/kv): one create or delete per alert
 *   transition, so exactly one instance publishes each (on a cluster this needs nats-server ≥
 *   2.9.21 / 2.10, see docs/operations.md).
 * - Messages that do not decode go, with why, to `tcpdwell.deadletter.<reason>` (stream
 *   TCPDWELL_DEADLETTER, outside tcpdwell.v1.>), and are acked.
 */
import { hostname } from 'node:os';
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type Consumer,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/nats-core';
import { EnvironmentError } from '../common/errors.js';
import { VERSION } from '../common/version.js';
import { connectNats, type ConnectionSettings } from '../publish/connection.js';
import { ensureAgentStream } from '../publish/streams.js';
import { COLLECT_BUCKET, COLLECT_DURABLE, DEADLETTER_PREFIX, DEADLETTER_STREAM, FLEET_ALERT_SUBJECT, ORIGIN_COLLECTOR, ORIGIN_HEADER, STREAM, STREAM_SUBJECTS } from '../publish/subjects.js';
import { pb } from '../publish/wire.js';
import { Continuity, type DeclaredHole, type RunState } from './continuity.js';
import { classify, dropsOf, REJECT_REASONS, type CollectedMessage, type RejectReason } from './messages.js';
import { rowsOf } from './rows.js';
import { holeKey, runKey, type RunId, type Store } from './store.js';
import { FleetViews, hostRecordFromSummary, isNewer, type HostRecord, type ViewsSnapshot } from './views.js';
import { DEFAULT_FLEET_THRESHOLDS, evaluateFleetRules, liveHosts, type FleetAlert, type FleetRuleThresholds } from './rules.js';

export interface CollectorOptions {
  connection: ConnectionSettings;
  /** where every message is stored once (store.ts); without one, run a single instance */
  store?: Store;
  /** the data stream (default TCPDWELL; created if missing, as the agents do) */
  stream?: string;
  /** durable consumer shared by all instances (default tcpdwell-collect) */
  durable?: string;
  /** KV bucket of the fleet alert state (default tcpdwell-collect) */
  bucket?: string;
  /** replicas for the streams this creates (data stream if missing, KV bucket, dead letters) */
  replicas?: number;
  /** retention of the data stream if this creates it (default 7 days, 1 GiB, like the agent) */
  streamMaxAgeS?: number;
  streamMaxBytes?: number;
  /** where a new durable consumer starts: the whole stream (default) or new messages only */
  deliver?: 'all' | 'new';
  /** messages per fetch (default 1024) */
  batch?: number;
  /** redelivery after this long without an ack (default 30 s) */
  ackWaitS?: number;
  /** fleet rules are evaluated this often (default 5 s) */
  evaluateIntervalMs?: number;
  thresholds?: Partial<FleetRuleThresholds>;
  /** a sequence hole is declared lost once it has been missing this long (default 60 s) */
  gapGraceS?: number;
  /** this instance's name in logs and alerts (default hostname/pid) */
  instance?: string;
  log?: (line: string) => void;
}

export interface CollectorStats {
  /** messages fetched (each delivery, redeliveries included) */
  received: number;
  /** messages counted into the views (once fleet-wide) */
  counted: number;
  /** deliveries of messages already counted (by this or another instance) */
  duplicates: number;
  /** messages that arrived after their hole had been declared lost */
  late: number;
  /** the collector's own alerts read back from the stream */
  own: number;
  rejected: Record<RejectReason, number>;
  deadLettered: number;
  /** alert-state writes lost to another instance */
  casConflicts: number;
  alertsPublished: number;
  /** fetch or processing failures (the batch is redelivered) */
  errors: number;
  /** batches the store refused (held back: not acked, redelivered) */
  storeErrors: number;
  /** rows stored by this instance */
  rowsStored: number;
  /** holes declared lost by this instance */
  holesDeclared: number;
}

interface AlertState extends FleetAlert {
  sinceMs: number;
  by: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const alertKvKey = (key: string) => `alert.${Buffer.from(key).toString('base64url')}`;
/** The most bytes one fetch (and so one store transaction) takes. */
const FETCH_MAX_BYTES = 8 << 20;
/** How far back an instance re-reads what the others stored (their commits can land late). */
const SHARED_POLL_MARGIN_MS = 10_000;

export class Collector {
  readonly views = new FleetViews();
  readonly instance: string;
  readonly continuity = new Continuity();
  private readonly hostsByName = new Map<string, HostRecord>();
  private firingNow = new Map<string, AlertState>();
  readonly thresholds: FleetRuleThresholds;
  private readonly stats_: CollectorStats = {
    received: 0,
    counted: 0,
    duplicates: 0,
    late: 0,
    own: 0,
    rejected: Object.fromEntries(REJECT_REASONS.map((r) => [r, 0])) as Record<RejectReason, number>,
    deadLettered: 0,
    casConflicts: 0,
    alertsPublished: 0,
    errors: 0,
    storeErrors: 0,
    rowsStored: 0,
    holesDeclared: 0,
  };
  private stopped = false;
  private loop: Promise<void> | null = null;
  private evalTimer?: NodeJS.Timeout;
  private settleTimer?: NodeJS.Timeout;
  private settling: Promise<void> | null = null;
  private polledUpToMs = 0;
  private polls = 0;
  /** average size of the messages fetched (bytes), for the batch's byte bound */
  private avgMessageBytes = FETCH_MAX_BYTES / 64; // the first fetch is small: it learns the sizes
  private readonly ownSeqs = new Map<string, Set<number>>();
  private unconfirmed: { hole: DeclaredHole; dueMs: number }[] = [];
  private readonly log: (line: string) => void;
  private lastError = '';
  private readonly store: Store | null;

  private constructor(
    private readonly opts: CollectorOptions,
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly kv: KV,
    private readonly consumer: Consumer,
  ) {
    this.instance = opts.instance ?? `${hostname()}/${process.pid}`;
    this.thresholds = { ...DEFAULT_FLEET_THRESHOLDS, ...opts.thresholds };
    this.log = opts.log ?? (() => {});
    this.store = opts.store ?? null;
  }

  /** Connects, makes sure the streams, the bucket and the durable consumer exist, and starts consuming. */
  static async start(opts: CollectorOptions): Promise<Collector> {
    const servers = opts.connection.servers.join(',');
    // noAsyncTraces: nats.js otherwise builds an Error (a stack trace) for every request it
    // sends, in case it fails — 20 % of the CPU of a collector fetching small batches.
    const nc = await connectNats(opts.connection, { name: opts.connection.name ?? 'tcpdwell-collect', maxReconnectAttempts: -1, reconnectTimeWait: 500, noAsyncTraces: true });
    try {
      const jsm = await jetstreamManager(nc);
      const js = jetstream(nc);
      const stream = opts.stream ?? STREAM;
      const durable = opts.durable ?? COLLECT_DURABLE;
      await ensureAgentStream(jsm, { name: stream, replicas: opts.replicas, maxAgeS: opts.streamMaxAgeS, maxBytes: opts.streamMaxBytes });
      await ensureStream(jsm, DEADLETTER_STREAM, `${DEADLETTER_PREFIX}.>`, { num_replicas: opts.replicas ?? 1, max_age: 7 * 86400e9, max_bytes: 64 << 20 });
      const kv = await new Kvm(js).create(opts.bucket ?? COLLECT_BUCKET, { replicas: opts.replicas ?? 1, history: 1 });
      await ensureConsumer(jsm, stream, durable, opts);
      const consumer = await js.consumers.get(stream, durable);
      const c = new Collector(opts, nc, js, jsm, kv, consumer);
      await c.readAlertState().catch(() => {});
      c.polledUpToMs = Date.now() - SHARED_POLL_MARGIN_MS;
      c.loop = c.run();
      c.evalTimer = setInterval(() => void c.evaluate().catch((err) => c.trouble(`fleet rules: ${(err as Error).message}`)), opts.evaluateIntervalMs ?? 5000);
      c.settleTimer = setInterval(() => void c.settle(), 1000);
      opts.log?.(`consuming ${stream} (${STREAM_SUBJECTS}) as durable ${durable}, instance ${c.instance}${c.store ? `, storing into ${c.store.kind} ${c.store.location}` : ' (no store: run one instance)'}`);
      return c;
    } catch (err) {
      await nc.close().catch(() => {});
      if (err instanceof EnvironmentError) throw err;
      throw new EnvironmentError(`JetStream at ${servers}: ${(err as Error).message}`, { cause: err });
    }
  }

  stats(): CollectorStats {
    return { ...this.stats_, rejected: { ...this.stats_.rejected } };
  }

  /** Every host's newest picture (the same on every instance when they share a store). */
  hosts(): HostRecord[] {
    return [...this.hostsByName.values()].sort((a, b) => (a.host < b.host ? -1 : 1));
  }

  /** Hosts with a current picture (see `hostStaleS`). */
  liveHosts(nowMs = Date.now()): HostRecord[] {
    return liveHosts(this.hosts(), this.thresholds, nowMs);
  }

  /** What is known about every agent run: sequence continuity and loss counters. */
  agentRuns(): RunState[] {
    return [...this.continuity.all()].map((r) => r.toJSON());
  }

  /** Messages lost per host: holes declared lost (after the grace), less late arrivals. */
  gaps(): Record<string, number> {
    return this.continuity.missingByHost();
  }

  /** Fleet alerts firing now (from the shared state). */
  firing(): AlertState[] {
    return [...this.firingNow.values()];
  }

  /** This instance's additive views, plain data. */
  snapshot(): ViewsSnapshot {
    return this.views.snapshot();
  }

  private trouble(line: string) {
    this.stats_.errors++;
    if (line !== this.lastError) this.log(line);
    this.lastError = line;
  }

  /** One fetch: up to `batch` messages (fewer after a second); [] on trouble (logged). */
  private async fetchBatch(batch: number): Promise<JsMsg[]> {
    const msgs: JsMsg[] = [];
    try {
      // Bounded by bytes too: 1024 messages of a busy host are ~30 MB, and one batch that size
      // leaves nothing to overlap (measured: 2.4x slower than batches of ~8 MB). nats.js takes
      // a count or a byte limit, not both: the count follows the sizes seen so far.
      const n = Math.max(1, Math.min(batch, Math.floor(FETCH_MAX_BYTES / this.avgMessageBytes)));
      const it = await this.consumer.fetch({ max_messages: n, expires: 1000 });
      let bytes = 0;
      for await (const m of it) {
        msgs.push(m);
        bytes += m.data.length;
      }
      if (msgs.length) this.avgMessageBytes = 0.5 * this.avgMessageBytes + (0.5 * bytes) / msgs.length;
    } catch (err) {
      if (!this.stopped) {
        this.trouble(`fetch failed (${(err as Error).message}): retrying`);
        await sleep(500);
      }
    }
    return msgs;
  }

  private async run(): Promise<void> {
    const batch = this.opts.batch ?? 1024;
    // The next batch is fetched while this one is decoded and stored: the collector otherwise
    // sat idle for a round trip per batch (28 % of a busy-host run's time).
    let next = this.fetchBatch(batch);
    while (!this.stopped) {
      const msgs = await next;
      next = this.stopped ? Promise.resolve([]) : this.fetchBatch(batch);
      if (!msgs.length) continue;
      try {
        await this.process(msgs);
        this.lastError = '';
      } catch (err) {
        // Store or NATS trouble mid-batch: nothing of it is acked; it comes back (and is
        // recognised as stored, where it was).
        this.trouble(`processing a batch failed (${(err as Error).message}): it will be redelivered`);
        for (const m of msgs) m.nak(1000);
        await sleep(500);
      }
    }
    // A batch fetched ahead and not processed goes back at once, for another instance or the next start.
    for (const m of await next) m.nak();
  }

  /** Decode, store (the gate), count what was new, ack (see the module comment for why in that order). */
  private async process(msgs: JsMsg[]): Promise<void> {
    this.stats_.received += msgs.length;
    const good: CollectedMessage[] = [];
    const asides: Promise<void>[] = [];
    for (const m of msgs) {
      // With a store every row is decoded (it stores them); without, only what the views need.
      const c = classify(m.subject, m.data, m.headers?.get(ORIGIN_HEADER) === ORIGIN_COLLECTOR, this.store ? 'full' : 'views');
      if (c.ok) good.push(c.message);
      else if (c.own) this.stats_.own++;
      else asides.push(this.deadLetter(m, c.reason, c.error));
    }
    await Promise.all(asides);
    const now = Date.now();
    if (this.store) {
      await this.ensureRuns(good.map((m) => m.id));
      const rows = good.map((m) => rowsOf(m, now));
      // A slow store must not let the ack wait run out (another instance would get the batch).
      const keepAlive = setInterval(() => msgs.forEach((m) => m.working()), Math.max(1000, ((this.opts.ackWaitS ?? 30) * 1000) / 3));
      let fresh: Set<string>;
      try {
        fresh = await this.store.store(rows);
      } catch (err) {
        this.stats_.storeErrors++;
        throw new Error(`the ${this.store.kind} store refused the batch: ${(err as Error).message}; holding acks back`, { cause: err });
      } finally {
        clearInterval(keepAlive);
      }
      for (let i = 0; i < good.length; i++) {
        const m = good[i]!;
        if (!fresh.delete(rows[i]!.key)) {
          this.stats_.duplicates++;
          continue;
        }
        this.stats_.rowsStored += rows[i]!.rows.length;
        const r = this.continuity.run(m.id.host, m.id.bootId, m.id.epoch);
        if (this.store.shared && m.id.seq > r.upTo + 1) this.ownAbove(m.id).add(m.id.seq);
        if (r.mark(m.id.seq, now, 'new') === 'late') this.stats_.late++;
        r.mergeDrops(dropsOf(m.header));
        this.count(m);
      }
    } else {
      for (const m of good) {
        const r = this.continuity.run(m.id.host, m.id.bootId, m.id.epoch);
        if (r.messages === 0 && r.upTo === 0 && m.id.seq > 1) r.baseline(m.id.seq);
        const how = r.mark(m.id.seq, now);
        if (how === 'duplicate') {
          this.stats_.duplicates++;
          continue;
        }
        if (how === 'late') this.stats_.late++;
        r.mergeDrops(dropsOf(m.header));
        this.count(m);
      }
    }
    for (const m of msgs) m.ack();
    await this.nc.flush();
  }

  /**
   * Runs this process has not met yet start where the store says they stand (read before this
   * batch is stored, so its own messages count as new): after a restart, or for a run another
   * instance has been storing, no hole is taken for one.
   */
  private async ensureRuns(ids: readonly RunId[]): Promise<void> {
    const unknown = new Map<string, RunId>();
    for (const id of ids) if (!this.continuity.get(id.host, id.bootId, id.epoch)) unknown.set(runKey(id), { host: id.host, bootId: id.bootId, epoch: id.epoch });
    if (unknown.size === 0 || !this.store) return;
    const base = await this.store.runBaselines([...unknown.values()]);
    const now = Date.now();
    for (const [k, id] of unknown) {
      const b = base.get(k);
      const r = this.continuity.run(id.host, id.bootId, id.epoch);
      if (!b) continue;
      r.load(b.upTo, b.lost);
      for (const seq of b.above) r.mark(seq, now);
      // A hole is as old as the message stored right above it, not as this process's first look.
      const i = b.above.findIndex((seq) => seq > r.upTo);
      if (i >= 0 && r.holeSinceMs !== null) r.holeSinceMs = Math.min(r.holeSinceMs, b.aboveStoredMs[i]!);
      r.messages = 0; // counted here: what this process counted
    }
  }

  private count(m: CollectedMessage): void {
    this.views.apply(m);
    this.stats_.counted++;
    if (m.kind === 'summary') this.updateHost(hostRecordFromSummary(m.id.host, m.header, m.summary));
  }

  private updateHost(r: HostRecord): void {
    if (isNewer(r, this.hostsByName.get(r.host))) this.hostsByName.set(r.host, r);
  }

  /**
   * Once a second: learn what other instances stored (shared store), declare holes older than
   * the grace lost (each reported once: logged and stored).
   */
  private settle(): Promise<void> {
    if (this.settling) return this.settling;
    this.settling = (async () => {
      const now = Date.now();
      if (this.store?.shared) {
        // Each second the last 2 s again (most commits land within it), every tenth the last
        // SHARED_POLL_MARGIN_MS: at 20k messages/s a 10 s margin every second was 200k rows a
        // second to read per instance.
        const since = this.polledUpToMs - (++this.polls % 10 === 0 ? SHARED_POLL_MARGIN_MS : 2000);
        const theirs = await this.store.storedSince(since);
        this.polledUpToMs = now;
        await this.ensureRuns(theirs);
        for (const s of theirs) {
          const r = this.continuity.run(s.host, s.bootId, s.epoch);
          r.mark(s.seq, now);
          r.mergeDrops(s.drops);
        }
      }
      const graceMs = (this.opts.gapGraceS ?? 60) * 1000;
      const holes = this.continuity.settle(now, graceMs);
      if (!this.store?.shared) {
        if (holes.length) await this.declare(holes);
        return;
      }
      // Every instance declares the hole (their pictures agree); one reports it: the one that
      // stored the message right above it. Should that one be gone, the others report it one
      // grace later unless the store has it by then.
      const mine: DeclaredHole[] = [];
      for (const h of holes) {
        if (this.ownAbove(h).has(h.toSeq + 1)) mine.push(h);
        else this.unconfirmed.push({ hole: h, dueMs: now + graceMs });
      }
      const due = this.unconfirmed.filter((u) => u.dueMs <= now);
      if (due.length) {
        this.unconfirmed = this.unconfirmed.filter((u) => u.dueMs > now);
        const known = await this.store.knownHoles(due.map((u) => u.hole));
        for (const u of due) if (!known.has(holeKey(u.hole))) mine.push(u.hole);
      }
      for (const [k, set] of this.ownSeqs) {
        const [host, bootId, epoch] = k.split('\t');
        const upTo = this.continuity.get(host!, bootId!, Number(epoch))?.upTo ?? Infinity;
        for (const seq of set) if (seq <= upTo) set.delete(seq);
        if (set.size === 0) this.ownSeqs.delete(k);
      }
      if (mine.length) await this.declare(mine);
    })()
      .catch((err) => this.trouble(`continuity: ${(err as Error).message}`))
      .finally(() => (this.settling = null));
    return this.settling;
  }

  /** Seqs this instance stored above a hole (run → seqs), until the prefix passes them. */
  private ownAbove(id: RunId): Set<number> {
    const k = runKey(id);
    let set = this.ownSeqs.get(k);
    if (!set) this.ownSeqs.set(k, (set = new Set()));
    return set;
  }

  private async declare(holes: DeclaredHole[]): Promise<void> {
    this.stats_.holesDeclared += holes.length;
    for (const h of holes.slice(0, 20)) {
      const n = h.toSeq - h.fromSeq + 1;
      this.log(`agent ${h.host} (boot ${h.bootId.slice(0, 8)}, epoch ${h.epoch}): ${n} message${n === 1 ? '' : 's'} (seq ${h.fromSeq}${n > 1 ? `..${h.toSeq}` : ''}) missing for ${Math.round((h.declaredAtMs - h.sinceMs) / 1000)} s, declared lost`);
    }
    if (holes.length > 20) this.log(`… and ${holes.length - 20} more holes declared lost`);
    await this.store?.recordHoles(holes, this.instance);
  }

  private async deadLetter(m: JsMsg, reason: RejectReason, error: string): Promise<void> {
    const h = natsHeaders();
    h.set('Tcpdwell-Subject', m.subject);
    h.set('Tcpdwell-Reason', reason);
    h.set('Tcpdwell-Error', error.slice(0, 1000));
    h.set('Tcpdwell-Stream-Seq', String(m.seq));
    // The message id makes a redelivered reject land once.
    await this.js.publish(`${DEADLETTER_PREFIX}.${reason}`, m.data, { headers: h, msgID: `${m.info.stream}.${m.seq}`, timeout: 5000 });
    this.stats_.rejected[reason]++;
    this.stats_.deadLettered++;
    this.log(`set aside ${m.subject} (stream seq ${m.seq}): ${reason}: ${error}`);
  }

  /** The alerts firing now, as the bucket holds them: key → state and revision. */
  private async readAlertState(): Promise<Map<string, { state: AlertState; revision: number }>> {
    const out = new Map<string, { state: AlertState; revision: number }>();
    for await (const k of await this.kv.keys('alert.>')) {
      const e = await this.kv.get(k);
      if (!e || e.operation !== 'PUT') continue;
      try {
        out.set(k, { state: e.json<AlertState>(), revision: e.revision });
      } catch {
        // not ours: leave it
      }
    }
    this.firingNow = new Map([...out].map(([k, v]) => [k, v.state]));
    return out;
  }

  /**
   * Evaluates the fleet rules on the fleet's picture and publishes each alert once when it
   * starts firing and once when it resolves. Every instance evaluates; creating (or deleting)
   * the alert's key in the bucket decides which one publishes.
   */
  async evaluate(nowMs = Date.now()): Promise<FleetAlert[]> {
    if (this.store?.shared) for (const r of await this.store.latestHosts(nowMs - this.thresholds.hostStaleS * 1000)) this.updateHost(r);
    const now = evaluateFleetRules(this.hosts(), this.thresholds, nowMs);
    const stored = await this.readAlertState();
    const keys = new Set<string>();
    for (const a of now) {
      const key = alertKvKey(a.key);
      keys.add(key);
      if (stored.has(key)) continue;
      const state: AlertState = { ...a, sinceMs: nowMs, by: this.instance };
      let rev: number;
      try {
        rev = await this.kv.create(key, JSON.stringify(state));
      } catch {
        this.stats_.casConflicts++;
        continue; // another instance published it
      }
      this.firingNow.set(key, state);
      await this.publishAlert(state, 'firing', `${key}.${rev}`, nowMs);
    }
    for (const [key, cur] of stored) {
      if (keys.has(key)) continue;
      try {
        await this.kv.delete(key, { previousSeq: cur.revision });
      } catch {
        this.stats_.casConflicts++;
        continue;
      }
      this.firingNow.delete(key);
      await this.publishAlert(cur.state, 'resolved', `${key}.${cur.revision}.resolved`, nowMs);
    }
    return now;
  }

  private async publishAlert(a: AlertState, severity: 'firing' | 'resolved', msgId: string, nowMs: number) {
    const h = natsHeaders();
    h.set(ORIGIN_HEADER, ORIGIN_COLLECTOR);
    const ns = (ms: number) => BigInt(Math.round(ms)) * 1_000_000n;
    const payload = pb.Alert.encode({
      // The collector is no agent: no boot clock. boot_to_unix_ns 0 makes at_ns and since_ns Unix ns.
      header: { hostId: 'collector', bootId: 'collector', agentVersion: VERSION, epoch: 0, seq: 0, bootToUnixNs: 0 },
      kind: a.rule,
      severity,
      message: a.summary,
      explanation: a.explanation,
      labels: { ...a.labels, instance: this.instance },
      atNs: Number(ns(nowMs)),
      sinceNs: Number(ns(a.sinceMs)),
      value: a.value,
      threshold: a.threshold,
      key: a.key,
    }).finish();
    await this.js.publish(FLEET_ALERT_SUBJECT, payload, { headers: h, msgID: `tcpdwell-collect.${msgId}`, timeout: 5000 });
    this.stats_.alertsPublished++;
    this.log(`alert ${severity}: ${a.summary}`);
  }

  /** Stops fetching, finishes the batch in hand (acking it), declares what is due, and closes the connection. */
  async stop(): Promise<CollectorStats> {
    this.stopped = true;
    clearInterval(this.evalTimer);
    clearInterval(this.settleTimer);
    await this.loop?.catch(() => {});
    await this.settling;
    await this.nc.drain().catch(() => this.nc.close());
    return this.stats();
  }
}

async function ensureStream(jsm: JetStreamManager, name: string, subject: string, extra: { num_replicas: number; max_age: number; max_bytes: number; duplicate_window?: number }) {
  try {
    const info = await jsm.streams.info(name);
    return info;
  } catch (err) {
    if (!/not found/i.test((err as Error).message)) throw err;
  }
  try {
    await jsm.streams.add({ name, subjects: [subject], ...extra, max_age: Math.round(extra.max_age) });
  } catch (err) {
    if (!/already in use|exists/i.test((err as Error).message)) throw err;
  }
  return jsm.streams.info(name);
}

async function ensureConsumer(jsm: JetStreamManager, stream: string, durable: string, opts: CollectorOptions) {
  try {
    const info = await jsm.consumers.info(stream, durable);
    const c = info.config;
    if (c.ack_policy !== AckPolicy.Explicit || (c.filter_subject && c.filter_subject !== STREAM_SUBJECTS) || c.deliver_subject) {
      throw new EnvironmentError(
        `consumer ${durable} on ${stream} exists but is not an explicit-ack pull consumer of ${STREAM_SUBJECTS}: delete it (nats consumer rm ${stream} ${durable}) or give --durable another name`,
      );
    }
    return;
  } catch (err) {
    if (err instanceof EnvironmentError) throw err;
    if (!/not found/i.test((err as Error).message)) throw err;
  }
  await jsm.consumers
    .add(stream, {
      durable_name: durable,
      filter_subject: STREAM_SUBJECTS,
      ack_policy: AckPolicy.Explicit,
      ack_wait: Math.round((opts.ackWaitS ?? 30) * 1e9),
      deliver_policy: opts.deliver === 'new' ? DeliverPolicy.New : DeliverPolicy.All,
      max_ack_pending: 4096,
      max_deliver: -1,
      num_replicas: 0,
    })
    .catch((err: Error) => {
      if (!/already in use|exists/i.test(err.message)) throw err;
    });
}
