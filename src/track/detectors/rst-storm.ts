/** RST storms: connections aborted in a synchronized state, per network namespace. */
import { S } from '../states.js';
import { count, defineDetector, seconds, WINDOW, WindowedCounts } from './detector.js';

export const rstStorm = defineDetector({
  name: 'rst_storm',
  states: ['ESTABLISHED', 'CLOSE'],
  observes: 'transitions from a synchronized state straight to CLOSE (a reset sent or received), per network namespace',
  explanation:
    'Connections going from an established state straight to CLOSE were aborted by a reset, sent or received: a crashing or ' +
    'restarting peer, SO_LINGER 0 closes, a middlebox or firewall killing connections, or a load balancer health-checking ' +
    'aggressively. Look at which ports and peers, and what restarted.',
  thresholds: {
    ...WINDOW,
    resets: count(500, 'connections aborted (a synchronized state straight to CLOSE: RST sent or received) in a namespace within the window (default 500)'),
  },
  create(ctx) {
    const resets = new WindowedCounts<number>(ctx);
    return {
      transition(e, oldV, newV, wasTimewait) {
        if (newV !== S.CLOSE) return;
        // A FIN_WAIT*/CLOSING socket handed to its timewait sock closes normally.
        const aborted =
          oldV === S.ESTABLISHED ||
          oldV === S.CLOSE_WAIT ||
          oldV === S.SYN_RECV ||
          (!wasTimewait && (oldV === S.FIN_WAIT1 || oldV === S.FIN_WAIT2 || oldV === S.CLOSING));
        if (aborted) resets.add(e.netns, e.tsNs);
      },
      evaluate(_table, nowNs, out) {
        const t = ctx.thresholds();
        for (const [netns, n] of resets.sums(nowNs)) {
          if (n < t.resets) continue;
          out.push({
            detector: 'rst_storm',
            key: `rst_storm/${netns}`,
            netns,
            summary: `${n} connections in netns ${netns} were aborted (established → CLOSE, a reset) within ${seconds(resets.windowS * 1e9)}`,
            value: n,
            threshold: t.resets,
            ownerPid: null,
            ownerComm: null,
            labels: { unit: 'aborted connections' },
          });
        }
      },
      reconfigure: () => resets.reconfigure(),
      dropped: () => resets.dropped,
    };
  },
});
