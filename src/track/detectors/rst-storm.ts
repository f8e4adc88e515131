/**
 * RST storms: resets per network namespace, from the kernel's own reset tracepoints
 * (tcp:tcp_send_reset, tcp:tcp_receive_reset: one RESET event per RST, with its direction).
 * A socket end is not a reset: an abort that sent none (a TCP_USER_TIMEOUT or keepalive death)
 * is not counted, and an RST between two sockets of one namespace (loopback) is one RST, sent
 * and received, not two.
 */
import { count, defineDetector, finding, seconds, WINDOW, WindowedCounts } from './detector.js';
import type { TcpEvent } from '../../decode/index.js';

/** How long a sent RST waits for its own arrival in the same namespace (loopback: microseconds). */
const PAIR_NS = 1_000_000_000n;

/** The connection as the receiving end names it: its local end first. */
const receiverKey = (e: TcpEvent) => (e.reason === 'sent' ? `${e.netns}|${e.daddr}|${e.dport}|${e.saddr}|${e.sport}` : `${e.netns}|${e.saddr}|${e.sport}|${e.daddr}|${e.dport}`);

export const rstStorm = defineDetector({
  name: 'rst_storm',
  states: ['ESTABLISHED', 'CLOSE'],
  observes: 'RSTs sent and received (tcp:tcp_send_reset, tcp:tcp_receive_reset), per network namespace',
  explanation:
    'Connections aborted by a reset. Received: a crashing or restarting peer, a middlebox or firewall killing connections, or a refused connect. Sent: this host aborted (a close with unread data, SO_LINGER 0, too many orphans) or answered segments no socket wanted (a closed port, a connection it had already forgotten). Look at which ports and peers, which way the RSTs go, and what restarted.',
  thresholds: { ...WINDOW, resets: count(500, 'RSTs sent or received in a namespace within the window, each counted once (default 500)') },
  create(ctx) {
    const byDirection = new WindowedCounts<string>(ctx);
    /** RSTs seen one way whose other way may still come: receiver's key → when */
    let pending = new Map<string, { tsNs: bigint; reason: TcpEvent['reason'] }>();
    return {
      reset(e) {
        if (e.reason !== 'sent' && e.reason !== 'received') return;
        const k = receiverKey(e);
        const other = pending.get(k);
        if (other && other.reason !== e.reason && e.tsNs - other.tsNs <= PAIR_NS) {
          // The same RST, seen leaving and arriving: counted once already (the way it was seen first).
          pending.delete(k);
          byDirection.add(`${e.netns}|also-${e.reason}`, e.tsNs);
          return;
        }
        if (pending.size >= ctx.maxKeys) for (const [pk, v] of pending) if (e.tsNs - v.tsNs > PAIR_NS) pending.delete(pk);
        if (pending.size < ctx.maxKeys) pending.set(k, { tsNs: e.tsNs, reason: e.reason });
        byDirection.add(`${e.netns}|${e.reason}`, e.tsNs);
      },
      evaluate(_table, nowNs, out) {
        const t = ctx.thresholds();
        const fresh = new Map<string, { tsNs: bigint; reason: TcpEvent['reason'] }>();
        for (const [k, v] of pending) if (nowNs - v.tsNs <= PAIR_NS) fresh.set(k, v);
        pending = fresh;
        const sums = byDirection.sums(nowNs);
        const netnses = new Set([...sums.keys()].map((k) => Number(k.split('|')[0])));
        for (const netns of netnses) {
          // Counted once each, the way it was seen first; `also-*`: the other way of a pair.
          const first = { sent: sums.get(`${netns}|sent`) ?? 0, received: sums.get(`${netns}|received`) ?? 0 };
          const also = { sent: sums.get(`${netns}|also-sent`) ?? 0, received: sums.get(`${netns}|also-received`) ?? 0 };
          const n = first.sent + first.received;
          if (n < t.resets) continue;
          const sent = first.sent + also.sent;
          const received = first.received + also.received;
          const pairs = also.sent + also.received;
          out.push(
            finding({
              detector: 'rst_storm',
              key: `rst_storm/${netns}`,
              netns,
              summary:
                `${n} RSTs in netns ${netns} within ${seconds(byDirection.windowS * 1e9)}: ${sent} sent, ${received} received` +
                (pairs ? ` (${pairs} of them between two sockets of this namespace, so both)` : ''),
              value: n,
              threshold: t.resets,
              labels: { unit: 'RSTs', sent: String(sent), received: String(received), pairs: String(pairs) },
            }),
          );
        }
      },
      reconfigure: () => byDirection.reconfigure(),
      dropped: () => byDirection.dropped,
    };
  },
});
