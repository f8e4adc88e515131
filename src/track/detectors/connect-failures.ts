/** Connect failures: outgoing connects that died in SYN_SENT, per destination and reason. */
import { endpoint } from '../../decode/index.js';
import { S } from '../states.js';
import { count, countingDetector, finding, seconds, WINDOW } from './detector.js';

/**
 * What a failed connect is, for every view of one (this detector, `top`, the collector): a
 * socket leaving SYN_SENT with the error the kernel reported (ECONNREFUSED, ETIMEDOUT, ...).
 */
export const isConnectFailure = (stateLeft: string | null, error: string | null): error is string => stateLeft === 'SYN_SENT' && error !== null;

export const connectFailures = countingDetector({
  name: 'connect_failures',
  states: ['SYN_SENT', 'CLOSE'],
  observes: 'transitions out of SYN_SENT that carry an error, per destination and errno',
  explanation: 'Outgoing connections that never got past SYN_SENT. ECONNREFUSED: the host answered with RST, nothing listens on that port (service down, wrong port). ETIMEDOUT: no answer at all (host down, firewall dropping, overload). EHOSTUNREACH / ENETUNREACH: no route or an ICMP unreachable (routing, interface, firewall reject). Many SYN_SENT to many destinations can also be a scan. Look at the destination, the owner process and its configuration.',
  thresholds: { ...WINDOW, connectFailures: count(10, 'failed connects to one destination for one reason within the window (default 10)') },
  counts: (e, _oldV, newV) => (newV === S.CLOSE && isConnectFailure(e.oldState, e.error) ? `${e.netns}|${e.daddr}|${e.dport}|${e.error}` : null),
  fires(k, n, t, windowS) {
    if (n < t.connectFailures) return null;
    const [netns, daddr, dport, reason] = k.split('|') as [string, string, string, string];
    const dest = endpoint(daddr, Number(dport));
    return finding({
      detector: 'connect_failures',
      key: `connect_failures/${k.replaceAll('|', '/')}`,
      netns: Number(netns),
      summary: `${n} connects to ${dest} failed with ${reason} in netns ${netns} within ${seconds(windowS * 1e9)}`,
      value: n,
      threshold: t.connectFailures,
      labels: { unit: 'failed connects', destination: dest, reason },
    });
  },
});
