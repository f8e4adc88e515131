/** CLOSE_WAIT leak: sockets the peer closed that the application never closes, by owner process. */
import { endpoint } from '../../decode/index.js';
import { S } from '../states.js';
import { count, defineDetector, duration, seconds } from './detector.js';

interface Group {
  netns: number;
  pid: number | null;
  comm: string | null;
  count: number;
  aged: number;
  oldest: number;
  slot: number;
}

export const closeWaitLeak = defineDetector({
  name: 'close_wait_leak',
  states: ['CLOSE_WAIT'],
  observes: 'the live table: CLOSE_WAIT sockets per owner process, their age and how their count grows',
  explanation: 'CLOSE_WAIT means the peer has closed its side and the kernel is waiting for this application to call close(). Sockets that stay there are a descriptor leak: a code path that stops reading on EOF, an error path that forgets close(), or a pool that never notices dead connections. Look at the owner process: its open descriptors (ls /proc/PID/fd), the code that handles the peer closing, and whether the count keeps growing.',
  thresholds: {
    closeWaitAgeNs: duration(60_000_000_000n, 'a CLOSE_WAIT socket older than this counts as leaked (default 60 s)'),
    closeWaitMinSockets: count(1, 'leaked CLOSE_WAIT sockets of one owner before it fires (default 1)'),
    closeWaitGrowthEvaluations: count(3, "also fire when an owner's CLOSE_WAIT count grew at this many evaluations in a row (default 3)..."),
    closeWaitGrowthMinCount: count(50, '...and has reached at least this many (default 50)'),
  },
  create(ctx) {
    const history = new Map<string, { count: number; grew: number }>();
    let groups = new Map<string, Group>();
    let now = 0;
    let ageMin = 0;
    return {
      begin(nowNs) {
        groups = new Map();
        now = Number(nowNs);
        ageMin = Number(ctx.thresholds().closeWaitAgeNs);
      },
      socket(table, slot, state) {
        if (state !== S.CLOSE_WAIT) return;
        const netns = table.netnsOf(slot);
        const pid = table.ownerPid(slot);
        const k = `${netns}/${pid ?? 'unknown'}`;
        let g = groups.get(k);
        if (!g) groups.set(k, (g = { netns, pid, comm: table.ownerComm(slot), count: 0, aged: 0, oldest: Infinity, slot }));
        g.count++;
        const entered = table.entered(slot);
        if (now - entered >= ageMin) g.aged++;
        if (entered < g.oldest) {
          g.oldest = entered;
          g.slot = slot;
        }
      },
      evaluate(table, _nowNs, out) {
        const t = ctx.thresholds();
        for (const k of history.keys()) if (!groups.has(k)) history.delete(k);
        for (const [k, g] of groups) {
          const h = history.get(k) ?? { count: 0, grew: 0 };
          h.grew = g.count > h.count ? h.grew + 1 : 0;
          h.count = g.count;
          history.set(k, h);
          const aged = g.aged >= t.closeWaitMinSockets;
          const growing = h.grew >= t.closeWaitGrowthEvaluations && g.count >= t.closeWaitGrowthMinCount;
          if (!aged && !growing) continue;
          const id = table.identity(g.slot);
          const who = g.pid !== null ? `${g.comm ?? '?'} (pid ${g.pid})` : 'an unknown process (socket older than the agent)';
          const why = aged ? `${g.aged} of them for more than ${seconds(Number(t.closeWaitAgeNs))}` : `growing for ${h.grew} evaluations in a row`;
          out.push({
            detector: 'close_wait_leak',
            key: `close_wait_leak/${k}`,
            netns: g.netns,
            summary:
              `${who} holds ${g.count} socket${g.count === 1 ? '' : 's'} in CLOSE_WAIT in netns ${g.netns}, ${why}; ` +
              `the oldest (${endpoint(id.saddr, id.sport)} ← ${endpoint(id.daddr, id.dport)}) for ${seconds(now - g.oldest)}`,
            value: aged ? g.aged : g.count,
            threshold: aged ? t.closeWaitMinSockets : t.closeWaitGrowthMinCount,
            ownerPid: g.pid,
            ownerComm: g.comm,
            labels: {
              unit: aged ? 'sockets past the age threshold' : 'sockets',
              sockets: String(g.count),
              oldestAgeNs: String(Math.round(now - g.oldest)),
              local: endpoint(id.saddr, id.sport),
              remote: endpoint(id.daddr, id.dport),
            },
          });
        }
      },
    };
  },
});
