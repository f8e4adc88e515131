/** What the decoder hands out: one kernel record as a typed event (for the CLI, tests and snapshots). */
import type { Family } from '../kernel/filters.js';

export type { Family };
export type EventKind = 'transition' | 'timewait_start' | 'timewait_end' | 'snapshot' | 'reset' | 'accept';

/** Which socket: its cookie, namespace, cgroup, ends and owner. Every per-socket record carries these. */
export interface SocketIdentity {
  /** the kernel's socket cookie; the timewait sock shares it with its socket */
  cookie: bigint;
  netns: number;
  /** cgroup v2 id of the socket (its container); 0 when unknown (timewait socks in a snapshot) */
  cgroupId: bigint;
  family: Family;
  /** local end; ports in host order */
  saddr: string;
  sport: number;
  /** remote end */
  daddr: string;
  dport: number;
  /** the process that owns the socket (see README: inherited by accepted sockets); null when unknown */
  ownerPid: number | null;
  ownerComm: string | null;
}

/**
 * A connection's vital signs at its close, read from its tcp_sock at the X->CLOSE transition
 * (what tcplife and `ss -ti` show). Bytes as Linux counts them (sequence space acked/received):
 * the data, plus one for the active opener's SYN in bytesAcked and one for each FIN acked or
 * received — measured in test/kernel/vitals.test.ts.
 */
export interface Vitals {
  /** smoothed RTT, µs (ss -ti `rtt:` first number, there in ms); 0 = never measured */
  srttUs: number;
  /** segments retransmitted over its life (ss -ti `retrans:x/N`, the N) */
  totalRetrans: number;
  /** bytes the peer acknowledged (ss -ti `bytes_acked:`) */
  bytesAcked: number;
  /** bytes received in order (ss -ti `bytes_received:`) */
  bytesReceived: number;
}

/** Who reset a connection, as its X->CLOSE knows it: an RST it received, or one it sent before closing. */
export type ResetBy = 'sent' | 'received';

/** One decoded kernel record. Times are boot-time nanoseconds (CLOCK_BOOTTIME) as BigInt. */
export interface TcpEvent extends SocketIdentity {
  type: EventKind;
  tsNs: bigint;
  /** when the socket entered the state it is leaving (transition), the timewait began (timewait_end), or its current state began (snapshot); null when unknown */
  enteredNs: bigint | null;
  /** ts − entered, when entered is known */
  dwellNs: bigint | null;
  /** timewait events and timewait snapshots: when the timewait timer is due */
  expiresNs: bigint | null;
  /** the task running when it happened (in softirq often a bystander: see actorIsOwner) */
  pid: number;
  comm: string;
  /** transition: state left; other kinds: null */
  oldState: string | null;
  /** transition: state entered; snapshot: current state; timewait: TIME_WAIT; reset: the socket's state at the RST (UNKNOWN(0): no socket); accept: its state when accepted */
  newState: string;
  /** timewait events, timewait snapshots: TIME_WAIT or FIN_WAIT2 */
  substate: string | null;
  /** timewait_end: how it ended; reset: which way the RST went (sent by this host, or received) */
  reason: 'expired' | 'killed' | 'sent' | 'received' | null;
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
  /** transition to CLOSE only (not LISTEN -> CLOSE: a listener's end): the connection's vital signs at its close; null on every other record */
  vitals: Vitals | null;
  /**
   * transition to CLOSE only: it received an RST ('received', which wins when both), or sent one
   * before the close ('sent'); null when neither. An abort that closes first and sends its RST
   * after (SO_LINGER 0, close with unread data) has null here and its RESET event right after.
   */
  resetBy: ResetBy | null;
}

/** What a decode pass skipped, so nothing is dropped silently. */
export interface DecodeStats {
  records: number;
  malformed: number;
}
