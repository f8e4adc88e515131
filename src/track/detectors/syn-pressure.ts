/** SYN pressure: handshakes per second and half-open request socks, per listening port. */
import { S } from '../states.js';
import { SlotFlag } from '../live-table.js';
import { count, defineDetector, finding, rate, WINDOW, WindowedCounts } from './detector.js';

/** Key for per-listener counters: netns and port in one number (u32 × 2^16 < 2^53). */
const listenerKey = (netns: number, port: number): number => netns * 65536 + port;
const splitListenerKey = (k: number): [number, number] => [Math.floor(k / 65536), k % 65536];

export const synPressure = defineDetector({
  name: 'syn_pressure',
  states: ['NEW_SYN_RECV', 'SYN_RECV'],
  observes: 'transitions into SYN_RECV per listening port (handshakes), and the request socks a snapshot listed',
  explanation: 'SYN_RECV is the half-open stage of a handshake: the SYN was answered, the final ACK not yet seen. Many at once on a listener mean a SYN flood (spoofed SYNs that never complete), clients behind heavy loss, or an application that accepts too slowly so the queues fill. Look at the source addresses, net.ipv4.tcp_syncookies, the listen backlog (somaxconn, listen(2)) and how fast the owner accepts.',
  thresholds: {
    ...WINDOW,
    synRecvPerSecond: rate(2000, 'handshakes per second on one listening port (sockets entering SYN_RECV) (default 2000)'),
    requestSocksPerListener: count(256, 'half-open connections (request socks) on one listening port at the last snapshot (default 256)'),
  },
  create(ctx) {
    const handshakes = new WindowedCounts<number>(ctx);
    let requests = new Map<number, number>();
    return {
      transition(e, oldV, newV) {
        if (newV === S.SYN_RECV && oldV === S.LISTEN && e.child) handshakes.add(listenerKey(e.netns, e.sport), e.tsNs);
      },
      begin() {
        requests = new Map();
      },
      socket(table, slot, _state, flags) {
        if (!(flags & SlotFlag.REQUEST)) return;
        const k = listenerKey(table.netnsOf(slot), table.sport(slot));
        requests.set(k, (requests.get(k) ?? 0) + 1);
      },
      evaluate(_table, nowNs, out) {
        const t = ctx.thresholds();
        const rates = handshakes.sums(nowNs);
        const windowS = handshakes.windowS;
        for (const k of new Set([...rates.keys(), ...requests.keys()])) {
          const [netns, port] = splitListenerKey(k);
          const perS = (rates.get(k) ?? 0) / windowS;
          const half = requests.get(k) ?? 0;
          const byRate = perS >= t.synRecvPerSecond;
          const byHalfOpen = half >= t.requestSocksPerListener;
          if (!byRate && !byHalfOpen) continue;
          out.push(finding({
            detector: 'syn_pressure',
            key: `syn_pressure/${netns}/${port}`,
            netns,
            summary: byHalfOpen
              ? `listening port ${port} in netns ${netns} had ${half} half-open connections (SYN_RECV request socks) at the last snapshot`
              : `listening port ${port} in netns ${netns} takes ${perS.toFixed(0)} handshakes/s (sockets entering SYN_RECV)`,
            value: byHalfOpen ? half : perS,
            threshold: byHalfOpen ? t.requestSocksPerListener : t.synRecvPerSecond,
            labels: { unit: byHalfOpen ? 'request socks' : 'handshakes/s', listenPort: String(port), handshakesPerSecond: perS.toFixed(1), halfOpen: String(half) },
          }));
        }
      },
      reconfigure: () => handshakes.reconfigure(),
      dropped: () => handshakes.dropped,
    };
  },
});
