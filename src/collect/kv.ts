/**
 * A small JetStream key-value bucket, on the stream layout NATS KV uses (stream `KV_<bucket>`,
 * subjects `$KV.<bucket>.<key>`, one message kept per subject), so `nats kv get` reads it too.
 * Written here because @nats-io/kv is not among our dependencies; it needs only
 * @nats-io/jetstream: a compare-and-set is a publish with an expected last subject sequence.
 * (Works on nats-server 2.9: no multi-filter consumers, no subject transforms.)
 */
import { DeliverPolicy, DiscardPolicy, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/nats-core';

/** One key's value and its revision (the stream sequence of its last write). */
export interface KvEntry {
  key: string;
  value: Uint8Array;
  revision: number;
  /** the key was deleted (its last write is a delete marker) */
  deleted: boolean;
}

export interface KvOptions {
  /** replicas of the bucket's stream (use the data stream's) */
  replicas?: number;
  /** keys not written for this long disappear (seconds); 0 = never */
  maxAgeS?: number;
}

const OP_HEADER = 'KV-Operation';
/** How often a watch checks that it is not stuck behind the bucket (see watch). */
const WATCHDOG_MS = 2000;

/** A stored message of the bucket as an entry (a delete marker as deleted). */
function entryOf(key: string, m: { data: Uint8Array; seq: number }, headers: { get(k: string): string } | undefined): KvEntry {
  const op = headers?.get(OP_HEADER);
  return { key, value: m.data, revision: m.seq, deleted: op === 'DEL' || op === 'PURGE' };
}

/** True for JetStream's answer to a compare-and-set that lost. */
export function isWrongLastSequence(err: unknown): boolean {
  const e = err as { message?: string; code?: number; api_error?: { err_code?: number } };
  return /wrong last sequence/i.test(e?.message ?? '') || e?.api_error?.err_code === 10071;
}

export class KvBucket {
  readonly stream: string;
  private readonly prefix: string;

  private constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    readonly name: string,
  ) {
    this.stream = `KV_${name}`;
    this.prefix = `$KV.${name}.`;
  }

  /** Opens the bucket, creating its stream if missing. */
  static async open(js: JetStreamClient, jsm: JetStreamManager, name: string, opts: KvOptions = {}): Promise<KvBucket> {
    const kv = new KvBucket(js, jsm, name);
    try {
      await jsm.streams.info(kv.stream);
    } catch (err) {
      if (!/not found/i.test((err as Error).message)) throw err;
      await jsm.streams
        .add({
          name: kv.stream,
          subjects: [`${kv.prefix}>`],
          max_msgs_per_subject: 1,
          discard: DiscardPolicy.New,
          allow_rollup_hdrs: true,
          deny_delete: true,
          allow_direct: true,
          num_replicas: opts.replicas ?? 1,
          max_age: Math.round((opts.maxAgeS ?? 0) * 1e9),
        })
        .catch(async (e: Error) => {
          // Another instance created it at the same moment.
          if (!/already in use|exists/i.test(e.message)) throw e;
        });
    }
    return kv;
  }

  /** The key's latest entry, or null if it was never written. */
  async get(key: string): Promise<KvEntry | null> {
    const m = await this.jsm.streams.getMessage(this.stream, { last_by_subj: this.prefix + key });
    if (!m) return null;
    return entryOf(key, m, m.header);
  }

  /**
   * Writes `value` if the key's revision is still `revision` (0: the key was never written).
   * Returns the new revision, or null when someone else wrote first.
   */
  async update(key: string, value: Uint8Array, revision: number): Promise<number | null> {
    try {
      const ack = await this.js.publish(this.prefix + key, value, { expect: { lastSubjectSequence: revision }, timeout: 5000 });
      return ack.seq;
    } catch (err) {
      if (isWrongLastSequence(err)) return null;
      throw err;
    }
  }

  /** Marks the key deleted if its revision is still `revision`; returns the new revision or null. */
  async delete(key: string, revision: number): Promise<number | null> {
    const h = natsHeaders();
    h.set(OP_HEADER, 'DEL');
    try {
      const ack = await this.js.publish(this.prefix + key, new Uint8Array(0), { headers: h, expect: { lastSubjectSequence: revision }, timeout: 5000 });
      return ack.seq;
    } catch (err) {
      if (isWrongLastSequence(err)) return null;
      throw err;
    }
  }

  /**
   * Calls `onEntry` with the latest entry of every key under `filter` (a key pattern such as
   * `host.>`), then with every write as it happens, until the returned stop() is called.
   */
  async watch(filter: string, onEntry: (e: KvEntry) => void): Promise<{ stop(): void; ready: Promise<void> }> {
    // Ready once the current value of every key has been handed over: at once for no keys,
    // else at the message the server says is the last one pending.
    const keys = await this.jsm.streams.info(this.stream, { subjects_filter: this.prefix + filter });
    let markReady: () => void = () => {};
    const ready = new Promise<void>((r) => (markReady = r));
    if (Object.keys(keys.state.subjects ?? {}).length === 0) markReady();
    let stopped = false;
    let lastSeq = 0;
    let current: { stop(): void } | null = null;
    const open = async () => {
      // After a failure, resume after the last entry handed over, so no write is missed.
      const c = await this.js.consumers.get(
        this.stream,
        lastSeq === 0
          ? { filter_subjects: this.prefix + filter, deliver_policy: DeliverPolicy.LastPerSubject }
          : { filter_subjects: this.prefix + filter, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: lastSeq + 1 },
      );
      const msgs = await c.consume();
      current = msgs;
      return msgs;
    };
    const first = await open();
    // Watchdog: the ordered consumer can also stall without failing after a failover (seen in
    // the cluster test: a collector's view stayed two writes behind for good, on Node 24 even
    // with the consumer reopened). Every WATCHDOG_MS, compare what was handed over with the
    // stream's last sequence; behind with no progress since the previous check → read every
    // key's latest entry directly (no consumer involved), and stop the consumer so that the loop
    // below reopens it. Only for a watch of every key (the collector's): with a narrower filter,
    // the stream's last write may be one the watch is not meant to see.
    let stalledAt = -1;
    let resyncedTo = 0;
    const resync = async (upTo: number) => {
      const info = await this.jsm.streams.info(this.stream, { subjects_filter: this.prefix + filter });
      for (const subject of Object.keys(info.state.subjects ?? {})) {
        const m = await this.jsm.streams.getMessage(this.stream, { last_by_subj: subject });
        if (!m || stopped) continue;
        onEntry(entryOf(subject.slice(this.prefix.length), m, m.header));
      }
      resyncedTo = Math.max(resyncedTo, upTo);
    };
    let checking = false;
    const watchdog =
      filter === '>'
        ? setInterval(() => {
            if (checking || stopped) return;
            checking = true;
            void (async () => {
              const last = (await this.jsm.streams.info(this.stream)).state.last_seq;
              const seen = Math.max(lastSeq, resyncedTo);
              const behind = last > seen;
              if (behind && stalledAt === seen) {
                stalledAt = -1;
                current?.stop();
                await resync(last);
              } else stalledAt = behind ? seen : -1;
            })()
              .catch(() => {}) // the cluster is settling: try again next time
              .finally(() => (checking = false));
          }, WATCHDOG_MS)
        : null;
    watchdog?.unref();
    void (async () => {
      let msgs = first;
      // The ordered consumer can give up when the cluster loses the bucket's leader (seen in the
      // failover test: a collector's view then stayed stale for good): open it again.
      while (!stopped) {
        try {
          for await (const m of msgs) {
            if (m.seq <= lastSeq) continue;
            lastSeq = m.seq;
            onEntry(entryOf(m.subject.slice(this.prefix.length), m, m.headers));
            if (m.info.pending === 0) markReady();
          }
        } catch {
          // reopened below
        }
        while (!stopped) {
          await new Promise((r) => setTimeout(r, 500));
          try {
            msgs = await open();
            break;
          } catch {
            // the cluster is still settling
          }
        }
      }
    })().catch(() => {});
    return {
      stop: () => {
        stopped = true;
        if (watchdog) clearInterval(watchdog);
        current?.stop();
      },
      ready,
    };
  }
}
