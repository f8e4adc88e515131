/**
 * SYN pressure, per listening port: what the kernel says about its listeners (no tracepoint
 * marks a SYN's arrival, and half-open request socks never go through a state transition).
 * Polled: each listener's accept queue (sk_ack_backlog / sk_max_ack_backlog), its request socks
 * (the SYN queue), the SYNs and handshakes it dropped (sk_drops) and the SYN-ACKs retransmitted
 * for it (tcp:tcp_retransmit_synack); per namespace, the netstat counters that say why
 * (ListenOverflows, TCPReqQFullDrop, TCPReqQFullDoCookies, SyncookiesSent, ...). From events:
 * the handshake rate (children entering SYN_RECV). Without polls (a bare Tracker), the request
 * socks a snapshot listed stand in for the SYN queue.
 */
import type { NetstatCounter, NetstatCounters } from '../../kernel/netstat.js';
import { S } from '../states.js';
import { SlotFlag } from '../live-table.js';
import type { ListenerPoll } from '../types.js';
import { count, defineDetector, finding, rate, seconds, WINDOW, WindowedCounts } from './detector.js';

/** Key for per-listener counters: netns and port in one number (u32 × 2^16 < 2^53). */
const listenerKey = (netns: number, port: number): number => netns * 65536 + port;
const splitListenerKey = (k: number): [number, number] => [Math.floor(k / 65536), k % 65536];

/** One listening port of a namespace at the last poll (its sockets summed: IPv4 and IPv6, SO_REUSEPORT groups). */
interface PortQueues {
  acceptQueue: number;
  acceptQueueMax: number;
  requestSocks: number;
  /** some socket's accept queue was over its bound (the kernel's sk_acceptq_is_full): new SYNs are dropped */
  acceptFull: boolean;
  /** some socket's SYN queue was over its bound (inet_csk_reqsk_queue_is_full): new SYNs get a cookie or are dropped */
  synFull: boolean;
  ownerPid: number;
  ownerComm: string;
}

/** The namespace counters an alert quotes, as label names. */
const QUOTED: [NetstatCounter, string][] = [
  ['ListenOverflows', 'listenOverflows'],
  ['ListenDrops', 'listenDrops'],
  ['TCPReqQFullDrop', 'reqQFullDrop'],
  ['TCPReqQFullDoCookies', 'reqQFullDoCookies'],
  ['SyncookiesSent', 'syncookiesSent'],
];

export const synPressure = defineDetector({
  name: 'syn_pressure',
  states: ['NEW_SYN_RECV', 'SYN_RECV', 'LISTEN'],
  observes:
    "listeners' accept and SYN queues, the SYNs they dropped and the SYN-ACKs they retransmitted (polled from the kernel), the namespaces' netstat SYN counters, and the handshake rate per listening port",
  explanation:
    'SYN_RECV is the half-open stage of a handshake: the SYN was answered, the final ACK not yet seen. A listener has two queues: half-open connections (the SYN queue, ss SYN-RECV) and completed ones waiting for accept() (the accept queue, ss Recv-Q of the LISTEN line, bounded by the listen(2) backlog capped by net.core.somaxconn: ss Send-Q). A full accept queue means the application accepts too slowly (or not at all): new SYNs are dropped (ListenOverflows, ListenDrops) and clients wait in SYN_SENT, retransmitting. A full SYN queue, or many half-open connections with SYN-ACKs retransmitted, means handshakes are not completing: a SYN flood (spoofed SYNs), final ACKs lost on the way, or a firewall dropping them; with net.ipv4.tcp_syncookies on, the kernel then answers with cookies (TCPReqQFullDoCookies, SyncookiesSent), off it drops the SYNs (TCPReqQFullDrop). Look at how fast the owner accepts, its backlog and somaxconn, tcp_max_syn_backlog, tcp_syncookies, and the source addresses.',
  thresholds: {
    ...WINDOW,
    synRecvPerSecond: rate(2000, 'handshakes per second on one listening port (sockets entering SYN_RECV) (default 2000)'),
    requestSocksPerListener: count(256, 'half-open connections (request socks) on one listening port (default 256; a full SYN queue fires at any size)'),
    listenerDrops: count(10, 'SYNs or completed handshakes one listening port dropped within the window, its accept or SYN queue full (the kernel\'s sk_drops) (default 10)'),
    synQueueOverflows: count(10, 'SYNs a namespace answered with a cookie or dropped for a full SYN queue (SyncookiesSent + TCPReqQFullDrop) within the window, when no listener alert explains them (default 10)'),
  },
  create(ctx) {
    const handshakes = new WindowedCounts<number>(ctx);
    const drops = new WindowedCounts<number>(ctx);
    const synacks = new WindowedCounts<number>(ctx);
    const counters = new WindowedCounts<string>(ctx);
    let requests = new Map<number, number>();
    let ports = new Map<number, PortQueues>();
    let polls = 0;
    let lastListener = new Map<bigint, { drops: number; synackRetrans: number }>();
    const lastNetstat = new Map<number, NetstatCounters>();

    /** The cumulative counters' growth since the last poll; a listener new since then counts from 0 (its counters start with it). */
    const grew = (now: number, before: number | undefined) => (before === undefined ? (polls > 0 ? now : 0) : Math.max(0, now - before));

    return {
      transition(e, oldV, newV) {
        if (newV === S.SYN_RECV && oldV === S.LISTEN && e.child) handshakes.add(listenerKey(e.netns, e.sport), e.tsNs);
      },
      listeners(poll: ListenerPoll) {
        const next = new Map<number, PortQueues>();
        const seen = new Map<bigint, { drops: number; synackRetrans: number }>();
        // One record per holder: a listener shared by a prefork server's processes comes once
        // per process, the first being the lowest pid (the walk goes in pid order): its owner.
        for (const f of poll.listeners) {
          const q = f.listener;
          if (!q || seen.has(f.cookie)) continue;
          seen.set(f.cookie, { drops: q.drops, synackRetrans: q.synackRetrans });
          const k = listenerKey(f.netns, f.sport);
          let p = next.get(k);
          if (!p) next.set(k, (p = { acceptQueue: 0, acceptQueueMax: 0, requestSocks: 0, acceptFull: false, synFull: false, ownerPid: f.pid, ownerComm: f.comm }));
          p.acceptQueue += q.acceptQueue;
          p.acceptQueueMax += q.acceptQueueMax;
          p.requestSocks += q.requestSocks;
          // The kernel's own tests (6.x): sk_acceptq_is_full and inet_csk_reqsk_queue_is_full, both "more than the bound".
          p.acceptFull ||= q.acceptQueue > q.acceptQueueMax;
          p.synFull ||= q.acceptQueueMax > 0 && q.requestSocks > q.acceptQueueMax;
          const before = lastListener.get(f.cookie);
          const d = grew(q.drops, before?.drops);
          if (d > 0) drops.add(k, poll.atNs, d);
          const r = grew(q.synackRetrans, before?.synackRetrans);
          if (r > 0) synacks.add(k, poll.atNs, r);
        }
        for (const [netns, c] of poll.netstat) {
          const before = lastNetstat.get(netns);
          if (before) for (const [name] of QUOTED) if (c[name] > before[name]) counters.add(`${netns}|${name}`, poll.atNs, c[name] - before[name]);
          lastNetstat.set(netns, c);
        }
        ports = next;
        lastListener = seen;
        polls++;
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
        const dropped = drops.sums(nowNs);
        const retransmitted = synacks.sums(nowNs);
        const netSums = counters.sums(nowNs);
        const windowS = handshakes.windowS;
        const within = seconds(windowS * 1e9);
        const quoted = (netns: number) => Object.fromEntries(QUOTED.map(([name, label]) => [label, String(netSums.get(`${netns}|${name}`) ?? 0)]));
        const explained = new Set<number>();
        for (const k of new Set([...rates.keys(), ...requests.keys(), ...ports.keys(), ...dropped.keys()])) {
          const [netns, port] = splitListenerKey(k);
          const p = ports.get(k);
          const perS = (rates.get(k) ?? 0) / windowS;
          // The kernel's own count when polled; else the request socks a snapshot listed.
          const half = p ? p.requestSocks : (requests.get(k) ?? 0);
          const d = dropped.get(k) ?? 0;
          const rtx = retransmitted.get(k) ?? 0;
          const byDrops = d >= t.listenerDrops;
          const byHalfOpen = half >= t.requestSocksPerListener || (p?.synFull ?? false);
          const byRate = perS >= t.synRecvPerSecond;
          if (!byDrops && !byHalfOpen && !byRate) continue;
          explained.add(netns);
          const where = `listening port ${port} in netns ${netns}`;
          const owner = p ? `${p.ownerComm} (pid ${p.ownerPid})` : 'its owner';
          const queues = p ? `accept queue ${p.acceptQueue}/${p.acceptQueueMax}, ${p.requestSocks} half-open` : `${half} half-open`;
          let summary: string;
          let value: number;
          let threshold: number;
          let unit: string;
          if (byDrops) {
            const why = p?.acceptFull
              ? `its accept queue is full (${p.acceptQueue} waiting, room for ${p.acceptQueueMax}): ${owner} does not accept fast enough`
              : p?.synFull
                ? `its SYN queue is full (${p.requestSocks} half-open, room for ${p.acceptQueueMax})`
                : `(${queues})`;
            summary = `${where} dropped ${d} SYNs or handshakes within ${within}: ${why}`;
            [value, threshold, unit] = [d, t.listenerDrops, 'dropped SYNs'];
          } else if (byHalfOpen) {
            summary =
              `${where} has ${half} half-open connections (request socks${p?.synFull ? `; its SYN queue is full at ${p.acceptQueueMax}` : ''}): handshakes are not completing` +
              (rtx ? `, ${rtx} SYN-ACKs retransmitted within ${within}` : '');
            [value, threshold, unit] = [half, p?.synFull ? Math.min(t.requestSocksPerListener, p.acceptQueueMax) : t.requestSocksPerListener, 'request socks'];
          } else {
            summary = `${where} takes ${perS.toFixed(0)} handshakes/s (sockets entering SYN_RECV)`;
            [value, threshold, unit] = [perS, t.synRecvPerSecond, 'handshakes/s'];
          }
          out.push(
            finding({
              detector: 'syn_pressure',
              key: `syn_pressure/${netns}/${port}`,
              netns,
              summary,
              value,
              threshold,
              ownerPid: p?.ownerPid ?? null,
              ownerComm: p?.ownerComm ?? null,
              labels: {
                unit,
                listenPort: String(port),
                handshakesPerSecond: perS.toFixed(1),
                halfOpen: String(half),
                acceptQueue: p ? `${p.acceptQueue}/${p.acceptQueueMax}` : '',
                drops: String(d),
                synackRetransmits: String(rtx),
                ...quoted(netns),
              },
            }),
          );
        }
        // SYN cookies and SYN-queue drops the kernel counts per namespace only (tcp_syncookies=2
        // sends cookies before any queue fills): an alert of the namespace when no listener's explains them.
        for (const netns of new Set([...netSums.keys()].map((k) => Number(k.split('|')[0])))) {
          if (explained.has(netns)) continue;
          const cookies = netSums.get(`${netns}|SyncookiesSent`) ?? 0;
          const queueDrops = netSums.get(`${netns}|TCPReqQFullDrop`) ?? 0;
          if (cookies + queueDrops < t.synQueueOverflows) continue;
          out.push(
            finding({
              detector: 'syn_pressure',
              key: `syn_pressure/${netns}`,
              netns,
              summary: `netns ${netns} answered ${cookies} SYNs with cookies and dropped ${queueDrops} for a full SYN queue within ${within}`,
              value: cookies + queueDrops,
              threshold: t.synQueueOverflows,
              labels: { unit: 'SYNs', ...quoted(netns) },
            }),
          );
        }
      },
      reconfigure: () => {
        handshakes.reconfigure();
        drops.reconfigure();
        synacks.reconfigure();
        counters.reconfigure();
      },
      dropped: () => handshakes.dropped + drops.dropped + synacks.dropped + counters.dropped,
    };
  },
});
