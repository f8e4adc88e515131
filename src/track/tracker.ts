/**
 * The tracker: decoded events in; dwell records, the live socket table, stuck sockets, dwell
 * histograms and alerts out. Pure: no I/O, no timers — time comes from the injected clock
 * (boot-time ns, the kernel's timebase) and sysctls from injected readers.
 *
 * Exactness comes from the kernel, not from here: every transition carries the time its
 * socket entered the state it leaves (socket storage), so a dwell is exact even if user space
 * dropped events in between. What the tracker keeps per socket serves the live table, stuck
 * sockets and lower bounds only. The table heals itself: a transition whose old state
 * disagrees with it is taken as the truth (and counted), and `seed` with a fresh snapshot
 * reconciles a namespace completely.
 */
import { decodeEvent, errnoName, RECORD_INDEX, RecordEvent, resetBy, type RecordView, type SockFile, type TcpEvent } from '../decode/index.js';
import { EventFlags, EventType, RstDirection, TwReason } from '../kernel/abi.js';
import type { SysctlReaders } from '../kernel/sysctl.js';
import { Detectors, resolveThresholds, type Alert, type DetectorThresholds } from './detectors/index.js';
import { HistogramSet } from './histograms.js';
import { cookieKey, LiveTable, SlotFlag, type CookieKey } from './live-table.js';
import { S, STATE_SLOTS, stateName, stateValue } from './states.js';
import type { DwellPrecision, DwellRecord, ListenerPoll, LiveTableSnapshot, SocketIdentity, StuckSocket, TrackerStats } from './types.js';

/**
 * TCP_TIMEWAIT_LEN (include/net/tcp.h): 60 s, not tunable. The peer's FIN re-arms an orphaned
 * FIN_WAIT2 timewait to now + this (tcp_timewait_state_process), which dates the flip.
 */
export const TIMEWAIT_LEN_NS = 60_000_000_000n;
/** How far a timer's due time may be from the exact 60 s (jiffy rounding, both ends): 25 ms covers HZ=100. */
const FLIP_TOLERANCE_NS = 25_000_000n;
/**
 * A request sock (half-open connection) seen in a snapshot ends without any event: when its
 * handshake completes (then its child's LISTEN→SYN_RECV removes it) or when the SYN-ACK
 * retries run out (tcp_synack_retries 5: about 63 s). Default time after which it is dropped.
 */
export const REQUEST_SOCK_TIMEOUT_NS = 75_000_000_000n;
/**
 * A timewait sock's timer runs at most TIMEWAIT_LEN from when it was last armed (start or
 * flip; tcp_fin_timeout above 60 s goes to the keepalive timer first), and the timer wheel
 * fires it up to one bucket late (60 s sits in a bucket of 2.048 s at HZ=250, 5.12 s at
 * HZ=100). A timewait this far past that with no end event has ended unseen: measured by
 * make soak, the end events of about a thousand timewaits expiring together went missing now
 * and then (uncounted by the kernel's counters; cause not found, see BENCHMARKS.md), and ss
 * no longer listed them. Default grace past TIMEWAIT_LEN after which such a timewait leaves the table.
 */
export const TIMEWAIT_GRACE_NS = 8_000_000_000n;

/**
 * A dwell record as numbers, for `DwellRowSink` (the record's socket is told apart). Times are
 * boot-time ns, exact (the fast path takes only records whose values are below 2^53).
 */
export interface DwellRow {
  state: number;
  timewait: boolean;
  /** NaN: unknown (DwellRecord.enteredNs null); may be negative (an estimated flip before ts 60 s) */
  enteredNs: number;
  leftNs: number;
  /** DwellRecord.dwellNs */
  dwellNs: number;
  precision: DwellPrecision;
  /** the state value entered next; −1: none (null) */
  nextState: number;
  /** 0 none, TwReason.EXPIRED, TwReason.KILLED */
  timewaitEnd: number;
  /** positive errno, 0 none */
  errno: number;
  /** the row of the state left at the socket's X→CLOSE: the fields below are its vital signs (DwellRecord.vitals); else they are 0 */
  closing: boolean;
  srttUs: number;
  totalRetrans: number;
  bytesAcked: number;
  bytesReceived: number;
  /** DwellRecord.resetBy: 0 none, RstDirection.SENT, RstDirection.RECEIVED */
  reset: number;
}

/**
 * Where dwell records go without becoming objects (the agent: straight into protobuf columns).
 * Each call describes one DwellRecord, exactly: the socket is the kernel record at v/off, or a
 * slot of the live table, or (from the object path) the record itself.
 */
export interface DwellRowSink {
  fromRecord(v: RecordView, off: number, row: Readonly<DwellRow>): void;
  fromSlot(table: LiveTable, slot: number, row: Readonly<DwellRow>): void;
  fromObject(record: DwellRecord): void;
}

export interface TrackerOptions {
  /** boot-time ns now (CLOCK_BOOTTIME, the timebase of TcpEvent.tsNs) */
  clock: () => bigint;
  /** called for every dwell record, in event order */
  onDwell?: (record: DwellRecord) => void;
  /**
   * every dwell record, in event order, as a row (no object per record on `ingestRecord`'s path);
   * onDwell, when given too, gets each as a DwellRecord as well
   */
  dwellRows?: DwellRowSink;
  /** detector thresholds over DEFAULT_THRESHOLDS; a bad one throws UsageError */
  thresholds?: Partial<DetectorThresholds>;
  /** readers of per-namespace sysctls for the TIME_WAIT detector */
  sysctls?: SysctlReaders;
  /** cap on the number of histograms per interval (default 4096) */
  maxHistograms?: number;
  /** cap on keys per windowed detector input (destinations, listeners; default 10 000) */
  maxDetectorKeys?: number;
  /** see REQUEST_SOCK_TIMEOUT_NS */
  requestSockTimeoutNs?: bigint;
  /** how many closed sockets to remember, to recognise late and duplicate events (default 16 384) */
  rememberClosed?: number;
  /** see TIMEWAIT_GRACE_NS */
  timewaitGraceNs?: bigint;
}

/** Options of `Tracker.stuck`. */
export interface StuckOptions {
  /** how many of the oldest sockets per state (default 5) */
  perState?: number;
  /** only these states (kernel names); default all. Timewait socks count under TIME_WAIT / FIN_WAIT2. */
  states?: readonly string[];
}

const { TIMEWAIT, ENTERED_EXACT, TW_FROM_FIN_WAIT2, ACCEPTED, REQUEST, FLIPPED } = SlotFlag;

type Counters = Omit<TrackerStats, 'histogramsDropped' | 'detectorKeysDropped' | 'alertsFired' | 'liveSockets'>;

/** Turns TcpEvents into dwell records, the live table, stuck sockets, histograms and alerts. */
export class Tracker {
  private readonly clock: () => bigint;
  private readonly onDwell: ((r: DwellRecord) => void) | undefined;
  private readonly rows: DwellRowSink | undefined;
  /** the fast path's dwell row (one, reused) and its view of a record as a TcpEvent, for the detectors */
  private readonly row: DwellRow = { state: 0, timewait: false, enteredNs: NaN, leftNs: 0, dwellNs: 0, precision: 'exact', nextState: -1, timewaitEnd: 0, errno: 0, closing: false, srttUs: 0, totalRetrans: 0, bytesAcked: 0, bytesReceived: 0, reset: 0 };
  private readonly flyweight = new RecordEvent();
  /** seededAt of the namespace of the last record (a Map lookup per record otherwise) */
  private seededNetns = -1;
  private seededNs = -Infinity;
  private readonly live = new LiveTable();
  /**
   * Recently closed sockets (cookie → close time), in two generations: a new one starts when
   * the current one is half of rememberClosed, and the one before it is dropped. Cheaper than
   * evicting the oldest key per close (an iterator per event), and as bounded.
   */
  private closed = new Map<CookieKey, number>();
  private closedBefore = new Map<CookieKey, number>();
  private readonly rememberClosed: number;
  private readonly seededAt = new Map<number, number>();
  private readonly requests = new Map<string, { key: CookieKey; seenNs: number }>();
  /** half-open connections per namespace, as the kernel counted them at the last listener poll */
  private polledRequests = new Map<number, number>();
  /**
   * Timewait socks still in substate FIN_WAIT2 (orphaned closes), by 4-tuple: the peer's FIN
   * flips them to TIME_WAIT, and when the timer's new due time falls in the same timer-wheel
   * bucket the kernel re-arms it without any tracepoint (mod_timer's same-bucket shortcut), so
   * no flip event comes. A peer on this host shows its FIN as CLOSE_WAIT→LAST_ACK: that flips
   * its counterpart here (measured by make soak: without it, ~20 of 56k loopback timewaits
   * stayed FIN_WAIT2 in the table while ss showed TIME-WAIT).
   */
  private readonly orphans = new Map<string, CookieKey>();
  private readonly requestTimeoutNs: number;
  private readonly timewaitMaxNs: number;
  private readonly maxHistograms: number;
  private hist: HistogramSet;
  private histogramsDropped = 0;
  private readonly detectors: Detectors;
  private thresholds: DetectorThresholds;
  private readonly s: Counters = {
    events: 0,
    transitions: 0,
    timewaitStarts: 0,
    timewaitEnds: 0,
    snapshotSockets: 0,
    dwellRecords: 0,
    lowerBoundRecords: 0,
    estimatedRecords: 0,
    unknownSockets: 0,
    corrections: 0,
    duplicates: 0,
    late: 0,
    noCookie: 0,
    healedAdded: 0,
    healedRemoved: 0,
    healedCorrected: 0,
    requestSocksExpired: 0,
    timewaitFlips: 0,
    timewaitsOverdue: 0,
    resets: 0,
    accepts: 0,
    sameStateTransitions: 0,
  };

  constructor(opts: TrackerOptions) {
    const thresholds = resolveThresholds(opts.thresholds);
    this.thresholds = thresholds;
    this.clock = opts.clock;
    this.onDwell = opts.onDwell;
    this.rows = opts.dwellRows;
    this.maxHistograms = opts.maxHistograms ?? 4096;
    this.hist = new HistogramSet(this.maxHistograms);
    this.detectors = new Detectors(thresholds, opts.sysctls ?? {}, opts.maxDetectorKeys ?? 10_000);
    this.requestTimeoutNs = Number(opts.requestSockTimeoutNs ?? REQUEST_SOCK_TIMEOUT_NS);
    this.rememberClosed = opts.rememberClosed ?? 16_384;
    this.timewaitMaxNs = Number(TIMEWAIT_LEN_NS + (opts.timewaitGraceNs ?? TIMEWAIT_GRACE_NS));
  }

  /**
   * Takes one batch of events, in ring order. Snapshot events are added to the table (use
   * `seed` for a complete snapshot of a namespace, which also removes what is gone).
   */
  ingest(events: Iterable<TcpEvent>): void {
    for (const e of events) this.ingestOne(e);
  }

  private ingestOne(e: TcpEvent): void {
    this.s.events++;
    switch (e.type) {
      case 'transition':
        this.transition(e);
        break;
      case 'timewait_start':
        this.timewaitStart(e);
        break;
      case 'timewait_end':
        this.timewaitEnd(e);
        break;
      case 'snapshot':
        this.seedOne(e, false);
        break;
      case 'reset':
        this.s.resets++;
        this.detectors.reset(e);
        break;
      case 'accept':
        this.accepted(e);
        break;
    }
  }

  /**
   * The agent's hot path: one kernel record, read in place (a record forEachRingRecord
   * accepted), with the same effect as `ingest([decodeEvent(record)])` — the same table,
   * counters, histograms, alerts and dwell records (test/unit/track-fast-path.test.ts) — but
   * no TcpEvent, BigInt or DwellRecord per event. What it does not handle itself (snapshots,
   * cookie 0, values past 2^53, request socks from a snapshot) goes the object path.
   */
  ingestRecord(v: RecordView, off: number): void {
    const type = v.type(off);
    if (v.fits53(off) && v.cookie(off) !== 0) {
      if (type === EventType.TRANSITION) {
        if (!(v.flags(off) & EventFlags.CHILD) || this.requests.size === 0) {
          this.s.events++;
          this.fastTransition(v, off);
          return;
        }
      } else if (type === EventType.TIMEWAIT_START) {
        this.s.events++;
        this.fastTimewaitStart(v, off);
        return;
      } else if (type === EventType.TIMEWAIT_END) {
        this.s.events++;
        this.fastTimewaitEnd(v, off);
        return;
      } else if (type === EventType.RESET) {
        this.s.events++;
        this.s.resets++;
        this.detectors.reset(this.flyweight.at(v, off));
        return;
      } else if (type === EventType.ACCEPT) {
        this.s.events++;
        this.fastAccepted(v, off);
        return;
      }
    }
    const e = decodeEvent(v.buf, off);
    if (e) this.ingestOne(e);
  }

  /**
   * Seeds (or re-seeds) one network namespace from a complete snapshot of it (the iterator's
   * records; an empty list for an empty namespace). Sockets the table holds in that namespace
   * but the snapshot lacks are removed, wrong states corrected, missing sockets added — each
   * counted as healing when the namespace was seeded before. Events older than the snapshot
   * that arrive afterwards no longer change the table. Call it right after taking the
   * snapshot, before ingesting further ring batches.
   */
  seed(netns: number, snapshot: readonly TcpEvent[]): void {
    let first = Number(this.clock());
    for (const e of snapshot) first = Math.min(first, Number(e.tsNs));
    const reseed = this.seededAt.has(netns);
    this.seededAt.set(netns, Math.max(first, this.seededAt.get(netns) ?? -Infinity));
    this.seededNetns = -1;
    const present = new Set<CookieKey>();
    for (const e of snapshot) {
      if (e.type !== 'snapshot' || e.netns !== netns) continue;
      present.add(cookieKey(e.cookie));
      this.seedOne(e, reseed);
    }
    this.live.forEach((slot, key) => {
      // Sockets that appeared after the walk began are newer than the snapshot: keep them.
      if (this.live.netnsOf(slot) !== netns || present.has(key) || this.live.entered(slot) > first) return;
      this.s.healedRemoved++;
      this.removeSlot(key, slot);
    });
  }

  /**
   * What the kernel says about its listeners now (the dump_listeners walk and the namespaces'
   * netstat counters): fed to the detectors, and the half-open connections it counts (request
   * socks, which no event shows) replace those of the last snapshot in table().
   */
  observeListeners(poll: ListenerPoll): void {
    this.detectors.listeners(poll);
    const counted = new Set<bigint>();
    this.polledRequests = new Map();
    for (const f of poll.listeners) {
      if (!f.listener || counted.has(f.cookie)) continue;
      counted.add(f.cookie);
      this.polledRequests.set(f.netns, (this.polledRequests.get(f.netns) ?? 0) + f.listener.requestSocks);
    }
  }

  /**
   * Who holds each socket's file, as the dump_files walk found them (one record per holder, in
   * pid order): the first holder becomes the owner of a socket the table has.
   */
  observeHolders(files: readonly SockFile[]): void {
    const seen = new Set<bigint>();
    for (const f of files) {
      if (seen.has(f.cookie)) continue;
      seen.add(f.cookie);
      const slot = this.live.find(cookieKey(f.cookie));
      if (slot >= 0) this.live.setOwner(slot, f.pid, f.comm);
    }
  }

  /** The live table now: counts per state, per namespace and in total. */
  table(): LiveTableSnapshot {
    const atNs = this.clock();
    this.expireRequests(Number(atNs));
    this.expireTimewaits(Number(atNs));
    const byNetns = [...this.live.perNetns].map(([netns, counts]) => ({ netns, counts: LiveTable.named(counts) }));
    const total = LiveTable.named(this.live.total);
    let sockets = this.live.size;
    for (const [netns, n] of this.polledRequests) {
      let row = byNetns.find((r) => r.netns === netns);
      const had = row?.counts.NEW_SYN_RECV ?? 0;
      if (n === had) continue;
      if (!row) byNetns.push((row = { netns, counts: {} }));
      if (n > 0) row.counts.NEW_SYN_RECV = n;
      else delete row.counts.NEW_SYN_RECV;
      const all = (total.NEW_SYN_RECV ?? 0) + n - had;
      if (all > 0) total.NEW_SYN_RECV = all;
      else delete total.NEW_SYN_RECV;
      sockets += n - had;
    }
    return { atNs, total, byNetns: byNetns.filter((r) => Object.keys(r.counts).length > 0).sort((a, b) => a.netns - b.netns), sockets };
  }

  /** Live sockets per cgroup (the socket's container) and state, as `ss` counts them: one pass over the table. */
  byCgroup(): Map<number, Record<string, number>> {
    const counts = new Map<number, Int32Array>();
    this.live.scan((slot, state) => {
      const id = this.live.cgroupOf(slot);
      let c = counts.get(id);
      if (!c) counts.set(id, (c = new Int32Array(STATE_SLOTS)));
      c[state]!++;
    });
    return new Map([...counts].map(([id, c]) => [id, LiveTable.named(c)]));
  }

  /** The oldest sockets still in each state, oldest first within a state (one pass over the table). */
  stuck(opts: StuckOptions = {}): StuckSocket[] {
    const k = opts.perState ?? 5;
    const wanted = opts.states ? new Set(opts.states.map(stateValue)) : null;
    const now = Number(this.clock());
    this.expireTimewaits(now);
    const top = new Map<number, { slot: number; entered: number }[]>();
    this.live.scan((slot, state) => {
      if (wanted && !wanted.has(state)) return;
      const entered = this.live.entered(slot);
      let list = top.get(state);
      if (!list) top.set(state, (list = []));
      if (list.length === k && entered >= list[k - 1]!.entered) return;
      let i = list.length;
      while (i > 0 && list[i - 1]!.entered > entered) i--;
      list.splice(i, 0, { slot, entered });
      if (list.length > k) list.pop();
    });
    const out: StuckSocket[] = [];
    for (const state of [...top.keys()].sort((a, b) => a - b)) {
      for (const { slot, entered } of top.get(state)!) {
        const flags = this.live.flagsOf(slot);
        out.push({
          ...this.live.identity(slot),
          state: stateName(state),
          timewait: (flags & TIMEWAIT) !== 0,
          ageNs: BigInt(Math.max(0, Math.round(now - entered))),
          ageIsLowerBound: (flags & ENTERED_EXACT) === 0,
        });
      }
    }
    return out;
  }

  /**
   * The dwell histograms recorded since the last call (exact and estimated dwells only), and
   * a fresh set for the next interval. Merge intervals with `HistogramSet.merge`.
   */
  takeHistograms(): HistogramSet {
    const h = this.hist;
    this.histogramsDropped += h.dropped;
    this.hist = new HistogramSet(this.maxHistograms);
    return h;
  }

  /**
   * Changes detector thresholds at run time (the control service's `config`). A bad value throws
   * UsageError and changes nothing. A new window starts the windowed counts afresh.
   */
  setThresholds(over: Partial<DetectorThresholds>): DetectorThresholds {
    const t = resolveThresholds({ ...this.thresholds, ...over });
    this.detectors.setThresholds(t);
    this.thresholds = t;
    return t;
  }

  /** Runs the detectors at the clock's now; returns the alerts firing now. */
  evaluate(): Alert[] {
    const now = this.clock();
    this.expireRequests(Number(now));
    this.expireTimewaits(Number(now));
    return this.detectors.evaluate(this.live, now);
  }

  /** Counters of what was seen, corrected and dropped. */
  stats(): TrackerStats {
    return {
      ...this.s,
      histogramsDropped: this.histogramsDropped + this.hist.dropped,
      detectorKeysDropped: this.detectors.dropped,
      alertsFired: this.detectors.fired,
      liveSockets: this.live.size,
    };
  }

  // ---- events ----------------------------------------------------------------------------

  private transition(e: TcpEvent): void {
    this.s.transitions++;
    const oldV = stateValue(e.oldState);
    const newV = stateValue(e.newState);
    if (oldV === newV && oldV !== 0) {
      this.sameState(e, oldV);
      return;
    }
    const ts = Number(e.tsNs);
    let twSubstate = 0;
    let since = NaN;
    let accepted = false;
    if (e.cookie === 0n) this.s.noCookie++;
    else {
      const key = cookieKey(e.cookie);
      const slot = this.live.find(key);
      if (slot >= 0) {
        const flags = this.live.flagsOf(slot);
        accepted = (flags & ACCEPTED) !== 0;
        if (flags & TIMEWAIT) twSubstate = this.live.state(slot);
        else if (this.live.state(slot) === oldV) since = this.live.entered(slot);
      }
      if (this.applyTransition(e, key, slot, oldV, newV, ts)) return; // a replay: counted, dropped
    }

    if (oldV === S.CLOSE_WAIT && newV === S.LAST_ACK && this.orphans.size > 0) this.peerFin(e);

    this.detectors.transition(e, oldV, newV, twSubstate !== 0);

    // A socket's CLOSE before its first use, and the LISTEN a child inherits from its
    // listener, are not states it dwelt in.
    if (oldV === S.CLOSE || (e.child && oldV === S.LISTEN)) return;
    let enteredNs = e.enteredNs;
    let precision: DwellPrecision = 'exact';
    if (enteredNs === null) {
      precision = 'lower-bound';
      enteredNs = Number.isNaN(since) ? null : BigInt(since);
    }
    this.emit(e, oldV, false, enteredNs, e.tsNs, precision, twSubstate && newV === S.CLOSE ? stateName(twSubstate) : e.newState, null, e.error, accepted ? e.sport : null);
  }

  /** Applies a transition to the table; true when the event is a duplicate or late (drop it). */
  private applyTransition(e: TcpEvent, key: CookieKey, slot: number, oldV: number, newV: number, ts: number): boolean {
    // The namespace was seeded from a snapshot taken after this event: it is already reflected.
    if (ts < (this.seededAt.get(e.netns) ?? -Infinity)) return false;
    // Only a socket not in the table can have closed before (two Map lookups, so only then).
    const closedAt = slot < 0 ? this.closedAt(key) : undefined;
    if (newV === S.CLOSE) {
      if (slot < 0) {
        if (closedAt !== undefined && ts <= closedAt) return this.lateOrDuplicate(ts === closedAt);
        this.s.unknownSockets++;
        this.markClosed(key, ts);
        return false;
      }
      const flags = this.live.flagsOf(slot);
      if (flags & TIMEWAIT) return false; // handed to its timewait sock, which ends with timewait_end
      if (ts < this.live.entered(slot)) return this.lateOrDuplicate(false);
      if (this.live.state(slot) !== oldV) this.s.corrections++;
      this.removeSlot(key, slot);
      this.markClosed(key, ts);
      return false;
    }
    if (newV === 0) return false; // a state value beyond what the table holds: nothing to count it as
    if (slot < 0) {
      if (closedAt !== undefined) {
        if (ts <= closedAt) return this.lateOrDuplicate(ts === closedAt);
        this.closed.delete(key); // used again after a close (connect after a failed connect)
        this.closedBefore.delete(key);
      }
      const fresh = oldV === S.CLOSE || (e.child && oldV === S.LISTEN);
      if (!fresh) this.s.unknownSockets++;
      if (e.child) this.completeRequest(e);
      this.live.add(key, e.cookie, newV, ENTERED_EXACT | (e.child ? ACCEPTED : 0), ts, e);
      return false;
    }
    const flags = this.live.flagsOf(slot);
    const entered = this.live.entered(slot);
    if (flags & TIMEWAIT || ts < entered) return this.lateOrDuplicate(false);
    if (ts === entered && this.live.state(slot) === newV) return this.lateOrDuplicate(true);
    if (this.live.state(slot) !== oldV) this.s.corrections++;
    this.live.move(slot, newV, (flags & ~(REQUEST | TW_FROM_FIN_WAIT2)) | ENTERED_EXACT, ts);
    this.live.refresh(slot, e);
    return false;
  }

  private timewaitStart(e: TcpEvent): void {
    this.s.timewaitStarts++;
    if (e.cookie === 0n) {
      this.s.noCookie++;
      return;
    }
    const ts = Number(e.tsNs);
    if (ts < (this.seededAt.get(e.netns) ?? -Infinity)) return;
    const key = cookieKey(e.cookie);
    const sub = stateValue(e.substate) || S.TIME_WAIT;
    const flags = TIMEWAIT | ENTERED_EXACT | (sub === S.FIN_WAIT2 ? TW_FROM_FIN_WAIT2 : 0);
    const slot = this.live.find(key);
    if (e.flip) {
      this.timewaitFlip(e, key, slot, ts);
      return;
    }
    if (slot >= 0) {
      const old = this.live.flagsOf(slot);
      const entered = this.live.entered(slot);
      if (old & TIMEWAIT || ts < entered) {
        this.lateOrDuplicate(old & TIMEWAIT && ts === entered ? true : false);
        return;
      }
      this.live.move(slot, sub, flags | (old & ACCEPTED), ts);
      this.live.refresh(slot, e);
      if (sub === S.FIN_WAIT2) this.orphans.set(tuple(e), key);
      return;
    }
    const closedAt = this.closedAt(key);
    if (closedAt !== undefined && ts <= closedAt) {
      this.lateOrDuplicate(false);
      return;
    }
    this.s.unknownSockets++;
    this.live.add(key, e.cookie, sub, flags, ts, e);
    if (sub === S.FIN_WAIT2) this.orphans.set(tuple(e), key);
  }

  /** A local peer sent its FIN (CLOSE_WAIT→LAST_ACK): its orphaned counterpart here flips to TIME_WAIT. */
  private peerFin(e: TcpEvent): void {
    const t = `${e.netns}|${e.daddr}|${e.dport}|${e.saddr}|${e.sport}`;
    const key = this.orphans.get(t);
    if (key === undefined) return;
    this.orphans.delete(t);
    const slot = this.live.find(key);
    if (slot < 0) return;
    const flags = this.live.flagsOf(slot);
    const entered = this.live.entered(slot);
    if (!(flags & TIMEWAIT) || this.live.state(slot) !== S.FIN_WAIT2 || Number(e.tsNs) < entered) return;
    const who = this.live.identity(slot);
    this.live.move(slot, S.TIME_WAIT, TIMEWAIT | ENTERED_EXACT | FLIPPED | (flags & ACCEPTED), Number(e.tsNs));
    this.s.timewaitFlips++;
    // Placed at the peer's FIN leaving (on this host: microseconds before it arrives).
    this.emit(who, S.FIN_WAIT2, true, flags & ENTERED_EXACT ? BigInt(entered) : null, e.tsNs, flags & ENTERED_EXACT ? 'estimated' : 'lower-bound', 'TIME_WAIT', null, null, flags & ACCEPTED ? who.sport : null);
  }

  /**
   * A running timewait flipped from FIN_WAIT2 to TIME_WAIT (the peer's FIN to an orphan): the
   * FIN_WAIT2 phase ends here, exactly (the kernel gives the timewait's start), and the table
   * shows TIME_WAIT from now on, as ss does.
   */
  private timewaitFlip(e: TcpEvent, key: CookieKey, slot: number, ts: number): void {
    let accepted = false;
    this.orphans.delete(tuple(e));
    if (slot >= 0) {
      const old = this.live.flagsOf(slot);
      // Already flipped by its local peer's FIN (which comes first in the ring): nothing new.
      if (old & FLIPPED && ts !== this.live.entered(slot)) return;
      if (old & FLIPPED || this.live.state(slot) === S.TIME_WAIT || ts < this.live.entered(slot)) {
        this.lateOrDuplicate(old & FLIPPED && ts === this.live.entered(slot) ? true : false);
        return;
      }
      accepted = (old & ACCEPTED) !== 0;
      if (!(old & TIMEWAIT)) this.s.corrections++; // its start was lost
      this.live.move(slot, S.TIME_WAIT, TIMEWAIT | ENTERED_EXACT | FLIPPED | (old & ACCEPTED), ts);
      this.live.refresh(slot, e);
    } else {
      const closedAt = this.closedAt(key);
      if (closedAt !== undefined && ts <= closedAt) {
        this.lateOrDuplicate(false);
        return;
      }
      this.s.unknownSockets++;
      this.live.add(key, e.cookie, S.TIME_WAIT, TIMEWAIT | ENTERED_EXACT | FLIPPED, ts, e);
    }
    this.s.timewaitFlips++;
    const exact = e.enteredNs !== null;
    this.emit(e, S.FIN_WAIT2, true, e.enteredNs, e.tsNs, exact ? 'exact' : 'lower-bound', 'TIME_WAIT', null, null, accepted ? e.sport : null);
  }

  private timewaitEnd(e: TcpEvent): void {
    const endReason = e.reason === 'expired' || e.reason === 'killed' ? e.reason : null;
    this.s.timewaitEnds++;
    const ts = Number(e.tsNs);
    const endSub = stateValue(e.substate) || S.TIME_WAIT;
    let startSub = 0;
    let since: bigint | null = null;
    let accepted = false;
    let flipped = false;
    if (e.cookie === 0n) this.s.noCookie++;
    else {
      const key = cookieKey(e.cookie);
      const slot = this.live.find(key);
      if (slot >= 0) {
        const flags = this.live.flagsOf(slot);
        accepted = (flags & ACCEPTED) !== 0;
        if (flags & TIMEWAIT) {
          startSub = flags & TW_FROM_FIN_WAIT2 ? S.FIN_WAIT2 : S.TIME_WAIT;
          since = BigInt(this.live.entered(slot));
          flipped = (flags & FLIPPED) !== 0;
        }
        if (ts >= (this.seededAt.get(e.netns) ?? -Infinity)) {
          if (!(flags & TIMEWAIT)) this.s.corrections++; // its start was lost
          this.removeSlot(key, slot);
          this.markClosed(key, ts);
        }
      } else {
        const closedAt = this.closedAt(key);
        if (closedAt !== undefined && ts <= closedAt) {
          this.lateOrDuplicate(ts === closedAt);
          return;
        }
        this.s.unknownSockets++;
        this.markClosed(key, ts);
      }
    }

    // After a flip the FIN_WAIT2 phase is already out: the TIME_WAIT phase began at the flip
    // (the end event's enteredNs is the start of the whole timewait).
    const exact = flipped || e.enteredNs !== null;
    const start = flipped ? since : (e.enteredNs ?? since);
    const flipNs = e.expiresNs !== null ? e.expiresNs - TIMEWAIT_LEN_NS : null;
    // Without the start (lost, or before the agent), a due time more than 60 s after the start
    // shows that the timer was re-armed: it began as an orphaned FIN_WAIT2.
    if (!startSub) startSub = endSub === S.TIME_WAIT && exact && flipNs !== null && flipNs - e.enteredNs! > FLIP_TOLERANCE_NS ? S.FIN_WAIT2 : endSub;
    const listenPort = accepted ? e.sport : null;
    if (startSub === S.FIN_WAIT2 && endSub === S.TIME_WAIT) {
      if (flipNs !== null && flipNs <= e.tsNs && (start === null || flipNs >= start)) {
        this.emit(e, S.FIN_WAIT2, true, start, flipNs, exact ? 'estimated' : 'lower-bound', 'TIME_WAIT', null, null, listenPort);
        this.emit(e, S.TIME_WAIT, true, flipNs, e.tsNs, 'estimated', null, endReason, null, listenPort);
      } else {
        this.emit(e, S.FIN_WAIT2, true, start, e.tsNs, exact ? 'upper-bound' : 'lower-bound', 'TIME_WAIT', endReason, null, listenPort);
      }
      return;
    }
    this.emit(e, endSub, true, start, e.tsNs, exact ? 'exact' : 'lower-bound', null, endReason, null, listenPort);
  }

  /** One snapshot record into the table (added, or corrected when the table disagrees). */
  private seedOne(e: TcpEvent, healing: boolean): void {
    this.s.snapshotSockets++;
    if (e.cookie === 0n) {
      this.s.noCookie++;
      return;
    }
    const tw = e.newState === 'TIME_WAIT';
    const state = tw ? stateValue(e.substate) || S.TIME_WAIT : stateValue(e.newState);
    if (state === 0) return;
    const flags =
      (tw ? TIMEWAIT : 0) |
      (tw && state === S.FIN_WAIT2 ? TW_FROM_FIN_WAIT2 : 0) |
      (state === S.NEW_SYN_RECV ? REQUEST : 0) |
      (e.enteredNs !== null ? ENTERED_EXACT : 0);
    const ts = Number(e.tsNs);
    const entered = Number(e.enteredNs ?? e.tsNs);
    const key = cookieKey(e.cookie);
    const slot = this.live.find(key);
    if (slot < 0) {
      const closedAt = this.closedAt(key);
      if (closedAt !== undefined && closedAt >= ts) return; // closed after the walk saw it
      if (healing) this.s.healedAdded++;
      this.live.add(key, e.cookie, state, flags, entered, e);
      if (flags & REQUEST) this.requests.set(tuple(e), { key, seenNs: ts });
      if (tw && state === S.FIN_WAIT2) this.orphans.set(tuple(e), key);
      return;
    }
    const old = this.live.flagsOf(slot);
    if (this.live.state(slot) !== state || (old & TIMEWAIT) !== (flags & TIMEWAIT)) {
      if (this.live.entered(slot) > ts) return; // the table already has something newer
      this.s.healedCorrected++;
      this.live.move(slot, state, flags | (old & ACCEPTED), entered);
    } else if (!(old & ENTERED_EXACT) && e.enteredNs !== null) {
      this.live.move(slot, state, old | ENTERED_EXACT, entered);
    }
    this.live.refresh(slot, e);
  }

  /**
   * A same-state transition (FIN_WAIT1 → FIN_WAIT1: close() after shutdown(SHUT_WR) before the
   * FIN is acked; LAST_ACK, FIN_WAIT2 alike): the socket did not leave its state. No dwell
   * record, no histogram entry, and the table keeps the entry time (so does the kernel). Only
   * a table that lacks the socket or has it elsewhere (an event was lost) takes the kernel's word.
   */
  private sameState(e: TcpEvent, v: number): void {
    this.s.sameStateTransitions++;
    if (e.cookie === 0n) {
      this.s.noCookie++;
      return;
    }
    const key = cookieKey(e.cookie);
    const slot = this.live.find(key);
    if (slot >= 0 && this.live.state(slot) === v && !(this.live.flagsOf(slot) & TIMEWAIT)) this.live.refresh(slot, e);
    else this.applyTransition(e, key, slot, v, v, Number(e.tsNs));
  }

  /** accept() handed a socket to a process: from now on it is the owner. */
  private accepted(e: TcpEvent): void {
    this.s.accepts++;
    const slot = e.cookie === 0n ? -1 : this.live.find(cookieKey(e.cookie));
    if (slot >= 0) this.live.setOwner(slot, e.ownerPid, e.ownerComm);
  }

  // ---- helpers ---------------------------------------------------------------------------

  /**
   * Counts an event the table already reflects, or one older than what the table holds for its
   * socket. Both are dropped (no dwell record either): the ring keeps each socket's events in
   * order, so an older one is a replay, and emitting it would count a dwell twice.
   */
  private lateOrDuplicate(duplicate: boolean): true {
    if (duplicate) this.s.duplicates++;
    else this.s.late++;
    return true;
  }

  private closedAt(key: CookieKey): number | undefined {
    return this.closed.get(key) ?? this.closedBefore.get(key);
  }

  private markClosed(key: CookieKey, ts: number): void {
    this.closed.set(key, ts);
    if (this.closed.size >= this.rememberClosed / 2) {
      this.closedBefore = this.closed;
      this.closed = new Map();
    }
  }

  private removeSlot(key: CookieKey, slot: number): void {
    const flags = this.live.flagsOf(slot);
    if (flags & REQUEST) this.requests.delete(tuple(this.live.identity(slot)));
    if (flags & TIMEWAIT && this.live.state(slot) === S.FIN_WAIT2 && this.orphans.size > 0) this.orphans.delete(tuple(this.live.identity(slot)));
    this.live.remove(key, slot);
  }

  /** The child of a completed handshake replaces the request sock a snapshot showed for it. */
  private completeRequest(e: TcpEvent): void {
    if (this.requests.size === 0) return;
    const r = this.requests.get(tuple(e));
    if (!r) return;
    const slot = this.live.find(r.key);
    if (slot >= 0) this.removeSlot(r.key, slot);
    else this.requests.delete(tuple(e));
  }

  private expireRequests(now: number): void {
    for (const [t, r] of this.requests) {
      if (now - r.seenNs < this.requestTimeoutNs) continue;
      this.requests.delete(t);
      const slot = this.live.find(r.key);
      if (slot >= 0) {
        this.live.remove(r.key, slot);
        this.s.requestSocksExpired++;
      }
    }
  }

  /**
   * Timewaits whose timer is long past due (see TIMEWAIT_GRACE_NS) ended without an end
   * event: out of the table, counted, and their phase recorded as estimated (ended when due).
   * An end event that still comes for one is older than the removal and counted as late.
   */
  private expireTimewaits(now: number): void {
    const cutoff = now - this.timewaitMaxNs;
    const overdue: number[] = [];
    this.live.scan((slot) => {
      if (this.live.flagsOf(slot) & TIMEWAIT && this.live.entered(slot) < cutoff) overdue.push(slot);
    });
    for (const slot of overdue) {
      const flags = this.live.flagsOf(slot);
      const state = this.live.state(slot);
      const entered = this.live.entered(slot);
      const who = this.live.identity(slot);
      const key = cookieKey(who.cookie);
      this.removeSlot(key, slot);
      this.markClosed(key, now);
      this.s.timewaitsOverdue++;
      const exact = (flags & ENTERED_EXACT) !== 0;
      this.emit(who, state, true, exact ? BigInt(entered) : null, BigInt(entered) + TIMEWAIT_LEN_NS, exact ? 'estimated' : 'lower-bound', null, null, null, flags & ACCEPTED ? who.sport : null);
    }
  }

  /**
   * One dwell record out (positional, not an options object: this runs for most events, and
   * building an object per call only to copy it into the record was measurable).
   */
  private emit(
    e: SocketIdentity,
    stateValue: number,
    timewait: boolean,
    enteredNs: bigint | null,
    leftNs: bigint,
    precision: DwellPrecision,
    nextState: string | null,
    timewaitEnd: DwellRecord['timewaitEnd'],
    error: string | null,
    listenPort: number | null,
  ): void {
    const dwellNs = enteredNs !== null ? leftNs - enteredNs : 0n;
    const record: DwellRecord = {
      cookie: e.cookie,
      state: stateName(stateValue),
      timewait,
      dwellNs: dwellNs < 0n ? 0n : dwellNs,
      enteredNs,
      leftNs,
      precision,
      nextState,
      timewaitEnd,
      error,
      vitals: (e as Partial<TcpEvent>).vitals ?? null,
      resetBy: (e as Partial<TcpEvent>).resetBy ?? null,
      netns: e.netns,
      cgroupId: e.cgroupId,
      family: e.family,
      saddr: e.saddr,
      sport: e.sport,
      daddr: e.daddr,
      dport: e.dport,
      ownerPid: e.ownerPid,
      ownerComm: e.ownerComm,
    };
    this.s.dwellRecords++;
    if (precision === 'lower-bound') this.s.lowerBoundRecords++;
    else if (precision !== 'exact') this.s.estimatedRecords++;
    // Bounds would bias a distribution: only exact and estimated (±2 jiffies) dwells go in.
    if ((precision === 'exact' || precision === 'estimated') && dwellNs >= 0n) {
      this.hist.record(stateValue, timewait, dwellNs, e.netns, e.cgroupId, listenPort);
    }
    if (this.rows) this.rows.fromObject(record);
    this.onDwell?.(record);
  }

  // ---- the fast path (ingestRecord): the event handlers above, on numbers ------------------
  // Each mirrors its object-path twin line by line; keep them in step (the fast-path test
  // replays recordings and random records through both and compares everything).

  private seededAtOf(netns: number): number {
    if (netns !== this.seededNetns) {
      this.seededNetns = netns;
      this.seededNs = this.seededAt.get(netns) ?? -Infinity;
    }
    return this.seededNs;
  }

  private fastTransition(v: RecordView, off: number): void {
    this.s.transitions++;
    const rawOld = v.oldState(off);
    const rawNew = v.newState(off);
    const oldV = rawOld < STATE_SLOTS ? rawOld : 0;
    const newV = rawNew < STATE_SLOTS ? rawNew : 0;
    const ts = v.ts(off);
    const child = (v.flags(off) & EventFlags.CHILD) !== 0;
    if (oldV === newV && oldV !== 0) {
      this.fastSameState(v, off, oldV, ts, child);
      return;
    }
    let twSubstate = 0;
    let since = NaN;
    let accepted = false;
    const key = v.cookie(off);
    const slot = this.live.find(key);
    if (slot >= 0) {
      const flags = this.live.flagsOf(slot);
      accepted = (flags & ACCEPTED) !== 0;
      if (flags & TIMEWAIT) twSubstate = this.live.state(slot);
      else if (this.live.state(slot) === oldV) since = this.live.entered(slot);
    }
    if (this.fastApplyTransition(v, off, key, slot, oldV, newV, ts, child)) return;

    if (oldV === S.CLOSE_WAIT && newV === S.LAST_ACK && this.orphans.size > 0) this.fastPeerFin(v, off, ts);

    this.detectors.transition(this.flyweight.at(v, off), oldV, newV, twSubstate !== 0);

    if (oldV === S.CLOSE || (child && oldV === S.LISTEN)) return;
    let enteredNs = v.entered(off);
    let precision: DwellPrecision = 'exact';
    if (enteredNs < 0) {
      precision = 'lower-bound';
      enteredNs = since; // NaN: unknown
    }
    const errno = v.errno(off);
    this.fastEmit(v, off, -1, oldV, false, enteredNs, ts, precision, twSubstate && newV === S.CLOSE ? twSubstate : rawNew, 0, errno > 0 ? errno : 0, accepted ? v.sport(off) : -1);
  }

  private fastApplyTransition(v: RecordView, off: number, key: number, slot: number, oldV: number, newV: number, ts: number, child: boolean): boolean {
    if (ts < this.seededAtOf(v.netns(off))) return false;
    const closedAt = slot < 0 ? this.closedAt(key) : undefined;
    if (newV === S.CLOSE) {
      if (slot < 0) {
        if (closedAt !== undefined && ts <= closedAt) return this.lateOrDuplicate(ts === closedAt);
        this.s.unknownSockets++;
        this.markClosed(key, ts);
        return false;
      }
      const flags = this.live.flagsOf(slot);
      if (flags & TIMEWAIT) return false;
      if (ts < this.live.entered(slot)) return this.lateOrDuplicate(false);
      if (this.live.state(slot) !== oldV) this.s.corrections++;
      this.removeSlot(key, slot);
      this.markClosed(key, ts);
      return false;
    }
    if (newV === 0) return false;
    if (slot < 0) {
      if (closedAt !== undefined) {
        if (ts <= closedAt) return this.lateOrDuplicate(ts === closedAt);
        this.closed.delete(key);
        this.closedBefore.delete(key);
      }
      const fresh = oldV === S.CLOSE || (child && oldV === S.LISTEN);
      if (!fresh) this.s.unknownSockets++;
      // (a child with request socks pending takes the object path: completeRequest)
      this.live.addRecord(key, v, off, newV, ENTERED_EXACT | (child ? ACCEPTED : 0), ts);
      return false;
    }
    const flags = this.live.flagsOf(slot);
    const entered = this.live.entered(slot);
    if (flags & TIMEWAIT || ts < entered) return this.lateOrDuplicate(false);
    if (ts === entered && this.live.state(slot) === newV) return this.lateOrDuplicate(true);
    if (this.live.state(slot) !== oldV) this.s.corrections++;
    this.live.move(slot, newV, (flags & ~(REQUEST | TW_FROM_FIN_WAIT2)) | ENTERED_EXACT, ts);
    this.live.refreshRecord(slot, v, off);
    return false;
  }

  private fastSameState(v: RecordView, off: number, state: number, ts: number, child: boolean): void {
    this.s.sameStateTransitions++;
    const key = v.cookie(off);
    const slot = this.live.find(key);
    if (slot >= 0 && this.live.state(slot) === state && !(this.live.flagsOf(slot) & TIMEWAIT)) this.live.refreshRecord(slot, v, off);
    else this.fastApplyTransition(v, off, key, slot, state, state, ts, child);
  }

  private fastAccepted(v: RecordView, off: number): void {
    this.s.accepts++;
    const slot = this.live.find(v.cookie(off));
    if (slot >= 0 && v.ownerKnown(off)) this.live.setOwner(slot, v.ownerPid(off), v.ownerComm(off));
  }

  private fastTimewaitStart(v: RecordView, off: number): void {
    this.s.timewaitStarts++;
    const ts = v.ts(off);
    if (ts < this.seededAtOf(v.netns(off))) return;
    const key = v.cookie(off);
    const rawSub = v.substate(off);
    const sub = (rawSub < STATE_SLOTS ? rawSub : 0) || S.TIME_WAIT;
    const flags = TIMEWAIT | ENTERED_EXACT | (sub === S.FIN_WAIT2 ? TW_FROM_FIN_WAIT2 : 0);
    const slot = this.live.find(key);
    if (v.flags(off) & EventFlags.FLIP) {
      this.fastTimewaitFlip(v, off, key, slot, ts);
      return;
    }
    if (slot >= 0) {
      const old = this.live.flagsOf(slot);
      const entered = this.live.entered(slot);
      if (old & TIMEWAIT || ts < entered) {
        this.lateOrDuplicate(old & TIMEWAIT && ts === entered ? true : false);
        return;
      }
      this.live.move(slot, sub, flags | (old & ACCEPTED), ts);
      this.live.refreshRecord(slot, v, off);
      if (sub === S.FIN_WAIT2) this.orphans.set(recordTuple(v, off), key);
      return;
    }
    const closedAt = this.closedAt(key);
    if (closedAt !== undefined && ts <= closedAt) {
      this.lateOrDuplicate(false);
      return;
    }
    this.s.unknownSockets++;
    this.live.addRecord(key, v, off, sub, flags, ts);
    if (sub === S.FIN_WAIT2) this.orphans.set(recordTuple(v, off), key);
  }

  private fastPeerFin(v: RecordView, off: number, ts: number): void {
    const t = `${v.netns(off)}|${v.daddr(off)}|${v.dport(off)}|${v.saddr(off)}|${v.sport(off)}`;
    const key = this.orphans.get(t);
    if (key === undefined) return;
    this.orphans.delete(t);
    const slot = this.live.find(key);
    if (slot < 0) return;
    const flags = this.live.flagsOf(slot);
    const entered = this.live.entered(slot);
    if (!(flags & TIMEWAIT) || this.live.state(slot) !== S.FIN_WAIT2 || ts < entered) return;
    this.s.timewaitFlips++;
    // emitted from the slot before it moves (its identity does not change with the move)
    const exact = (flags & ENTERED_EXACT) !== 0;
    this.fastEmit(null, 0, slot, S.FIN_WAIT2, true, exact ? entered : NaN, ts, exact ? 'estimated' : 'lower-bound', S.TIME_WAIT, 0, 0, flags & ACCEPTED ? this.live.sport(slot) : -1);
    this.live.move(slot, S.TIME_WAIT, TIMEWAIT | ENTERED_EXACT | FLIPPED | (flags & ACCEPTED), ts);
  }

  private fastTimewaitFlip(v: RecordView, off: number, key: number, slot: number, ts: number): void {
    let accepted = false;
    this.orphans.delete(recordTuple(v, off));
    if (slot >= 0) {
      const old = this.live.flagsOf(slot);
      if (old & FLIPPED && ts !== this.live.entered(slot)) return;
      if (old & FLIPPED || this.live.state(slot) === S.TIME_WAIT || ts < this.live.entered(slot)) {
        this.lateOrDuplicate(old & FLIPPED && ts === this.live.entered(slot) ? true : false);
        return;
      }
      accepted = (old & ACCEPTED) !== 0;
      if (!(old & TIMEWAIT)) this.s.corrections++;
      this.live.move(slot, S.TIME_WAIT, TIMEWAIT | ENTERED_EXACT | FLIPPED | (old & ACCEPTED), ts);
      this.live.refreshRecord(slot, v, off);
    } else {
      const closedAt = this.closedAt(key);
      if (closedAt !== undefined && ts <= closedAt) {
        this.lateOrDuplicate(false);
        return;
      }
      this.s.unknownSockets++;
      this.live.addRecord(key, v, off, S.TIME_WAIT, TIMEWAIT | ENTERED_EXACT | FLIPPED, ts);
    }
    this.s.timewaitFlips++;
    const entered = v.entered(off);
    this.fastEmit(v, off, -1, S.FIN_WAIT2, true, entered >= 0 ? entered : NaN, ts, entered >= 0 ? 'exact' : 'lower-bound', S.TIME_WAIT, 0, 0, accepted ? v.sport(off) : -1);
  }

  private fastTimewaitEnd(v: RecordView, off: number): void {
    this.s.timewaitEnds++;
    const ts = v.ts(off);
    const rawSub = v.substate(off);
    const endSub = (rawSub < STATE_SLOTS ? rawSub : 0) || S.TIME_WAIT;
    let startSub = 0;
    let since = NaN;
    let accepted = false;
    let flipped = false;
    const key = v.cookie(off);
    const slot = this.live.find(key);
    if (slot >= 0) {
      const flags = this.live.flagsOf(slot);
      accepted = (flags & ACCEPTED) !== 0;
      if (flags & TIMEWAIT) {
        startSub = flags & TW_FROM_FIN_WAIT2 ? S.FIN_WAIT2 : S.TIME_WAIT;
        since = this.live.entered(slot);
        flipped = (flags & FLIPPED) !== 0;
      }
      if (ts >= this.seededAtOf(v.netns(off))) {
        if (!(flags & TIMEWAIT)) this.s.corrections++;
        this.removeSlot(key, slot);
        this.markClosed(key, ts);
      }
    } else {
      const closedAt = this.closedAt(key);
      if (closedAt !== undefined && ts <= closedAt) {
        this.lateOrDuplicate(ts === closedAt);
        return;
      }
      this.s.unknownSockets++;
      this.markClosed(key, ts);
    }

    const entered = v.entered(off);
    const rawReason = v.u8at(off, RECORD_REASON);
    const reason = rawReason === TwReason.EXPIRED || rawReason === TwReason.KILLED ? rawReason : 0;
    const exact = flipped || entered >= 0;
    const start = flipped ? since : entered >= 0 ? entered : since;
    const expires = v.expires(off);
    const hasFlip = expires !== 0;
    const flipNs = expires - TIMEWAIT_LEN;
    if (!startSub) startSub = endSub === S.TIME_WAIT && exact && hasFlip && flipNs - entered > FLIP_TOLERANCE ? S.FIN_WAIT2 : endSub;
    const listenPort = accepted ? v.sport(off) : -1;
    if (startSub === S.FIN_WAIT2 && endSub === S.TIME_WAIT) {
      if (hasFlip && flipNs <= ts && (Number.isNaN(start) || flipNs >= start)) {
        this.fastEmit(v, off, -1, S.FIN_WAIT2, true, start, flipNs, exact ? 'estimated' : 'lower-bound', S.TIME_WAIT, 0, 0, listenPort);
        this.fastEmit(v, off, -1, S.TIME_WAIT, true, flipNs, ts, 'estimated', -1, reason, 0, listenPort);
      } else {
        this.fastEmit(v, off, -1, S.FIN_WAIT2, true, start, ts, exact ? 'upper-bound' : 'lower-bound', S.TIME_WAIT, reason, 0, listenPort);
      }
      return;
    }
    this.fastEmit(v, off, -1, endSub, true, start, ts, exact ? 'exact' : 'lower-bound', -1, reason, 0, listenPort);
  }

  /**
   * `emit` on numbers: the socket is the record at v/off, or (v null) the table's slot.
   * enteredNs NaN = unknown; nextState −1 = none.
   */
  private fastEmit(
    v: RecordView | null,
    off: number,
    slot: number,
    stateValue: number,
    timewait: boolean,
    enteredNs: number,
    leftNs: number,
    precision: DwellPrecision,
    nextState: number,
    timewaitEnd: number,
    errno: number,
    listenPort: number,
  ): void {
    const dwellNs = Number.isNaN(enteredNs) ? 0 : leftNs - enteredNs;
    this.s.dwellRecords++;
    if (precision === 'lower-bound') this.s.lowerBoundRecords++;
    else if (precision !== 'exact') this.s.estimatedRecords++;
    const netns = v ? v.netns(off) : this.live.netnsOf(slot);
    const cgroup = v ? v.cgroup(off) : this.live.cgroupOf(slot);
    if ((precision === 'exact' || precision === 'estimated') && dwellNs >= 0) this.hist.recordNs(stateValue, timewait, dwellNs, netns, cgroup, listenPort);
    const row = this.row;
    row.state = stateValue;
    row.timewait = timewait;
    row.enteredNs = enteredNs;
    row.leftNs = leftNs;
    row.dwellNs = dwellNs < 0 ? 0 : dwellNs;
    row.precision = precision;
    row.nextState = nextState;
    row.timewaitEnd = timewaitEnd;
    row.errno = errno;
    const closing = v !== null && v.closing(off);
    row.closing = closing;
    row.srttUs = closing ? v.srtt(off) : 0;
    row.totalRetrans = closing ? v.retrans(off) : 0;
    row.bytesAcked = closing ? v.bytesAcked(off) : 0;
    row.bytesReceived = closing ? v.bytesReceived(off) : 0;
    const rst = closing ? resetBy(v.flags(off)) : null;
    row.reset = rst === 'sent' ? RstDirection.SENT : rst === 'received' ? RstDirection.RECEIVED : 0;
    if (this.rows) {
      if (v) this.rows.fromRecord(v, off, row);
      else this.rows.fromSlot(this.live, slot, row);
    }
    if (this.onDwell) this.onDwell(this.rowRecord(v ? this.flyweight.at(v, off) : this.live.identity(slot), row));
  }

  /** The DwellRecord a row describes (for onDwell: the CLI and tests). */
  private rowRecord(id: SocketIdentity, row: DwellRow): DwellRecord {
    return {
      cookie: id.cookie,
      state: stateName(row.state),
      timewait: row.timewait,
      dwellNs: BigInt(row.dwellNs),
      enteredNs: Number.isNaN(row.enteredNs) ? null : BigInt(row.enteredNs),
      leftNs: BigInt(row.leftNs),
      precision: row.precision,
      nextState: row.nextState >= 0 ? stateName(row.nextState) : null,
      timewaitEnd: row.timewaitEnd === TwReason.EXPIRED ? 'expired' : row.timewaitEnd === TwReason.KILLED ? 'killed' : null,
      error: row.errno > 0 ? errnoName(row.errno) : null,
      vitals: row.closing ? { srttUs: row.srttUs, totalRetrans: row.totalRetrans, bytesAcked: row.bytesAcked, bytesReceived: row.bytesReceived } : null,
      resetBy: row.reset === RstDirection.SENT ? 'sent' : row.reset === RstDirection.RECEIVED ? 'received' : null,
      netns: id.netns,
      cgroupId: id.cgroupId,
      family: id.family,
      saddr: id.saddr,
      sport: id.sport,
      daddr: id.daddr,
      dport: id.dport,
      ownerPid: id.ownerPid,
      ownerComm: id.ownerComm,
    };
  }
}

const TIMEWAIT_LEN = Number(TIMEWAIT_LEN_NS);
const FLIP_TOLERANCE = Number(FLIP_TOLERANCE_NS);
const RECORD_REASON = RECORD_INDEX.reason;

/** tuple() of the record at v/off (addresses from the decoder's caches). */
const recordTuple = (v: RecordView, off: number) => `${v.netns(off)}|${v.saddr(off)}|${v.sport(off)}|${v.daddr(off)}|${v.dport(off)}`;


const tuple = (s: { netns: number; saddr: string; sport: number; daddr: string; dport: number }) => `${s.netns}|${s.saddr}|${s.sport}|${s.daddr}|${s.dport}`;
