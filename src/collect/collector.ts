/**
 * `tcpdwell collect`: the fleet collector. Reads the stream TCPDWELL through a durable pull
 * consumer that any number of instances share, counts every message exactly once, keeps the
 * fleet views, evaluates fleet-wide rules and publishes their alerts.
 *
 * Where state lives, and why:
 * - **Which messages were counted**: per agent run (host, boot id, epoch), in the KV bucket
 *   (continuity.ts). For each fetched batch, an instance marks the batch's sequence numbers with
 *   one compare-and-set per agent run, *then* applies the messages it marked, *then* acks.
 *   A redelivery (lost ack, crashed instance, ack wait expired) finds its number marked and is
 *   acked as a duplicate, whichever instance gets it — so instances and restarts never double
 *   count. An instance that dies between marking and acking loses those counts with the rest of
 *   its memory (a Prometheus counter reset), but nobody counts them twice.
 * - **Additive views** (counts, failures, dwell histograms): in each instance's memory, its
 *   share; the fleet is their sum (views.ts).
 * - **Latest-value views** (each host's newest Summary) and **fleet alert state**: in the KV
 *   bucket, written with compare-and-set, watched by every instance, so all instances hold the
 *   same picture and exactly one publishes each alert transition.
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
import { headers as natsHeaders, type NatsConnection } from '@nats-io/nats-core';
import { EnvironmentError } from '../common/errors.js';
import { VERSION } from '../common/version.js';
import { connectNats, type ConnectionSettings } from '../publish/connection.js';
import { ensureAgentStream } from '../publish/streams.js';
import { COLLECT_BUCKET, COLLECT_DURABLE, DEADLETTER_PREFIX, DEADLETTER_STREAM, FLEET_ALERT_SUBJECT, ORIGIN_COLLECTOR, ORIGIN_HEADER, STREAM, STREAM_SUBJECTS } from '../publish/subjects.js';
import { pb } from '../publish/wire.js';
import { KvBucket, type KvEntry } from './kv.js';
import { gapCount, markSeen, newSeqState, seqKey, type SeqState } from './continuity.js';
import { classify, dropsOf, REJECT_REASONS, type CollectedMessage, type RejectReason } from './messages.js';
import { FleetViews, hostRecordFromSummary, isNewer, type HostRecord, type ViewsSnapshot } from './views.js';
import { DEFAULT_FLEET_THRESHOLDS, evaluateFleetRules, liveHosts, type FleetAlert, type FleetRuleThresholds } from './rules.js';


export interface CollectorOptions {
  connection: ConnectionSettings;
  /** the data stream (default TCPDWELL; created if missing, as the agents do) */
  stream?: string;
  /** durable consumer shared by all instances (default tcpdwell-collect) */
  durable?: string;
  /** KV bucket of shared state (default tcpdwell-collect) */
  bucket?: string;
  /** replicas for the streams this creates (data stream if missing, KV bucket, dead letters) */
  replicas?: number;
  /** retention of the data stream if this creates it (default 7 days, 1 GiB, like the agent) */
  streamMaxAgeS?: number;
  streamMaxBytes?: number;
  /** where a new durable consumer starts: the whole stream (default) or new messages only */
  deliver?: 'all' | 'new';
  /** messages per fetch (default 256) */
  batch?: number;
  /** redelivery after this long without an ack (default 30 s) */
  ackWaitS?: number;
  /** fleet rules are evaluated this often (default 5 s) */
  evaluateIntervalMs?: number;
  thresholds?: Partial<FleetRuleThresholds>;
  /** a sequence hole is reported as a gap once it has been missing this long (default 60 s) */
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
  /** the collector's own alerts read back from the stream */
  own: number;
  rejected: Record<RejectReason, number>;
  deadLettered: number;
  /** compare-and-set attempts lost to another instance (then retried) */
  casConflicts: number;
  alertsPublished: number;
  /** fetch or processing failures (the batch is redelivered) */
  errors: number;
}

/** Shared-state records as stored in the bucket. */
interface Mirrored<T> {
  value: T | null;
  revision: number;
}

interface AlertState extends FleetAlert {
  sinceMs: number;
  by: string;
}

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const dec = <T>(b: Uint8Array): T | null => {
  try {
    return b.length ? (JSON.parse(new TextDecoder().decode(b)) as T) : null;
  } catch {
    return null;
  }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const alertKvKey = (key: string) => `alert.${Buffer.from(key).toString('base64url')}`;

export class Collector {
  readonly views = new FleetViews();
  readonly instance: string;
  private readonly seqs = new Map<string, Mirrored<SeqState>>();
  private readonly hostsByKey = new Map<string, Mirrored<HostRecord>>();
  private readonly alertsByKey = new Map<string, Mirrored<AlertState>>();
  readonly thresholds: FleetRuleThresholds;
  private readonly stats_: CollectorStats = {
    received: 0,
    counted: 0,
    duplicates: 0,
    own: 0,
    rejected: Object.fromEntries(REJECT_REASONS.map((r) => [r, 0])) as Record<RejectReason, number>,
    deadLettered: 0,
    casConflicts: 0,
    alertsPublished: 0,
    errors: 0,
  };
  private stopped = false;
  private loop: Promise<void> | null = null;
  private evalTimer?: NodeJS.Timeout;
  private watcher: { stop(): void } | null = null;
  private readonly log: (line: string) => void;
  private lastError = '';

  private constructor(
    private readonly opts: CollectorOptions,
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly kv: KvBucket,
    private readonly consumer: Consumer,
  ) {
    this.instance = opts.instance ?? `${hostname()}/${process.pid}`;
    this.thresholds = { ...DEFAULT_FLEET_THRESHOLDS, ...opts.thresholds };
    this.log = opts.log ?? (() => {});
  }

  /** Connects, makes sure the streams, the bucket and the durable consumer exist, and starts consuming. */
  static async start(opts: CollectorOptions): Promise<Collector> {
    const servers = opts.connection.servers.join(',');
    const nc = await connectNats(opts.connection, { name: opts.connection.name ?? 'tcpdwell-collect', maxReconnectAttempts: -1, reconnectTimeWait: 500 });
    try {
      const jsm = await jetstreamManager(nc);
      const js = jetstream(nc);
      const stream = opts.stream ?? STREAM;
      const durable = opts.durable ?? COLLECT_DURABLE;
      await ensureAgentStream(jsm, { name: stream, replicas: opts.replicas, maxAgeS: opts.streamMaxAgeS, maxBytes: opts.streamMaxBytes });
      await ensureStream(jsm, DEADLETTER_STREAM, `${DEADLETTER_PREFIX}.>`, { num_replicas: opts.replicas ?? 1, max_age: 7 * 86400e9, max_bytes: 64 << 20 });
      const kv = await KvBucket.open(js, jsm, opts.bucket ?? COLLECT_BUCKET, { replicas: opts.replicas, maxAgeS: opts.streamMaxAgeS ?? 7 * 86400 });
      await ensureConsumer(jsm, stream, durable, opts);
      const consumer = await js.consumers.get(stream, durable);
      const c = new Collector(opts, nc, js, jsm, kv, consumer);
      const w = await kv.watch('>', (e) => c.onKv(e));
      c.watcher = w;
      await Promise.race([w.ready, sleep(5000)]);
      c.loop = c.run();
      c.evalTimer = setInterval(() => void c.evaluate().catch((err) => c.trouble(`fleet rules: ${(err as Error).message}`)), opts.evaluateIntervalMs ?? 5000);
      opts.log?.(`consuming ${stream} (${STREAM_SUBJECTS}) as durable ${durable}, instance ${c.instance}`);
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

  /** Every host's newest picture (the same on every instance). */
  hosts(): HostRecord[] {
    return [...this.hostsByKey.values()].flatMap((m) => (m.value ? [m.value] : [])).sort((a, b) => (a.host < b.host ? -1 : 1));
  }

  /** Hosts with a current picture (see `hostStaleS`). */
  liveHosts(nowMs = Date.now()): HostRecord[] {
    return liveHosts(this.hosts(), this.thresholds, nowMs);
  }

  /** What is known about every agent run: sequence continuity and loss counters. */
  agentRuns(): SeqState[] {
    return [...this.seqs.values()].flatMap((m) => (m.value ? [m.value] : []));
  }

  /** Sequence gaps per host (holes older than the grace, plus abandoned), over all its runs. */
  gaps(nowMs = Date.now()): Record<string, number> {
    const out: Record<string, number> = {};
    for (const s of this.agentRuns()) out[s.host] = (out[s.host] ?? 0) + gapCount(s, nowMs, (this.opts.gapGraceS ?? 60) * 1000);
    return out;
  }

  /** Fleet alerts firing now (from the shared state). */
  firing(): AlertState[] {
    return [...this.alertsByKey.values()].flatMap((m) => (m.value ? [m.value] : []));
  }

  /** This instance's additive views, plain data. */
  snapshot(): ViewsSnapshot {
    return this.views.snapshot();
  }

  private onKv(e: KvEntry) {
    const map = e.key.startsWith('seq.') ? this.seqs : e.key.startsWith('host.') ? this.hostsByKey : e.key.startsWith('alert.') ? this.alertsByKey : null;
    if (!map) return;
    const cur = map.get(e.key);
    if (cur && cur.revision >= e.revision) return;
    (map as Map<string, Mirrored<unknown>>).set(e.key, { value: e.deleted ? null : dec(e.value), revision: e.revision });
  }

  private trouble(line: string) {
    this.stats_.errors++;
    if (line !== this.lastError) this.log(line);
    this.lastError = line;
  }

  private async run(): Promise<void> {
    const batch = this.opts.batch ?? 256;
    while (!this.stopped) {
      const msgs: JsMsg[] = [];
      try {
        const it = await this.consumer.fetch({ max_messages: batch, expires: 1000 });
        for await (const m of it) msgs.push(m);
      } catch (err) {
        if (this.stopped) break;
        this.trouble(`fetch failed (${(err as Error).message}): retrying`);
        await sleep(500);
        if (!msgs.length) continue;
      }
      if (!msgs.length) continue;
      try {
        await this.process(msgs);
        this.lastError = '';
      } catch (err) {
        // NATS trouble mid-batch: nothing of it is acked; it comes back (and is deduplicated).
        this.trouble(`processing a batch failed (${(err as Error).message}): it will be redelivered`);
        for (const m of msgs) m.nak(1000);
        await sleep(500);
      }
    }
  }

  /** Gate, apply, ack (see the module comment for why in that order). */
  private async process(msgs: JsMsg[]): Promise<void> {
    this.stats_.received += msgs.length;
    const groups = new Map<string, CollectedMessage[]>();
    const asides: Promise<void>[] = [];
    for (const m of msgs) {
      const c = classify(m.subject, m.data, m.headers?.get(ORIGIN_HEADER) === ORIGIN_COLLECTOR);
      if (c.ok) {
        const id = c.message.id;
        const key = seqKey(id.host, id.bootId, id.epoch);
        let g = groups.get(key);
        if (!g) groups.set(key, (g = []));
        g.push(c.message);
      } else if (c.own) this.stats_.own++;
      else asides.push(this.deadLetter(m, c.reason, c.error));
    }
    await Promise.all(asides);
    await Promise.all(
      [...groups].map(async ([key, list]) => {
        const id = list[0]!.id;
        const drops: Record<string, number> = {};
        for (const m of list) for (const [k, v] of Object.entries(dropsOf(m.header))) if (v > (drops[k] ?? 0)) drops[k] = v;
        const fresh = await this.gate(key, id.host, id.bootId, id.epoch, list.map((m) => m.id.seq), drops);
        const summaries: HostRecord[] = [];
        for (const m of list) {
          if (!fresh.delete(m.id.seq)) {
            this.stats_.duplicates++;
            continue;
          }
          this.views.apply(m);
          this.stats_.counted++;
          if (m.kind === 'summary') summaries.push(hostRecordFromSummary(m.id.host, m.header, m.summary));
        }
        for (const r of summaries) await this.updateHost(r);
      }),
    );
    for (const m of msgs) m.ack();
    await this.nc.flush();
  }

  /** Marks seqs counted for one agent run; returns the ones this call marked. */
  private async gate(key: string, host: string, bootId: string, epoch: number, seqs: number[], drops: Record<string, number>): Promise<Set<number>> {
    let cur = this.seqs.get(key);
    for (;;) {
      const base = cur?.value ?? newSeqState(host, bootId, epoch);
      const { state, fresh } = markSeen(base, seqs, drops, Date.now());
      if (fresh.size === 0) return fresh;
      const rev = await this.kv.update(key, enc(state), cur?.revision ?? 0);
      if (rev !== null) {
        const now = this.seqs.get(key);
        if (!now || now.revision < rev) this.seqs.set(key, { value: state, revision: rev });
        return fresh;
      }
      this.stats_.casConflicts++;
      const e = await this.kv.get(key);
      cur = e ? { value: e.deleted ? null : dec<SeqState>(e.value), revision: e.revision } : undefined;
      if (cur) this.seqs.set(key, cur);
    }
  }

  /** Stores a host's picture if it is newer than the stored one. */
  private async updateHost(r: HostRecord): Promise<void> {
    const key = `host.${r.host}`;
    let cur = this.hostsByKey.get(key);
    for (;;) {
      if (!isNewer(r, cur?.value ?? undefined)) return;
      const rev = await this.kv.update(key, enc(r), cur?.revision ?? 0);
      if (rev !== null) {
        const now = this.hostsByKey.get(key);
        if (!now || now.revision < rev) this.hostsByKey.set(key, { value: r, revision: rev });
        return;
      }
      this.stats_.casConflicts++;
      const e = await this.kv.get(key);
      cur = e ? { value: e.deleted ? null : dec<HostRecord>(e.value), revision: e.revision } : undefined;
      if (cur) this.hostsByKey.set(key, cur);
    }
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

  /**
   * Evaluates the fleet rules on the shared picture and publishes each alert once when it
   * starts firing and once when it resolves. Every instance evaluates; the compare-and-set on
   * the alert's key decides which one publishes.
   */
  async evaluate(nowMs = Date.now()): Promise<FleetAlert[]> {
    const now = evaluateFleetRules(this.hosts(), this.thresholds, nowMs);
    const keys = new Set<string>();
    for (const a of now) {
      const key = alertKvKey(a.key);
      keys.add(key);
      const cur = this.alertsByKey.get(key);
      if (cur?.value) continue;
      const state: AlertState = { ...a, sinceMs: nowMs, by: this.instance };
      const rev = await this.kv.update(key, enc(state), cur?.revision ?? 0);
      if (rev === null) {
        this.stats_.casConflicts++;
        continue; // another instance published it; the watch brings its state here
      }
      this.alertsByKey.set(key, { value: state, revision: rev });
      await this.publishAlert(state, 'firing', `${key}.${rev}`, nowMs);
    }
    for (const [key, cur] of [...this.alertsByKey]) {
      if (!cur.value || keys.has(key)) continue;
      const rev = await this.kv.delete(key, cur.revision);
      if (rev === null) {
        this.stats_.casConflicts++;
        continue;
      }
      this.alertsByKey.set(key, { value: null, revision: rev });
      await this.publishAlert(cur.value, 'resolved', `${key}.${rev}`, nowMs);
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

  /** Stops fetching, finishes the batch in hand (acking it), and closes the connection. */
  async stop(): Promise<CollectorStats> {
    this.stopped = true;
    clearInterval(this.evalTimer);
    await this.loop?.catch(() => {});
    this.watcher?.stop();
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
