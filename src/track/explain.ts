/**
 * `tcpdwell explain [STATE]`: what each TCP state means, when a pile-up of it is normal and
 * when it is an incident, and what to check next. Pure: text in, lines out.
 *
 * The states are the kernel's (src/kernel/abi.ts TcpState, generated from the kernel's own
 * enum): the record type below makes the compiler refuse a state without an explanation, and
 * test/unit/explain.test.ts fails when a regenerated ABI brings a new one. Where a detector
 * watches a state, its explanation (the detector's own, src/track/detectors/, the text
 * published with every alert) is shown as is rather than written twice; which detectors watch
 * which state comes from the detector registry.
 */
import { TcpState } from '../kernel/abi.js';
import { DETECTOR_STATE, detectorsOf, EXPLAIN as DETECTOR_EXPLAIN, type DetectorName, type StateName } from './detectors/index.js';
import { ssStateName } from './states.js';
import { UsageError } from '../common/errors.js';

export type { StateName };
export { DETECTOR_STATE };

/** One state, in four parts. Sysctl values quoted are Linux defaults (checked on Linux 6.18). */
export interface StateExplanation {
  /** one line */
  summary: string;
  meaning: string;
  normal: string;
  incident: string;
  check: string;
  /** detectors that watch this state (from the registry); their own explanation is appended */
  detectors: DetectorName[];
}

const TEXT: Record<StateName, Omit<StateExplanation, 'detectors'>> = {
  ESTABLISHED: {
    summary: 'the connection is open and data can flow both ways',
    meaning:
      'Both handshakes are done. The socket stays here for as long as the connection is in use, and also for as long as ' +
      'nobody notices that it is not: TCP sends nothing on an idle connection, so a peer that crashed, lost power or sits ' +
      'behind a NAT that forgot the mapping leaves this end ESTABLISHED indefinitely.',
    normal:
      'Most sockets of a busy server or of a client with connection pools. The count follows concurrent clients and pool ' +
      'sizes; long dwell times are expected for pools, streams and keep-alive connections.',
    incident:
      'A count that only grows (clients or pools that never release connections), many idle connections to peers that no ' +
      'longer exist, or connections leaving ESTABLISHED straight for CLOSE (an abort by reset, sent or received) in numbers.',
    check:
      'Group by owner and peer (the oldest sockets in `tcpdwell top`, `ss -tnp state established`). Dead peers are found ' +
      'only by keep-alive: SO_KEEPALIVE on the socket, with net.ipv4.tcp_keepalive_time (default 7200 s), ' +
      'tcp_keepalive_intvl (75 s) and tcp_keepalive_probes (9), or TCP_USER_TIMEOUT for connections with unacknowledged data ' +
      '(otherwise retransmissions go on for tcp_retries2 = 15 tries, about 15 minutes).',
  },
  SYN_SENT: {
    summary: 'connect() has sent its SYN and waits for the SYN-ACK',
    meaning:
      'An outgoing connection in its first round trip. It leaves for ESTABLISHED when the SYN-ACK arrives, or for CLOSE ' +
      'with an error: ECONNREFUSED (a reset came back), ETIMEDOUT (the SYN was retried net.ipv4.tcp_syn_retries = 6 times, ' +
      'about 2 minutes), EHOSTUNREACH or ENETUNREACH (no route, or an ICMP error).',
    normal: 'A few at a time, each for about one round trip.',
    incident:
      'Sockets piling up here mean SYNs that nobody answers: the destination is down or unreachable, or a firewall drops ' +
      'the SYNs. Many SYN_SENT sockets to many different destinations from one process can also be a port scan or a worm.',
    check:
      'The destinations and the owner (`tcpdwell top`: oldest sockets and connect failures by reason; `ss -tnp state ' +
      'syn-sent`), the route to them (`ip route get ADDR`), firewalls on the way, and whether name resolution hands out ' +
      'stale addresses.',
  },
  SYN_RECV: {
    summary: 'a server-side socket between the SYN-ACK and the final ACK of the handshake',
    meaning:
      'On Linux a half-open connection normally lives as a request sock (NEW_SYN_RECV, which `ss` also shows as SYN-RECV); ' +
      'the full socket is created in SYN_RECV only when the final ACK arrives and moves to ESTABLISHED at once. tcpdwell ' +
      'sees LISTEN→SYN_RECV→ESTABLISHED within microseconds for every accepted connection. A full socket stays in SYN_RECV ' +
      'longer with TCP Fast Open, where the server accepts data before the handshake completes.',
    normal: 'Transient: one per accepted connection, for microseconds.',
    incident:
      'A high rate of handshakes on one listener (a SYN flood that completes, or a connection storm from clients), or full ' +
      'sockets that stay here (Fast Open clients that vanished).',
    check: 'The handshake rate per listening port, the clients behind it, and the half-open count under NEW_SYN_RECV.',
  },
  FIN_WAIT1: {
    summary: 'this side has closed (sent its FIN) and waits for it to be acknowledged',
    meaning:
      'The application called close() or shutdown(SHUT_WR). The FIN goes out after any data still queued, so the socket ' +
      'stays here until the peer has acknowledged everything sent, FIN included.',
    normal: 'About one round trip; longer when much data was still queued at close.',
    incident:
      'A pile-up means the peer does not acknowledge: it is gone or unreachable, or it advertises a zero window (a reader ' +
      'that stopped reading) so the queued data cannot drain. Closed (orphaned) sockets here are bounded by ' +
      'net.ipv4.tcp_max_orphans and retried per net.ipv4.tcp_orphan_retries.',
    check: 'Send-Q in `ss -tn state fin-wait-1` (data stuck behind a zero window), whether the peers are reachable, and what they are doing.',
  },
  FIN_WAIT2: {
    summary: "this side's FIN is acknowledged; it waits for the peer to close too",
    meaning:
      'Half of the connection is closed. If the application only shut down writing, it may keep reading here for as long as ' +
      'the peer keeps sending. If it closed the socket, the kernel hands the connection to a small timewait sock at once, in ' +
      'substate FIN_WAIT2, which waits net.ipv4.tcp_fin_timeout (60 s) for the peer\'s FIN (tcpdwell shows that phase as ' +
      'FIN_WAIT2 held by a timewait sock) and then becomes TIME_WAIT when the FIN comes.',
    normal: 'Brief, when the peer closes its side promptly.',
    incident:
      'Many sockets here, or orphans that last the whole tcp_fin_timeout, mean peers that never close their side: usually ' +
      'the peer application has a CLOSE_WAIT leak.',
    check: 'The peers in the oldest FIN_WAIT2 sockets, and CLOSE_WAIT on those peers (`tcpdwell explain CLOSE_WAIT`).',
  },
  TIME_WAIT: {
    summary: 'the connection is closed; the side that closed first keeps its 4-tuple for 2×MSL',
    meaning:
      'After both FINs, the side that closed first keeps the connection for 2×MSL, 60 s on Linux (TCP_TIMEWAIT_LEN, not ' +
      'tunable), so that a late segment of the old connection is not taken for part of a new one with the same addresses ' +
      'and ports, and so that the last ACK can be sent again if it was lost. The kernel keeps it in a small timewait sock, ' +
      'not a full socket: no `sock:inet_sock_set_state` event ever shows TIME_WAIT, which is why tcpdwell follows its timer.',
    normal:
      'Thousands on a busy host are normal and cheap: each timewait sock is a few hundred bytes. It ends early when the ' +
      'network namespace is deleted, on a reset, or when the port is reused (net.ipv4.tcp_tw_reuse).',
    incident:
      'When many short connections go from one local address to one destination, their TIME_WAIT sockets hold most of the ' +
      'ephemeral ports (net.ipv4.ip_local_port_range, 32768–60999: 28232 ports) and connect() starts to fail with ' +
      'EADDRNOTAVAIL; past net.ipv4.tcp_max_tw_buckets (131072) the kernel skips TIME_WAIT altogether.',
    check: 'Which side closes first and why (a server that closes every HTTP connection), connection reuse (keep-alive, pooling), then the sysctls named here.',
  },
  CLOSE: {
    summary: 'no connection: a socket before connect() or listen(), or one whose connection has ended',
    meaning:
      'Every socket begins and ends here. An ordinary end goes through the closing states; an abort (a reset sent or ' +
      'received) goes straight from ESTABLISHED or CLOSE_WAIT to CLOSE; a failed connect goes SYN_SENT→CLOSE, and tcpdwell ' +
      'shows the error the kernel reported (ECONNREFUSED, ETIMEDOUT, ...). `ss -tan` lists a bound socket that is neither ' +
      'listening nor connected as UNCONN.',
    normal: 'Transitions into CLOSE are the end of every connection.',
    incident: 'Many aborts (ESTABLISHED→CLOSE) or failed connects (SYN_SENT→CLOSE with an error).',
    check: 'Failed connects: `tcpdwell explain SYN_SENT`. Aborts: which peers and ports, and what restarted.',
  },
  CLOSE_WAIT: {
    summary: 'the peer has closed; the kernel waits for this application to close() the socket',
    meaning:
      'The peer sent its FIN, so reads return end-of-file. Nothing but the application can take the socket out of this ' +
      'state: there is no timeout. When it closes, the socket goes to LAST_ACK.',
    normal: 'Momentary: a well-behaved program closes as soon as a read returns 0.',
    incident:
      'Any socket that stays more than a few seconds, and a count that keeps growing: the application leaks descriptors ' +
      'and will eventually hit its open-file limit (EMFILE).',
    check: 'The owner process shown beside the oldest sockets, its descriptors (`ls /proc/PID/fd | wc -l` against `ulimit -n`), and the code that handles a peer closing.',
  },
  LAST_ACK: {
    summary: 'after CLOSE_WAIT, the application closed; its FIN waits for the last ACK',
    meaning: 'The passive closer has sent its FIN and waits for the peer to acknowledge it; then the socket is gone (no TIME_WAIT on this side).',
    normal: 'About one round trip.',
    incident: 'A pile-up means the peer does not acknowledge: it vanished after sending its own FIN, or ACKs are lost or filtered; the FIN is retransmitted until the retries run out.',
    check: 'Reachability of the peers, and firewalls or middleboxes that drop packets of closing connections.',
  },
  LISTEN: {
    summary: 'a listening socket, waiting for connections',
    meaning:
      'A server socket after listen(). Completed handshakes wait in its accept queue until the application calls accept(); ' +
      'the queue holds up to the backlog given to listen(), capped by net.core.somaxconn (4096).',
    normal: 'One per service port (one per process with SO_REUSEPORT), for the life of the service.',
    incident:
      'A listener missing (clients get ECONNREFUSED), an unexpected one (who is listening there?), or a full accept queue: ' +
      'the application accepts too slowly and new handshakes are dropped.',
    check: '`ss -ltnp` (Recv-Q is the accept queue now, Send-Q its limit), `nstat -az TcpExtListenOverflows TcpExtListenDrops`, and how fast the owner accepts.',
  },
  CLOSING: {
    summary: 'simultaneous close: both sides sent a FIN before seeing the other\'s',
    meaning:
      'This side sent its FIN, then received the peer\'s FIN before the ACK of its own. It waits for that ACK and then ' +
      'enters TIME_WAIT. Both ends of such a connection go FIN_WAIT1→CLOSING.',
    normal: 'Rare, and about one round trip when it happens.',
    incident: 'Sockets that stay here mean the peer\'s ACK never arrives: a peer that vanished, or loss.',
    check: 'Reachability of the peers and packet loss on the path.',
  },
  NEW_SYN_RECV: {
    summary: 'a half-open connection: SYN received, SYN-ACK sent, final ACK not yet seen',
    meaning:
      'Linux keeps a half-open connection as a small request sock hanging off its listener, not as a full socket; the ' +
      'full socket appears (LISTEN→SYN_RECV→ESTABLISHED) only when the final ACK arrives. Request socks fire no state ' +
      'events: tcpdwell sees them in its snapshots of the socket tables. An unanswered SYN-ACK is retried ' +
      'net.ipv4.tcp_synack_retries (5) times, about a minute, before the request sock is dropped.',
    normal: 'A few per listener, each for about one round trip.',
    incident:
      'Hundreds on one listener: a SYN flood (spoofed sources that never answer), clients behind heavy loss, or a backlog ' +
      'full because the application accepts too slowly.',
    check: 'net.ipv4.tcp_syncookies (1: cookies once the queue overflows), net.ipv4.tcp_max_syn_backlog (2048), the source addresses (`ss -tn state syn-recv`), and the listener\'s backlog.',
  },
  BOUND_INACTIVE: {
    summary: 'a reporting state: a socket bound to a port but neither listening nor connected',
    meaning:
      'Added in Linux 6.8 so that socket diagnostics (inet_diag, as `ss` uses it) can list sockets that hold a port ' +
      'through bind() without using it (include/net/tcp_states.h; read from the kernel source). The socket\'s own state is ' +
      'CLOSE: no state transition ever enters BOUND_INACTIVE, so tcpdwell does not see it as a state.',
    normal: 'A program that binds before it connects or listens holds one briefly.',
    incident: 'Many of them hold ports that nothing uses, and can use up a port range.',
    check: 'The owning processes: `ss -tanp` lists them as UNCONN; check what binds and never connects or listens.',
  },
};

/** Every state's explanation, with the detectors that watch it. */
export const STATE_EXPLANATIONS = Object.fromEntries(
  Object.entries(TEXT).map(([state, x]) => [state, { ...x, detectors: detectorsOf(state as StateName) }]),
) as Record<StateName, StateExplanation>;

const STATE_NAMES = Object.keys(TcpState) as StateName[];

/**
 * A state from what a user types: the kernel name (CLOSE_WAIT, close-wait), the name `ss`
 * prints (CLOSE-WAIT, ESTAB, SYN-RECV, UNCONN), or a detector name (close_wait_leak).
 * Throws UsageError listing what is accepted.
 */
export function resolveState(input: string): StateName {
  const t = input.trim().toUpperCase().replace(/-/g, '_');
  if ((STATE_NAMES as string[]).includes(t)) return t as StateName;
  // ss names (ESTAB, UNCONN, ...); SYN-RECV is also a kernel name, so it means SYN_RECV here.
  const bySs = STATE_NAMES.find((s) => ssStateName(s).replace(/-/g, '_') === t);
  if (bySs) return bySs;
  const det = input.trim().toLowerCase() as DetectorName;
  if (det in DETECTOR_STATE) return DETECTOR_STATE[det];
  throw new UsageError(
    `unknown state '${input}': give one of ${STATE_NAMES.join(', ')} (or the name ss prints, like CLOSE-WAIT or ESTAB, or a detector like close_wait_leak)`,
  );
}

/** Words of text in lines of at most `width` columns, each starting with `indent`. */
export function wrap(text: string, width: number, indent = ''): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && indent.length + line.length + 1 + word.length > width) {
      out.push(indent + line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) out.push(indent + line);
  return out;
}

/** The full explanation of one state as lines of at most `width` columns. */
export function explainState(state: StateName, width = 100): string[] {
  const x = STATE_EXPLANATIONS[state];
  const ss = ssStateName(state);
  const lines = [...wrap(`${state}${ss !== state ? ` (ss: ${ss})` : ''} — ${x.summary}`, width), ''];
  const part = (title: string, text: string) => lines.push(title, ...wrap(text, width, '  '), '');
  part('What it means', x.meaning);
  part('When it is normal', x.normal);
  part('When it is an incident', x.incident);
  part('What to check next', x.check);
  for (const d of x.detectors) part(`Detector ${d} (its alerts say):`, DETECTOR_EXPLAIN[d]);
  while (lines.at(-1) === '') lines.pop();
  return lines;
}

/** Every state in one line each, in the kernel's order, with how to read more. */
export function explainOverview(width = 100): string[] {
  const w = Math.max(...STATE_NAMES.map((s) => s.length));
  const lines = [...wrap('TCP states as the kernel defines them (explain STATE: what to do about each):', width), ''];
  const sw = Math.max(...STATE_NAMES.map((s) => ssStateName(s).length));
  lines.push(`${'STATE'.padEnd(w)}  ${'SS SHOWS'.padEnd(sw)}  MEANING`);
  for (const s of STATE_NAMES) {
    const lead = w + sw + 4;
    wrap(STATE_EXPLANATIONS[s].summary, width - lead).forEach((l, i) => lines.push(`${i ? ' '.repeat(lead) : `${s.padEnd(w)}  ${ssStateName(s).padEnd(sw)}  `}${l}`));
  }
  lines.push('', ...wrap(`Detectors and the state each watches: ${Object.entries(DETECTOR_STATE).map(([d, s]) => `${d} → ${s}`).join(', ')}.`, width));
  return lines;
}

/** `tcpdwell explain [STATE]` as text. */
export function explain(input: string | undefined, width = 100): string {
  return `${(input === undefined ? explainOverview(width) : explainState(resolveState(input), width)).join('\n')}\n`;
}
