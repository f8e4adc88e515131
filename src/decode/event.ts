/** What the decoder hands out: one kernel record as a typed event (for the CLI, tests and snapshots). */
import type { Family } from '../kernel/filters.js';

export type { Family };
export type EventKind = 'transition' | 'timewait_start' | 'timewait_end' | 'snapshot';

/** One decoded kernel record. Times are boot-time nanoseconds (CLOCK_BOOTTIME) as BigInt. */
export interface TcpEvent {
  type: EventKind;
  tsNs: bigint;
  cookie: bigint;
  /** when the socket entered the state it is leaving (transition), the timewait began (timewait_end), or its current state began (snapshot); null when unknown */
  enteredNs: bigint | null;
  /** ts − entered, when entered is known */
  dwellNs: bigint | null;
  /** timewait events and timewait snapshots: when the timewait timer is due */
  expiresNs: bigint | null;
  netns: number;
  cgroupId: bigint;
  family: Family;
  saddr: string;
  sport: number;
  daddr: string;
  dport: number;
  pid: number;
  comm: string;
  ownerPid: number | null;
  ownerComm: string | null;
  /** transition: state left; other kinds: null */
  oldState: string | null;
  /** transition: state entered; snapshot: current state; timewait: TIME_WAIT */
  newState: string;
  /** timewait events, timewait snapshots: TIME_WAIT or FIN_WAIT2 */
  substate: string | null;
  /** timewait_end: how it ended */
  reason: 'expired' | 'killed' | null;
  /** errno name from sk_err that preceded this transition, e.g. ECONNREFUSED */
  error: string | null;
  /** the current task held the socket lock: pid/comm acted on the socket */
  actorIsOwner: boolean;
  /** socket cloned from a listener (an accepted connection) */
  child: boolean;
  /** a transition of this socket was missed just before this one (so dwellNs is null) */
  gap: boolean;
  /**
   * timewait_start only: not a new timewait but the flip of a running one from substate
   * FIN_WAIT2 (an orphan) to TIME_WAIT at the peer's FIN; enteredNs is when the timewait began
   */
  flip: boolean;
}

/** What a decode pass skipped, so nothing is dropped silently. */
export interface DecodeStats {
  records: number;
  malformed: number;
}
