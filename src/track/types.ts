/**
 * Plain-data types the tracker hands out. No classes, no functions, no Maps: each can be turned
 * into JSON or a protobuf message field by field (64-bit values as bigint, as in decode.ts).
 */
import type { ResetBy, SocketIdentity, SockFile, Vitals } from '../decode/index.js';
import type { NetstatCounters } from '../kernel/netstat.js';

export type { ResetBy, SocketIdentity, Vitals };

/**
 * How far a dwell time can be trusted.
 * - `exact`: both ends stamped by the kernel (entry time from socket storage or the timewait map).
 * - `lower-bound`: the entry time is unknown (the socket is older than the agent, or its
 *   storage is missing); `dwellNs` counts only from when we first knew it was in the state
 *   (0 when never), so the real dwell is at least that.
 * - `estimated`: an orphaned FIN_WAIT2 timewait that the peer's FIN flipped to TIME_WAIT. The
 *   kernel reports no event at the flip; it is placed at (due time at the end − 60 s), which the
 *   kernel re-arms at the flip (tcp_timewait_state_process → inet_twsk_reschedule with
 *   TCP_TIMEWAIT_LEN). Off by at most two jiffies (8 ms at HZ=250); the whole phase is exact.
 * - `upper-bound`: that same case when the flip cannot be placed: the FIN_WAIT2 part lasted at
 *   most `dwellNs`.
 */
export type DwellPrecision = 'exact' | 'lower-bound' | 'estimated' | 'upper-bound';

/** One state a socket left (or one timewait phase), with how long it stayed. */
export interface DwellRecord extends SocketIdentity {
  /** the state left, kernel name without TCP_ (timewait phase: TIME_WAIT or FIN_WAIT2) */
  state: string;
  /** true for the phase held by a timewait sock, after the application's socket was gone */
  timewait: boolean;
  /** time in the state; see `precision` */
  dwellNs: bigint;
  /** boot-time ns the state was entered (for a lower bound: since when it was known); null when never known */
  enteredNs: bigint | null;
  /** boot-time ns the state was left */
  leftNs: bigint;
  precision: DwellPrecision;
  /**
   * the state entered next. A socket handed to a timewait sock (its X→CLOSE) shows the
   * timewait's state (TIME_WAIT or FIN_WAIT2) rather than CLOSE; an ended timewait shows null.
   */
  nextState: string | null;
  /** how a timewait phase ended: `expired` (its time was up) or `killed` (netns deleted, port reused, RST) */
  timewaitEnd: 'expired' | 'killed' | null;
  /** errno name the kernel reported before this transition, e.g. ECONNREFUSED */
  error: string | null;
  /**
   * the connection's vital signs at its close (RTT, retransmits, bytes), on the record of the state
   * it left at its X→CLOSE (nextState CLOSE, or the timewait's state); null on every other record
   */
  vitals: Vitals | null;
  /** on that same record: it was reset, an RST received or sent before the close (TcpEvent.resetBy); else null */
  resetBy: ResetBy | null;
}

/**
 * What the kernel says about SYN pressure at one moment (no tracepoint marks a SYN's arrival):
 * every listener's queues (the dump_listeners walk: one record per holder) and each namespace's
 * netstat counters, cumulative. The tracker takes the differences between polls.
 */
export interface ListenerPoll {
  atNs: bigint;
  listeners: readonly SockFile[];
  netstat: ReadonlyMap<number, NetstatCounters>;
}

/** Socket counts by state name (kernel names; zero counts left out). */
export type StateCounts = Record<string, number>;

/**
 * The live socket table at one moment. State names are the kernel's: `NEW_SYN_RECV` is a
 * request sock (a half-open connection; `ss` shows it as SYN-RECV), and a timewait sock counts
 * under its substate (TIME_WAIT, or FIN_WAIT2 for an orphan), as `ss` shows it. Use
 * `toSsCounts` for ss's names.
 */
export interface LiveTableSnapshot {
  /** boot-time ns the snapshot was taken (the tracker's clock) */
  atNs: bigint;
  total: StateCounts;
  byNetns: { netns: number; counts: StateCounts }[];
  /** sockets in the table */
  sockets: number;
}

/** A socket still in a state: the oldest ones per state are where leaks show. */
export interface StuckSocket extends SocketIdentity {
  state: string;
  timewait: boolean;
  /** time in the state so far (the tracker's clock minus the entry time) */
  ageNs: bigint;
  /** true when the entry time is unknown and `ageNs` counts from when the socket was first seen */
  ageIsLowerBound: boolean;
}

/** What the tracker counted, so nothing is lost or corrected silently. All monotonic except `liveSockets`. */
export interface TrackerStats {
  events: number;
  transitions: number;
  timewaitStarts: number;
  timewaitEnds: number;
  snapshotSockets: number;
  dwellRecords: number;
  /** dwell records whose start was unknown (precision lower-bound) */
  lowerBoundRecords: number;
  /** dwell records with an estimated or upper-bound split (FIN_WAIT2 → TIME_WAIT inside a timewait) */
  estimatedRecords: number;
  /** events for a socket the table had never seen (older than the agent without a snapshot, or its start was lost) */
  unknownSockets: number;
  /** transitions whose old state disagreed with the table (events were lost): the table took the kernel's word */
  corrections: number;
  /** events already applied (same socket, time and state) */
  duplicates: number;
  /** events older than what the table already holds for their socket: dwell kept, table unchanged */
  late: number;
  /** events with socket cookie 0: dwell kept, not in the table */
  noCookie: number;
  /** re-seeding: sockets added, removed and corrected because the table had drifted from the kernel */
  healedAdded: number;
  healedRemoved: number;
  healedCorrected: number;
  /** request socks from a snapshot that never completed and were dropped after their timeout */
  requestSocksExpired: number;
  /** timewaits that flipped from FIN_WAIT2 to TIME_WAIT (the peer's FIN to an orphaned close) */
  timewaitFlips: number;
  /** timewaits removed long after their timer was due, their end event never seen (see TIMEWAIT_GRACE_NS) */
  timewaitsOverdue: number;
  /** RSTs sent or received (reset events) */
  resets: number;
  /** sockets accept() handed to a process (accept events) */
  accepts: number;
  /** transitions into the state the socket was in (FIN_WAIT1 → FIN_WAIT1, ...): no dwell record, the entry time kept */
  sameStateTransitions: number;
  /** dwell records kept out of per-netns/cgroup/port histograms because the histogram cap was reached */
  histogramsDropped: number;
  /** detector keys not tracked because a detector's key cap was reached */
  detectorKeysDropped: number;
  /** alerts that started firing */
  alertsFired: number;
  liveSockets: number;
}
