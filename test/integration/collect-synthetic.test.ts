import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Collector } from '../../src/collect/collector.js';
import { mergeSnapshots } from '../../src/collect/views.js';
import { openStore } from '../../src/collect/open-store.js';
import type { Store } from '../../src/collect/store.js';
import { clickHouseAvailable, startClickHouse, type TestClickHouse } from './clickhouse.js';
import { pb } from '../../src/publish/wire.js';
import { HistogramSet } from '../../src/track/index.js';
import { startNats, type TestNats } from './helpers.js';
import { BOOT_TO_UNIX_NS, publishAll, refused, summaryMsg, transitionsMsg, until } from './collect-helpers.js';

describe.skipIf(!clickHouseAvailable)('the fleet collector on recorded agent messages', () => {
  let nats: TestNats;
  let ch: TestClickHouse;
  const dir = mkdtempSync(join(tmpdir(), 'tcpdwell-collect-'));
  const collectors: Collector[] = [];
  const stores: Store[] = [];
  let db = 0;

  beforeAll(async () => {
    ch = await startClickHouse();
  });
  afterAll(async () => {
    await ch?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    nats = await startNats();
    db++;
  });
  afterEach(async () => {
    for (const c of collectors.splice(0)) await c.stop().catch(() => {});
    for (const s of stores.splice(0)) await s.close().catch(() => {});
    await nats?.cleanup();
  });

  /** A store for this test: ClickHouse (instances share it), or a DuckDB file (one instance). */
  const storeOf = async (kind: 'clickhouse' | 'duckdb') => {
    const s = await openStore(kind === 'clickhouse' ? ch.spec(`t${db}`) : join(dir, `t${db}.duckdb`));
    stores.push(s);
    return s;
  };
  const start = async (instance: string, kind: 'clickhouse' | 'duckdb' = 'clickhouse', extra: { gapGraceS?: number } = {}) => {
    const c = await Collector.start({
      connection: { servers: [nats.url] },
      store: await storeOf(kind),
      instance,
      batch: 7,
      evaluateIntervalMs: 200,
      thresholds: { closeWaitAgeS: 30, closeWaitMinHosts: 2 },
      ...extra,
    });
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
    // Continuity: each instance knows every run whole (it reads what the other stored), no holes.
    for (const c of [a, b]) {
      await until(() => c.agentRuns().every((r) => r.upTo === 41), 5000, `${c.instance}'s view of the runs`);
      expect(c.agentRuns().map((r) => [r.host, r.upTo, r.ranges, r.lost]).sort()).toEqual([
        ['web-1', 41, 0, 0],
        ['web-2', 41, 0, 0],
      ]);
    }
    // The store holds every message and event once.
    const q = await stores[0]!.sql("SELECT host, count() AS messages, uniqExact(host, boot_id, epoch, seq) AS distinct_messages FROM messages GROUP BY host ORDER BY host");
    expect(q.rows).toEqual([
      ['web-1', 41n, 41n],
      ['web-2', 41n, 41n],
    ]);
    expect((await stores[0]!.sql('SELECT count() FROM events')).rows).toEqual([[160n]]);
  });

  it('a store outage holds acks back: nothing is counted or acked while it lasts, everything is stored once after', async () => {
    const now = BigInt(Date.now()) * 1_000_000n - BOOT_TO_UNIX_NS;
    const msg = (seq: number) => transitionsMsg('db-9', seq, refused(BigInt(seq), now));
    const lines: string[] = [];
    const c = await Collector.start({ connection: { servers: [nats.url] }, store: await storeOf('clickhouse'), batch: 7, log: (l) => lines.push(l) });
    collectors.push(c);
    await publishAll(nats.url, Array.from({ length: 10 }, (_, i) => msg(i + 1)));
    await until(() => c.stats().counted === 10, 10_000, '10 counted');
    await ch.kill();
    try {
      await publishAll(nats.url, Array.from({ length: 10 }, (_, i) => msg(i + 11)));
      await until(() => c.stats().storeErrors > 0, 10_000, 'the store refusing');
      await sleep(1000);
      expect(c.stats().counted).toBe(10);
      const nc = await connect({ servers: nats.url });
      const info = await (await jetstreamManager(nc)).consumers.info('TCPDWELL', 'tcpdwell-collect');
      await nc.close();
      expect(info.num_ack_pending + info.num_pending).toBeGreaterThan(0);
      expect(lines.filter((l) => /refused the batch.*holding acks back/.test(l)).length).toBeGreaterThan(0);
    } finally {
      await ch.start();
    }
    await until(() => c.stats().counted === 20, 20_000, 'all 20 counted after the outage');
    expect((await stores[0]!.sql('SELECT count(), uniqExact(seq) FROM messages')).rows).toEqual([[20n, 20n]]);
    expect((await stores[0]!.sql('SELECT count() FROM events')).rows).toEqual([[40n]]);
  });

  it('a restarted instance resumes from the durable consumer without counting anything twice', async () => {
    const now = BigInt(Date.now()) * 1_000_000n - BOOT_TO_UNIX_NS;
    const first = Array.from({ length: 20 }, (_, i) => transitionsMsg('db-1', i + 1, refused(BigInt(i), now)));
    await publishAll(nats.url, first);
    const path = join(dir, `restart${db}.duckdb`);
    const a = await Collector.start({ connection: { servers: [nats.url] }, store: await openStore(path), instance: 'a', batch: 7 });
    await until(() => a.stats().counted === 20, 10_000, '20 counted');
    await a.stop();
    await (a as unknown as { store: Store }).store.close();
    // Meanwhile: more messages, and the agent re-sends seqs 15..20 (their ids outside the dedupe window).
    const second = Array.from({ length: 10 }, (_, i) => transitionsMsg('db-1', 21 + i, refused(BigInt(21 + i), now)));
    await publishAll(nats.url, [...first.slice(14).map((m) => ({ ...m, msgId: undefined })), ...second]);
    const againStore = await openStore(path);
    stores.push(againStore);
    const again = await Collector.start({ connection: { servers: [nats.url] }, store: againStore, instance: 'a', batch: 7, gapGraceS: 0.1 });
    collectors.push(again);
    await until(() => again.stats().counted + again.stats().duplicates === 16, 10_000, '16 deliveries');
    expect(again.stats()).toMatchObject({ counted: 10, duplicates: 6 });
    // It takes up the run where the store says it stands: no hole is made up for seqs 1..20.
    await sleep(1500);
    expect(again.agentRuns()[0]).toMatchObject({ host: 'db-1', upTo: 30, messages: 10, lost: 0, pending: 0 });
    expect(again.stats().holesDeclared).toBe(0);
  });

  it('a sequence hole is declared lost once, per host, stored once, and costs nothing afterwards', async () => {
    const now = BigInt(Date.now()) * 1_000_000n - BOOT_TO_UNIX_NS;
    const m = [1, 2, 3, 6, 7].map((seq) => transitionsMsg('lossy', seq, refused(BigInt(seq), now)));
    await publishAll(nats.url, m);
    const lines: string[] = [];
    const c = await Collector.start({ connection: { servers: [nats.url] }, store: await storeOf('duckdb'), gapGraceS: 0.5, log: (l) => lines.push(l) });
    collectors.push(c);
    await until(() => c.stats().counted === 5, 10_000);
    expect(c.agentRuns()[0]).toMatchObject({ upTo: 3, ranges: 1, maxSeq: 7, pending: 2 });
    await until(() => c.stats().holesDeclared === 1, 5000, 'the hole declared');
    expect(c.gaps()).toEqual({ lossy: 2 });
    expect(c.agentRuns()[0]).toMatchObject({ upTo: 7, ranges: 0, lost: 2, pending: 0 });
    expect(lines.filter((l) => /declared lost/.test(l))).toEqual([expect.stringMatching(/agent lossy .*2 messages \(seq 4\.\.5\) missing/)]);
    // What comes after the hole folds straight into the prefix.
    await publishAll(nats.url, [8, 9].map((seq) => transitionsMsg('lossy', seq, refused(BigInt(seq), now))));
    await until(() => c.stats().counted === 7, 5000);
    expect(c.agentRuns()[0]).toMatchObject({ upTo: 9, ranges: 0, lost: 2 });
    await sleep(1200);
    expect(c.stats().holesDeclared).toBe(1);
    expect((await stores[0]!.sql('SELECT host, from_seq, to_seq FROM holes')).rows).toEqual([['lossy', 4n, 5n]]);
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
    const c = await start('a', 'duckdb');
    // The good one is counted on its own path (stored first): wait for both.
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
    // Whichever published it, both hold it from the bucket after their next evaluation.
    await until(() => a.firing().length === 1 && b.firing().length === 1, 5000, 'the alert state on both');
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
