import { describe, expect, it } from 'vitest';
import { Continuity, MAX_RANGES, RunContinuity } from '../../src/collect/continuity.js';
import { classify } from '../../src/collect/messages.js';
import { evaluateFleetRules, DEFAULT_FLEET_THRESHOLDS } from '../../src/collect/rules.js';
import { buildTimelines, renderTimeline } from '../../src/collect/query.js';
import { parseSpan, parseTime } from '../../src/cli/options.js';
import { hdrToBuckets } from '../../src/collect/metrics.js';
import { HistogramSet } from '../../src/track/index.js';
import type { HostRecord } from '../../src/collect/views.js';
import { ev, refused, transitionsMsg } from '../integration/collect-helpers.js';

describe('sequence continuity: a prefix and a few ranges per agent run', () => {
  it('counts each seq once, in any order, and folds the contiguous run', () => {
    const r = new RunContinuity('h', 'b', 1);
    expect([3, 1, 1, 5].map((s) => r.mark(s, 0))).toEqual(['new', 'new', 'duplicate', 'new']);
    expect(r.toJSON()).toMatchObject({ upTo: 1, ranges: 2, maxSeq: 5, messages: 3, pending: 2 });
    expect([2, 3, 4].map((s) => r.mark(s, 10))).toEqual(['new', 'duplicate', 'new']);
    expect(r.toJSON()).toMatchObject({ upTo: 5, ranges: 0, pending: 0, holeSinceMs: null });
    expect(r.has(4)).toBe(true);
    expect(r.has(6)).toBe(false);
  });

  it('declares a hole lost once, after the grace, and a refilled hole starts afresh', () => {
    const r = new RunContinuity('h', 'b', 1);
    r.mark(1, 1000);
    r.mark(3, 1000);
    expect(r.settle(1500, 1000)).toEqual([]);
    r.mark(2, 1900); // hole 2 filled …
    r.mark(5, 1900); // … and a new one at 4, whose grace starts now
    expect(r.settle(2500, 1000)).toEqual([]);
    expect(r.settle(2900, 1000)).toEqual([{ host: 'h', bootId: 'b', epoch: 1, fromSeq: 4, toSeq: 4, sinceMs: 1900, declaredAtMs: 2900 }]);
    expect(r.settle(10_000, 1000)).toEqual([]); // reported once
    expect(r.toJSON()).toMatchObject({ upTo: 5, lost: 1, pending: 0 });
    // It comes after all: counted once, as late; the loss is taken back.
    expect(r.mark(4, 11_000)).toBe('late');
    expect(r.mark(4, 11_001)).toBe('duplicate');
    expect(r.missing()).toBe(0);
  });

  it('a permanent hole costs nothing after it is declared: later seqs fold into the prefix', () => {
    const r = new RunContinuity('h', 'b', 1);
    r.mark(1, 0);
    for (let s = 3; s <= 50_000; s++) r.mark(s, 0);
    // One range above the hole, however many seqs it holds.
    expect(r.toJSON()).toMatchObject({ upTo: 1, ranges: 1, pending: 1 });
    expect(r.settle(60_000, 60_000)).toHaveLength(1);
    expect(r.toJSON()).toMatchObject({ upTo: 50_000, ranges: 0, lost: 1 });
    expect(r.mark(50_001, 60_001)).toBe('new');
    expect(r.toJSON()).toMatchObject({ upTo: 50_001, ranges: 0 });
  });

  it('with the store as the gate, a seq below the prefix known to be new is late', () => {
    const r = new RunContinuity('h', 'b', 1);
    r.load(100, 3);
    expect(r.mark(101, 0, 'new')).toBe('new');
    expect(r.mark(50, 0, 'new')).toBe('late');
    expect(r.toJSON()).toMatchObject({ upTo: 101, lost: 3, late: 1 });
  });

  it('without a store, a run first met mid-way starts there and counts earlier seqs once if they come', () => {
    const r = new RunContinuity('h', 'b', 1);
    r.baseline(40);
    expect(r.mark(40, 0)).toBe('new');
    expect(r.mark(39, 0)).toBe('new');
    expect(r.mark(39, 0)).toBe('duplicate');
    expect(r.settle(1e9, 0)).toEqual([]);
  });

  it('keeps the ranges bounded when every other message is missing', () => {
    const r = new RunContinuity('h', 'b', 1);
    for (let s = 2; s <= 2 * (MAX_RANGES + 10); s += 2) r.mark(s, 0);
    expect(r.toJSON().ranges).toBeLessThanOrEqual(MAX_RANGES);
    expect(r.lost).toBeGreaterThan(0);
  });

  it('Continuity keys runs by host, boot and epoch and sums lost messages per host', () => {
    const c = new Continuity();
    c.run('a', 'b1', 1).mark(2, 0);
    c.run('a', 'b2', 1).mark(3, 0);
    c.run('z', 'b', 1).mark(1, 0);
    expect(c.settle(100, 50)).toHaveLength(2);
    expect(c.missingByHost()).toEqual({ a: 3, z: 0 });
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

describe("the views' decode (no store): counts and failures without building events", () => {
  const now = 5_000_000_000n;
  const msgs = [
    transitionsMsg('web-1', 1, [...refused(1n, now), ...refused(2n, now + 10n, '10.9.8.7', 443), ev({ tsNs: now, cookie: 3n, oldState: 'SYN_SENT', newState: 'ESTABLISHED', enteredNs: now - 5n, dwellNs: 5n })]),
    transitionsMsg('web-1', 2, [ev({ tsNs: now, cookie: 4n, family: 'inet6', saddr: '::1', daddr: 'fe80::1', oldState: 'SYN_SENT', newState: 'CLOSE', enteredNs: now - 9n, dwellNs: 9n, error: 'ETIMEDOUT' })]),
  ];
  it('gives the same rows and failed connects as the full decode', () => {
    for (const m of msgs) {
      const full = classify(m.subject, m.data, false, 'full');
      const views = classify(m.subject, m.data, false, 'views');
      if (!full.ok || !views.ok || full.message.kind !== 'transitions' || views.message.kind !== 'transitions') throw new Error('did not decode');
      expect(views.message.rows).toBe(full.message.rows);
      expect(views.message.failures).toEqual(full.message.failures);
      expect(views.message.id).toEqual(full.message.id);
    }
    const v = classify(msgs[1]!.subject, msgs[1]!.data, false, 'views');
    expect(v.ok && v.message.kind === 'transitions' && v.message.failures).toEqual([{ error: 'ETIMEDOUT', destination: expect.stringMatching(/^\[fe80::1\]:\d+$/) }]);
  });

  it('sets aside a truncated or inconsistent batch, as the full decode does', () => {
    const data = msgs[0]!.data;
    for (let cut = 1; cut < data.length; cut += 7) {
      const r = classify(msgs[0]!.subject, data.subarray(0, cut), false, 'views');
      if (!r.ok && !r.own) expect(['undecodable', 'bad_header']).toContain(r.reason);
    }
  });
});
