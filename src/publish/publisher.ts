/**
 * Publishes spooled messages to JetStream, in order, with a bounded window in flight and a
 * message id per batch (so re-sends after an outage or a crash are de-duplicated by the
 * server). The NATS client keeps nothing across a disconnect, so the spool is the only queue:
 * a message leaves it only when JetStream has acknowledged it.
 */
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { EnvironmentError } from '../common/errors.js';
import { natsConnectOptions, type ConnectionSettings } from './connection.js';
import type { Spool } from './spool.js';
import { ensureAgentStream, StreamMissingError } from './streams.js';
import { STREAM, STREAM_SUBJECTS } from './subjects.js';

export interface PublisherOptions {
  connection: ConnectionSettings;
  spool: Spool;
  /** JetStream stream capturing tcpdwell.v1.> (created if missing) */
  stream?: string;
  /**
   * Create the stream when it is missing (default true). False (`tcpdwell run` without
   * --create-stream): a missing stream is waited for, spooling, and checked again every 2 s.
   */
  createStream?: boolean;
  /** stream retention when it creates it: max age in seconds (default 7 days) and max bytes (default 1 GiB) */
  streamMaxAgeS?: number;
  streamMaxBytes?: number;
  /** de-duplication window (default 10 min: longer than an outage we expect to ride out) */
  duplicateWindowS?: number;
  /** publishes awaiting their acknowledgement at once (default 64) */
  maxInFlight?: number;
  /**
   * Ping the server this often (default 20 s); two unanswered pings mark the connection dead
   * and start a reconnect. A link that dies silently (cable, veth, firewall dropping packets)
   * sends no RST: without pings the client would sit on the dead connection for the nats.js
   * default of 2 x 2 min, reporting itself connected.
   */
  pingIntervalMs?: number;
  /** progress and trouble, one line each (connected, unreachable, resumed ...) */
  log?: (line: string) => void;
}

export interface PublisherStats {
  /** connected and publishing */
  connected: boolean;
  /** connected, but the stream is missing and not ours to create: spooling until it appears */
  streamMissing: boolean;
  published: number;
  publishErrors: number;
  maxPayload: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Errors that retrying will not fix: wrong credentials, permissions, TLS. */
function fatalConnectError(err: unknown): string | null {
  const e = err as { message?: string; code?: string; cause?: { message?: string } };
  const text = `${e?.message ?? ''} ${e?.code ?? ''} ${e?.cause?.message ?? ''}`;
  if (/authoriz|authenticat|user.*password|permission/i.test(text)) return `NATS refused our credentials: ${e.message}`;
  if (/tls|certificate|self.signed|ssl/i.test(text)) return `TLS with NATS failed: ${e.message}`;
  return null;
}

export class Publisher {
  private nc: NatsConnection | null = null;
  private js: JetStreamClient | null = null;
  private stopped = false;
  private wake: () => void = () => {};
  private loop: Promise<void> | null = null;
  private readonly stats_: PublisherStats = { connected: false, streamMissing: false, published: 0, publishErrors: 0, maxPayload: 1 << 20 };
  private readonly log: (line: string) => void;
  private readonly stream: string;
  /** the last failure to look up the stream, said once */
  private attachError = '';

  private constructor(private readonly opts: PublisherOptions) {
    this.log = opts.log ?? (() => {});
    this.stream = opts.stream ?? STREAM;
  }

  /**
   * Starts publishing. Resolves once the first connection attempt has settled: connected, or
   * unreachable (then it keeps trying in the background while the spool fills). Wrong
   * credentials or a TLS failure reject with one clear EnvironmentError.
   */
  static async start(opts: PublisherOptions): Promise<Publisher> {
    const p = new Publisher(opts);
    await p.connectOnce(true);
    p.loop = p.run();
    return p;
  }

  /** The connection, once there is one (for the control service). */
  get connection(): NatsConnection | null {
    return this.nc;
  }

  /** The largest payload the server takes (from its INFO), for splitting batches. */
  get maxPayload(): number {
    return this.stats_.maxPayload;
  }

  stats(): PublisherStats {
    return { ...this.stats_ };
  }

  /** New messages are in the spool: send them. */
  kick(): void {
    this.wake();
  }

  private async connectOnce(first: boolean): Promise<boolean> {
    const servers = this.opts.connection.servers.join(',');
    try {
      const nc = await connect({ ...natsConnectOptions(this.opts.connection), maxReconnectAttempts: -1, reconnectTimeWait: 1000, pingInterval: this.opts.pingIntervalMs ?? 20_000, maxPingOut: 2 });
      this.nc = nc;
      this.stats_.maxPayload = nc.info?.max_payload ?? this.stats_.maxPayload;
      void this.watch(nc);
      return await this.attachStream(nc);
    } catch (err) {
      if (err instanceof EnvironmentError) throw err;
      const fatal = fatalConnectError(err);
      if (fatal) throw new EnvironmentError(`${fatal} (servers ${servers})`, { cause: err });
      if (first) {
        this.log(`NATS unreachable at ${servers} (${(err as Error).message}): spooling to ${this.opts.spool.dir} and retrying`);
      }
      return false;
    }
  }

  /**
   * Publishing starts once the stream is there: made here when missing (createStream), else
   * waited for — connected meanwhile (the control service answers), spooling, and checked again
   * by the run loop; said once.
   */
  private async attachStream(nc: NatsConnection): Promise<boolean> {
    try {
      await this.ensureStream(nc);
    } catch (err) {
      if (!(err instanceof StreamMissingError)) throw err;
      if (!this.stats_.streamMissing) this.log(`${err.message}; spooling to ${this.opts.spool.dir} meanwhile`);
      this.stats_.streamMissing = true;
      return false;
    }
    this.stats_.streamMissing = false;
    this.js = jetstream(nc);
    this.stats_.connected = true;
    this.log(`connected to NATS at ${this.opts.connection.servers.join(',')}`);
    return true;
  }

  private async ensureStream(nc: NatsConnection): Promise<void> {
    const created = await ensureAgentStream(await jetstreamManager(nc), {
      name: this.stream,
      create: this.opts.createStream,
      maxAgeS: this.opts.streamMaxAgeS,
      maxBytes: this.opts.streamMaxBytes,
      duplicateWindowS: this.opts.duplicateWindowS,
    });
    if (created) this.log(`created JetStream stream ${this.stream} for ${STREAM_SUBJECTS}`);
  }

  private async watch(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        if (this.stats_.connected) this.log('NATS connection lost: spooling until it is back');
        this.stats_.connected = false;
      } else if (s.type === 'reconnect' && this.js) {
        this.stats_.connected = true;
        this.log('NATS connection back: re-sending the spool');
        this.wake();
      }
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      if (!this.nc) {
        if (!(await this.connectOnce(false).catch((e) => (this.log(`tcpdwell: ${(e as Error).message}`), false)))) {
          await this.idle(2000);
          continue;
        }
      } else if (!this.js) {
        // Connected, but the stream was missing (or JetStream did not answer): look again.
        const attached = await this.attachStream(this.nc).catch((e: Error) => {
          if (e.message !== this.attachError) this.log(`JetStream stream ${this.stream}: ${e.message}: retrying`);
          this.attachError = e.message;
          return false;
        });
        if (!attached) {
          await this.idle(2000);
          continue;
        }
      }
      if (!this.stats_.connected || this.opts.spool.pending().length === 0) {
        await this.idle(this.stats_.connected ? 1000 : 250);
        continue;
      }
      await this.sendPending();
    }
  }

  private idle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /**
   * Sends what is pending, oldest first, with a window in flight, until nothing is pending and
   * nothing is in flight; stops at the first failure. Messages spooled meanwhile go out at once
   * (kick() wakes the wait), not after the window drains.
   */
  private async sendPending(): Promise<void> {
    const spool = this.opts.spool;
    const window = this.opts.maxInFlight ?? 64;
    const inFlight = new Map<string, Promise<void>>();
    /** keys in flight, and keys whose file was gone (dropped by the bound meanwhile) */
    const skip = new Set<string>();
    let failed = false;
    while (!failed && !this.stopped && this.stats_.connected) {
      const key = inFlight.size < window ? spool.firstPendingExcept(skip) : undefined;
      if (key === undefined) {
        if (inFlight.size === 0) break;
        // An ack frees a slot; a kick brings a new message.
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          void Promise.race(inFlight.values()).then(resolve);
        });
        continue;
      }
      skip.add(key);
      const m = spool.read(key);
      if (!m) continue;
      const p = this.js!.publish(m.subject, m.payload, { msgID: m.msgId, timeout: 5000 }).then(
        () => {
          spool.ack(key);
          this.stats_.published++;
        },
        (err: Error) => {
          this.stats_.publishErrors++;
          if (!failed) this.log(`publish of ${m.msgId} failed (${err.message}): will re-send`);
          failed = true;
        },
      );
      inFlight.set(
        key,
        p.finally(() => {
          inFlight.delete(key);
          skip.delete(key);
        }),
      );
    }
    await Promise.all(inFlight.values());
    if (failed) await sleep(500);
  }

  /**
   * Sends what is still spooled (up to timeoutMs), then closes the connection. What is left
   * stays in the spool for the next start. A connection that is being re-established (a
   * server of the cluster went away a moment ago) is waited for within the same timeout; a
   * server that was never reached is not.
   */
  async close(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.nc && !this.nc.isClosed() && this.opts.spool.pending().length > 0 && Date.now() < deadline) {
      this.wake();
      await sleep(20);
    }
    this.stopped = true;
    this.wake();
    await this.loop?.catch(() => {});
    await this.nc?.drain().catch(() => this.nc?.close());
  }
}
