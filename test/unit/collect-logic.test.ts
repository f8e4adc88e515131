import { describe, expect, it } from 'vitest';
import { gapCount, hasSeen, markSeen, missingCount, newSeqState } from '../../src/collect/continuity.js';
import { classify } from '../../src/collect/messages.js';
import { evaluateFleetRules, DEFAULT_FLEET_THRESHOLDS } from '../../src/collect/rules.js';
import { buildTimelines, renderTimeline } from '../../src/collect/query.js';
import { parseSpan, parseTime } from '../../src/cli/options.js';
import { hdrToBuckets } from '../../src/collect/metrics.js';
import { HistogramSet } from '../../src/track/index.js';
import type { HostRecord } from '../../src/collect/views.js';
import { ev, refused, transitionsMsg } from '../integration/collect-helpers.js';

describe('sequence continuity: the exactly-once gate', () => {
  it('counts each seq once, in any order, and folds the contiguous run', () => {
    let s = newSeqState('h', 'b', 1);
    const r1 = markSeen(s, [3, 1, 1, 5], {}, 0);
    expect([...r1.fresh].sort()).toEqual([1, 3, 5]);
    s = r1.state;
    expect(s).toMatchObject({ upTo: 1, above: [3, 5], maxSeq: 5, messages: 3 });
    expect(missingCount(s)).toBe(2);
    const r2 = markSeen(s, [2, 3, 4], { ringFull: 7 }, 10);
    expect([...r2.fresh].sort()).toEqual([2, 4]);
    expect(r2.state).toMatchObject({ upTo: 5, above: [], holeSeq: null, drops: { ringFull: 7 } });
    expect(hasSeen(r2.state, 4)).toBe(true);
    expect(hasSeen(r2.state, 6)).toBe(false);
  });

  it('reports a hole as a gap only once it has outlived the grace, and a refilled hole starts afresh', () => {
    let s = markSeen(newSeqState('h', 'b', 1), [1, 3], {}, 1000).state;
    expect(gapCount(s, 1500, 1000)).toBe(0);
    expect(gapCount(s, 2000, 1000)).toBe(1);
    s = markSeen(s, [2, 5], {}, 1900).state; // hole 2 filled, a new hole at 4
    expect(s.holeSeq).toBe(4);
    expect(gapCount(s, 2500, 1000)).toBe(0);
  });
});

describe('classifying stream messages', () => {
  it('skips the collector\'s own alerts and sets aside what does not decode, with a reason', () => {
    const good = transitionsMsg('web-1', 1, refused(1n, 1n));
    expect(classify('tcpdwell.v1.alerts', new Uint8Array())).toEqual({ ok: false, own: true });
    expect(classify(good.subject, good.data)).toMatchObject({ ok: true, message: { kind: 'transitions', id: { host: 'web-1', epoch: 1, seq: 1 } } });
    expect(classify('tcpdwell.v1.web-1.transitions', new Uint8Array([0xff]))).toMatchObject({ ok: false, reason: 'undecodable' });
    expect(classify('tcpdwell.v1.web-1.nope', good.data)).toMatchObject({ ok: false, reason: 'unknown_kind' });
    expect(classify('tcpdwell.v1.a.b.c', good.data)).toMatchObject({ ok: false, reason: 'bad_subject' });
    expect(classify('tcpdwell.v1.web-2.transitions', good.data)).toMatchObject({ ok: false, reason: 'bad_header' });
  });
});

describe('fleet rules', () => {
  const host = (name: string, comm: string, ageS: number, tw = 0): HostRecord => ({
    host: name,
    bootId: 'b',
    epoch: 1,
    seq: 1,
    atMs: 1_000_000,
    states: { TIME_WAIT: tw },
    stuck: [{ state: 'CLOSE_WAIT', timewait: false, ageS, lowerBound: false, ownerComm: comm, ownerPid: 1, local: '10.0.0.1:80', remote: '10.0.0.2:5', localPort: 80 }],
    eventsTotal: 0,
  });
  it('fire a CLOSE_WAIT leak only when one process leaks on N hosts, and TIME_WAIT pressure per host; stale hosts are left out', () => {
    const t = { ...DEFAULT_FLEET_THRESHOLDS, closeWaitAgeS: 60, closeWaitMinHosts: 2, timeWaitSockets: 100 };
    expect(evaluateFleetRules([host('a', 'api', 90), host('b', 'web', 90)], t, 1_000_000)).toEqual([]);
    const fired = evaluateFleetRules([host('a', 'api', 90), host('b', 'api', 30), host('c', 'api', 61, 150)], t, 1_000_000);
    expect(fired.map((a) => a.key)).toEqual(['fleet_close_wait_leak/api', 'time_wait_pressure/c']);
    expect(fired[0]!.labels).toMatchObject({ hosts: 'a,c', ports: '80' });
    expect(evaluateFleetRules([host('a', 'api', 90), host('c', 'api', 90)], t, 1_000_000 + 301_000)).toEqual([]);
  });
});

describe('query timelines', () => {
  it('group events by socket, keep a connection whole when any of it is in the window, and drop re-sent duplicates', () => {
    const base = 5_000_000_000n;
    const events = [...refused(7n, base, '10.0.0.9', 81), ...refused(7n, base, '10.0.0.9', 81), ev({ tsNs: base, cookie: 8n, dport: 443 })];
    const inputs = [{ host: 'h', bootId: 'b', bootToUnixNs: 1_700_000_000_000_000_000n, events, records: [] }];
    const at = Number((base + 1_700_000_000_000_000_000n) / 1_000_000n);
    const t = buildTimelines(inputs, { sinceMs: at - 1, untilMs: at + 1, port: 81 });
    expect(t).toHaveLength(1);
    expect(t[0]!.steps.map((s) => [s.what, s.dwellNs, s.error])).toEqual([
      ['CLOSE->SYN_SENT', null, null],
      ['SYN_SENT->CLOSE', '300000', 'ECONNREFUSED'],
    ]);
    expect(renderTimeline(t[0]!)).toMatch(/SYN_SENT->CLOSE\s+after 300µs .*ECONNREFUSED/);
    expect(buildTimelines(inputs, { sinceMs: at + 10, untilMs: at + 20 })).toHaveLength(0);
    expect(buildTimelines(inputs, { sinceMs: 0, untilMs: at + 20, cookie: 8n })).toHaveLength(1);
  });

  it('parse times as ISO or "how long ago", with one clear error otherwise', () => {
    expect(parseTime('1h', '--since', 10_000_000)).toBe(10_000_000 - 3_600_000);
    expect(parseTime('2024-05-01T08:00:00Z', '--since')).toBe(Date.parse('2024-05-01T08:00:00Z'));
    expect(parseSpan('90s', '--context')).toBe(90_000);
    expect(() => parseTime('yesterday', '--since')).toThrow(/--since yesterday: give a time like/);
  });
});

describe('metrics', () => {
  it('turn an HDR histogram into cumulative Prometheus buckets', () => {
    const hs = new HistogramSet();
    for (const us of [5, 50, 500, 5_000_000]) hs.record(2, false, BigInt(us) * 1000n, 1, 1n, null);
    const b = hdrToBuckets(hs.totals().get('SYN_SENT')!, [1e-5, 1e-3, 1]);
    expect(b.counts).toEqual([1, 3, 3]);
    expect(b.count).toBe(4);
  });
});
