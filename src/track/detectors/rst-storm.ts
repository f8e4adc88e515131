/** RST storms: connections aborted in a synchronized state, per network namespace. */
import { S } from '../states.js';
import { count, countingDetector, finding, seconds, WINDOW } from './detector.js';

/** Left for CLOSE from one of these, a connection was reset (sent or received); from FIN_WAIT1, FIN_WAIT2 or CLOSING only when no timewait sock took it over. */
const ABORTED_FROM = new Set<number>([S.ESTABLISHED, S.CLOSE_WAIT, S.SYN_RECV]);
const CLOSING_FROM = new Set<number>([S.FIN_WAIT1, S.FIN_WAIT2, S.CLOSING]);

export const rstStorm = countingDetector({
  name: 'rst_storm',
  states: ['ESTABLISHED', 'CLOSE'],
  observes: 'transitions from a synchronized state straight to CLOSE (a reset sent or received), per network namespace',
  explanation: 'Connections going from an established state straight to CLOSE were aborted by a reset, sent or received: a crashing or restarting peer, SO_LINGER 0 closes, a middlebox or firewall killing connections, or a load balancer health-checking aggressively. Look at which ports and peers, and what restarted.',
  thresholds: { ...WINDOW, resets: count(500, 'connections aborted (a synchronized state straight to CLOSE: RST sent or received) in a namespace within the window (default 500)') },
  counts: (e, oldV, newV, wasTimewait) => (newV === S.CLOSE && (ABORTED_FROM.has(oldV) || (!wasTimewait && CLOSING_FROM.has(oldV))) ? e.netns : null),
  fires: (netns, n, t, windowS) =>
    n < t.resets
      ? null
      : finding({
          detector: 'rst_storm',
          key: `rst_storm/${netns}`,
          netns,
          summary: `${n} connections in netns ${netns} were aborted (established → CLOSE, a reset) within ${seconds(windowS * 1e9)}`,
          value: n,
          threshold: t.resets,
          labels: { unit: 'aborted connections' },
        }),
});
