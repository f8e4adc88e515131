/** TIME_WAIT pressure: timewaits using up the ephemeral ports to one destination, or the namespace's tcp_max_tw_buckets. */
import { endpoint } from '../../decode/index.js';
import { SlotFlag } from '../live-table.js';
import { S } from '../states.js';
import { defineDetector, finding, fraction } from './detector.js';

interface PerNetns {
  total: number;
  tuples: Map<string, number>;
}

export const timeWaitPressure = defineDetector({
  name: 'time_wait_pressure',
  states: ['TIME_WAIT'],
  observes: 'the live table: timewait socks per namespace, and per local address and destination within the ephemeral port range',
  explanation: 'TIME_WAIT is normal: the side that closes first keeps the connection for 60 s (2×MSL) so stray packets cannot hit a new one. But each holds its 4-tuple, so many short connections from one local address to one destination use up the ephemeral ports (net.ipv4.ip_local_port_range) and connect() starts failing with EADDRNOTAVAIL; past net.ipv4.tcp_max_tw_buckets the kernel drops timewait sockets early. Look at connection reuse (keep-alive, pooling) in the owner, net.ipv4.tcp_tw_reuse, and more local addresses or a wider port range.',
  thresholds: {
    timeWaitPortFraction: fraction(0.5, 'TIME_WAIT sockets from one local address to one destination, as a fraction of the ephemeral port range (default 0.5)'),
    timeWaitBucketsFraction: fraction(0.8, 'timewait sockets in a namespace as a fraction of net.ipv4.tcp_max_tw_buckets (default 0.8)'),
  },
  create(ctx) {
    let byNetns = new Map<number, PerNetns>();
    let ranges = new Map<number, { low: number; high: number } | null>();
    return {
      begin() {
        byNetns = new Map();
        ranges = new Map();
      },
      socket(table, slot, state, flags) {
        if (!(flags & SlotFlag.TIMEWAIT)) return;
        const netns = table.netnsOf(slot);
        let tw = byNetns.get(netns);
        if (!tw) byNetns.set(netns, (tw = { total: 0, tuples: new Map() }));
        tw.total++;
        if (state !== S.TIME_WAIT) return;
        let range = ranges.get(netns);
        if (range === undefined) ranges.set(netns, (range = ctx.sysctls.portRange?.(netns) ?? null));
        const sport = table.sport(slot);
        // Only connections that took an ephemeral port use up the range.
        if (range && sport >= range.low && sport <= range.high) {
          const tk = `${table.saddrId(slot)}|${table.daddrId(slot)}|${table.dport(slot)}`;
          tw.tuples.set(tk, (tw.tuples.get(tk) ?? 0) + 1);
        }
      },
      evaluate(table, _nowNs, out) {
        const t = ctx.thresholds();
        for (const [netns, tw] of byNetns) {
          const range = ranges.get(netns);
          if (range) {
            const size = range.high - range.low + 1;
            for (const [k, n] of tw.tuples) {
              if (n < t.timeWaitPortFraction * size) continue;
              const [sa, da, dport] = k.split('|').map(Number) as [number, number, number];
              const local = table.address(sa);
              const dest = endpoint(table.address(da), dport);
              out.push(finding({
                detector: 'time_wait_pressure',
                key: `time_wait_pressure/${netns}/${local}/${dest}`,
                netns,
                summary: `${n} TIME_WAIT sockets from ${local} to ${dest} in netns ${netns} hold ${((100 * n) / size).toFixed(0)} % of the ephemeral port range ${range.low}-${range.high}`,
                value: n / size,
                threshold: t.timeWaitPortFraction,
                labels: { unit: 'fraction of the ephemeral port range', local, destination: dest, sockets: String(n), portRange: `${range.low}-${range.high}` },
              }));
            }
          }
          const max = ctx.sysctls.maxTwBuckets?.(netns) ?? null;
          if (max && tw.total >= t.timeWaitBucketsFraction * max) {
            out.push(finding({
              detector: 'time_wait_pressure',
              key: `time_wait_pressure/${netns}/buckets`,
              netns,
              summary: `${tw.total} timewait sockets in netns ${netns}: ${((100 * tw.total) / max).toFixed(0)} % of net.ipv4.tcp_max_tw_buckets (${max}); past it the kernel skips TIME_WAIT`,
              value: tw.total / max,
              threshold: t.timeWaitBucketsFraction,
              labels: { unit: 'fraction of tcp_max_tw_buckets', sockets: String(tw.total), maxTwBuckets: String(max) },
            }));
          }
        }
      },
    };
  },
});
