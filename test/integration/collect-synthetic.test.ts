import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Collector } from '../../src/collect/collector.js';
import { mergeSnapshots } from '../../src/collect/views.js';
import { pb } from '../../src/publish/wire.js';
import { HistogramSet } from '../../src/track/index.js';
import { startNats, type TestNats } from './helpers.js';
import { BOOT_TO_UNIX_NS, publishAll, refused, summaryMsg, transitionsMsg, until } from './collect-helpers.js';

describe('the fleet collector on recorded agent messages', () => {
  let nats: TestNats;
  const collectors: Collector[] = [];

  beforeEach(async () => {
    nats = await startNats();
  });
  afterEach(async () => {
    for (const c of collectors.splice(0)) await c.stop().catch(() => {});
    await nats?.cleanup();
  });

  const start = async (instance: string) => {
    const c = await Collector.start({ connection: { servers: [nats.url] }, instance, batch: 7, evaluateIntervalMs: 200, thresholds: { closeWaitAgeS: 30, closeWaitMinHosts: 2 } });
    collectors.push(c);
    return c;
  };
  const totals = () => collectors.map((c) => c.stats()).reduce((a, s) => ({ counted: a.counted + s.counted, duplicates: a.duplicates + s.duplicates, own: a.own + s.own }), { counted: 0, duplicates: 0, own: 0 });

  it('two instances count every message once, duplicates in the stream included, and their views sum to the fleet', async () => {
    const now = BigInt(Date.now()) * 1_000_000n - BOOT_TO_UNIX_NS;
    const msgs = [];
    for (const host of ['web-1', 'web-2']) {
      for (let seq = 1; seq <= 40; seq++) msgs.push(transitionsMsg(host, seq, refused(BigInt(seq), now + BigInt(seq) * 1_000_000n, host === 'web-1' ? '10.0.0.9' : '10.0.0.10')));
    }
    msgs.push(summaryMsg('web-1', 41, { states: { ESTABLISHED: 5, TIME_WAIT: 3 }, dwellUs: [100, 200, 300] }));
    msgs.push(summaryMsg('web-2', 41, { states: { ESTABLISHED: 2, LISTEN: 1 }, dwellUs: [1000, 5000] }));
    // Re-sends without a message id: the stream holds them twice; the collectors must not count them twice.
    const dups = msgs.slice(0, 10).map((m) => ({ ...m, msgId: undefined }));
    const [a, b] = await Promise.all([start('a'), start('b')]);
    await publishAll(nats.url, [...msgs, ...dups]);
    await until(() => totals().counted + totals().duplicates === 92, 15_000, 'all 92 deliveries');
    expect(totals()).toMatchObject({ counted: 82, duplicates: 10 });
    expect(a.stats().counted).toBeGreaterThan(0);
    expect(b.stats().counted).toBeGreaterThan(0);

    const fleet = mergeSnapshots([a.snapshot(), b.snapshot()]);
    expect(fleet.messages).toEqual({ 'web-1': { transitions: 40, summary: 1 }, 'web-2': { transitions: 40, summary: 1 } });
    expect(fleet.events).toEqual({ 'web-1': 80, 'web-2': 80 });
    expect(fleet.connectFailures).toEqual({ ECONNREFUSED: { '10.0.0.9:81': 40, '10.0.0.10:81': 40 } });
    // The fleet distribution is exactly the sum of the hosts'.
    const fleetHist = HistogramSet.decode(fleet.histograms.fleet).totals().get('SYN_SENT')!;
    expect(fleetHist.totalCount).toBe(5);
    const sumOfHosts = HistogramSet.decode([...fleet.histograms.byHost['web-1']!, ...fleet.histograms.byHost['web-2']!]).totals().get('SYN_SENT')!;
    expect(fleetHist.getValueAtPercentile(50)).toBe(sumOfHosts.getValueAtPercentile(50));
    expect(fleetHist.maxValue).toBe(sumOfHosts.maxValue);
    // The latest-value views are shared: both instances see both hosts.
    await until(() => a.hosts().length === 2 && b.hosts().length === 2, 5000, 'host records on both instances');
    expect(a.hosts().map((h) => [h.host, h.states])).toEqual([
      ['web-1', { ESTABLISHED: 5, TIME_WAIT: 3 }],
      ['web-2', { ESTABLISHED: 2, LISTEN: 1 }],
    ]);
    // Continuity: every run complete, no gaps.
    expect(a.agentRuns().map((r) => [r.host, r.upTo, r.above.length]).sort()).toEqual([
      ['web-1', 41, 0],
      ['web-2', 41, 0],
    ]);
  });

  it('a restarted instance resumes from the durable consumer without counting anything twice', async () => {
    const now = BigInt(Date.now()) * 1_000_000n - BOOT_TO_UNIX_NS;
    const first = Array.from({ length: 20 }, (_, i) => transitionsMsg('db-1', i + 1, refused(BigInt(i), now)));
    await publishAll(nats.url, first);
    const a = await start('a');
    await until(() => a.stats().counted === 20, 10_000, '20 counted');
    await a.stop();
    collectors.splice(0);
    // Meanwhile: more messages, and the agent re-sends seqs 15..20 (their ids outside the dedupe window).
    const second = Array.from({ length: 10 }, (_, i) => transitionsMsg('db-1', 21 + i, refused(BigInt(21 + i), now)));
    await publishAll(nats.url, [...first.slice(14).map((m) => ({ ...m, msgId: undefined })), ...second]);
    const again = await start('a');
    await until(() => again.stats().counted + again.stats().duplicates === 16, 10_000, '16 deliveries');
    expect(again.stats()).toMatchObject({ counted: 10, duplicates: 6 });
    expect(again.agentRuns()[0]).toMatchObject({ host: 'db-1', upTo: 30, messages: 30 });
  });

  it('a sequence hole is a gap, reported per host, and drop counters are kept per agent run', async () => {
    const now = BigInt(Date.now()) * 1_000_000n - BOOT_TO_UNIX_NS;
    const m = [1, 2, 3, 6, 7].map((seq) => transitionsMsg('lossy', seq, refused(BigInt(seq), now)));
    await publishAll(nats.url, m);
    const c = await Collector.start({ connection: { servers: [nats.url] }, gapGraceS: 0 });
    collectors.push(c);
    await until(() => c.stats().counted === 5, 10_000);
    expect(c.gaps()).toEqual({ lossy: 2 });
    expect(c.agentRuns()[0]).toMatchObject({ upTo: 3, above: [6, 7], maxSeq: 7 });
  });

  it('malformed, unknown-kind, foreign and mislabelled messages are counted, set aside in the dead-letter stream, and acked', async () => {
    const good = transitionsMsg('web-1', 1, refused(1n, 1_000_000n));
    await publishAll(nats.url, [
      good,
      { subject: 'tcpdwell.v1.intruder.transitions', data: new Uint8Array([0xff, 0xff, 0xff]) },
      { subject: 'tcpdwell.v1.web-1.bogus', data: good.data },
      { subject: 'tcpdwell.v1.stray', data: new TextEncoder().encode('{"hello":1}') },
      { subject: 'tcpdwell.v1.web-9.transitions', data: good.data }, // header says web-1
    ]);
    const c = await start('a');
    // The good one is counted on its own path (claimed in the KV bucket first): wait for both.
    await until(() => c.stats().deadLettered === 4 && c.stats().counted === 1, 10_000, '4 set aside and 1 counted');
    expect(c.stats()).toMatchObject({ counted: 1, rejected: { undecodable: 1, unknown_kind: 1, bad_subject: 1, bad_header: 1 } });
    const nc = await connect({ servers: nats.url });
    try {
      const jsm = await jetstreamManager(nc);
      expect((await jsm.streams.info('TCPDWELL_DEADLETTER')).state.messages).toBe(4);
      const m = await jsm.streams.getMessage('TCPDWELL_DEADLETTER', { last_by_subj: 'tcpdwell.deadletter.bad_header' });
      expect(m!.header.get('Tcpdwell-Subject')).toBe('tcpdwell.v1.web-9.transitions');
      // Everything was acked: nothing waits for redelivery.
      const ci = await jsm.consumers.info('TCPDWELL', 'tcpdwell-collect');
      await until(async () => (await jsm.consumers.info('TCPDWELL', 'tcpdwell-collect')).num_ack_pending === 0, 5000, 'acks');
      expect(ci.num_pending).toBe(0);
    } finally {
      await nc.close();
    }
  });

  it('a CLOSE_WAIT leak of one process on two hosts fires one fleet alert, resolves once, and the collectors skip their own alerts', async () => {
    const leak = [{ comm: 'api', ageS: 120, port: 8080 }];
    await publishAll(nats.url, [
      summaryMsg('web-1', 1, { states: { CLOSE_WAIT: 1 }, stuckCloseWait: leak }),
      summaryMsg('web-2', 1, { states: { CLOSE_WAIT: 1 }, stuckCloseWait: leak }),
      summaryMsg('web-3', 1, { states: { CLOSE_WAIT: 1 }, stuckCloseWait: [{ comm: 'other', ageS: 120, port: 9000 }] }),
    ]);
    const a = await start('a');
    const b = await start('b');
    await until(() => a.stats().alertsPublished + b.stats().alertsPublished === 1, 10_000, 'one alert');
    expect(a.firing().map((x) => x.key)).toEqual(['fleet_close_wait_leak/api']);
    // web-2's leak is gone: the alert resolves.
    await publishAll(nats.url, [summaryMsg('web-2', 2, { states: {}, stuckCloseWait: [] })]);
    await until(() => a.stats().alertsPublished + b.stats().alertsPublished === 2, 10_000, 'resolved');
    await until(() => totals().own === 2, 10_000, 'own alerts read back and skipped');
    const nc = await connect({ servers: nats.url });
    try {
      const jsm = await jetstreamManager(nc);
      const alerts = [];
      for (const seq of [1, 2, 3, 4, 5, 6]) {
        const m = await jsm.streams.getMessage('TCPDWELL', { seq }).catch(() => null);
        if (m?.subject === 'tcpdwell.v1.alerts') alerts.push(pb.Alert.decode(m.data));
      }
      expect(alerts.map((x) => [x.kind, x.severity, x.labels.process, x.labels.hosts])).toEqual([
        ['fleet_close_wait_leak', 'firing', 'api', 'web-1,web-2'],
        ['fleet_close_wait_leak', 'resolved', 'api', 'web-1,web-2'],
      ]);
      expect(alerts[0]!.explanation).toMatch(/close\(\)/);
      void jetstream;
    } finally {
      await nc.close();
    }
    expect(totals().counted).toBe(4);
  });
});
