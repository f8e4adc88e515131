import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Agent } from '../../src/agent/agent.js';
import { Collector } from '../../src/collect/collector.js';
import { mergeSnapshots } from '../../src/collect/views.js';
import { freePort, startLocalNats, type LocalNats } from '../../src/publish/nats-server.js';
import { kernelAvailable, TestNetns, EVENTS_PER_CONNECTION } from '../kernel/helpers.js';
import { clusterNatsServer, contiguousOnce, expectedLessGaps, readStream, seqsByEpoch, transitionEvents } from './helpers.js';
import { until } from './collect-helpers.js';
import { openStore } from '../../src/collect/open-store.js';
import type { Store } from '../../src/collect/store.js';
import { clickHouseAvailable, startClickHouse, type TestClickHouse } from './clickhouse.js';

describe.skipIf(!kernelAvailable || !clickHouseAvailable)('a three-node NATS cluster with a replicated stream', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcpdwell-cluster-'));
  const nodes: (LocalNats | null)[] = [];
  const cleanups: (() => Promise<void> | void)[] = [];

  let ch: TestClickHouse | null = null;
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
    await ch?.cleanup();
    for (const n of nodes) await n?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('one node (the stream leader) stopped while agents publish and collectors consume: nothing lost, nothing doubled', async () => {
    const routes = await Promise.all([0, 1, 2].map(() => freePort()));
    const started = await Promise.all(
      [0, 1, 2].map((i) =>
        startLocalNats({
          bin: clusterNatsServer(),
          storeDir: join(dir, `n${i}`),
          cluster: { serverName: `n${i}`, clusterName: 'tcpdwell-test', routePort: routes[i]!, peerRoutePorts: routes.filter((_, j) => j !== i) },
        }),
      ),
    );
    nodes.push(...started);
    const urls = started.map((n) => n.url);
    // The first collector creates the stream with 3 replicas (before any agent creates it with 1),
    // once the cluster has elected its JetStream meta leader.
    ch = await startClickHouse();
    const collectors: Collector[] = [];
    const stores: Store[] = [];
    const startCollector = async (instance: string, servers: string[]) => {
      const deadline = Date.now() + 20_000;
      const store = await openStore(ch!.spec());
      stores.push(store);
      cleanups.push(() => store.close());
      for (;;) {
        try {
          const c = await Collector.start({ connection: { servers }, store, instance, replicas: 3, batch: 16, ackWaitS: 5 });
          collectors.push(c);
          cleanups.push(() => c.stop().then(() => undefined));
          return c;
        } catch (err) {
          if (Date.now() > deadline) throw err;
          await sleep(500);
        }
      }
    };
    const c1 = await startCollector('one', urls);
    const c2 = await startCollector('two', [urls[1]!, urls[2]!, urls[0]!]);
    const nc = await connect({ servers: urls });
    cleanups.push(() => nc.close());
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info('TCPDWELL');
    expect(info.config.num_replicas).toBe(3);

    const hosts = ['east-1', 'west-1'];
    const ns = hosts.map(() => new TestNetns());
    cleanups.push(() => ns.forEach((n) => n.delete()));
    const agents = await Promise.all(
      hosts.map((host, i) => {
        const spoolDir = mkdtempSync(join(dir, 'spool-'));
        return Agent.start({ host, connection: { servers: urls }, spoolDir, flushIntervalMs: 50, summaryIntervalMs: 60_000, tracer: { netns: [ns[i]!.ns.inode] } });
      }),
    );
    await Promise.all(ns.map((n, i) => n.run('burst', '127.0.0.1', 8701 + i, 30)));
    await sleep(300);
    const leader = (await jsm.streams.info('TCPDWELL')).cluster?.leader;
    const victim = started.findIndex((_, i) => `n${i}` === leader);
    expect(victim).toBeGreaterThanOrEqual(0);
    await started[victim]!.stop();
    nodes[victim] = null;
    await Promise.all(ns.map((n, i) => n.run('burst', '127.0.0.1', 8711 + i, 30)));
    // Every event read by the agents first (the spools can be empty before the second burst's
    // last events reach them: 30 were missing once), then they ride out the failover on their
    // spools (an agent connected to the stopped node reconnects first).
    await until(
      () => agents.every((a) => a.status().tracker.events + a.status().drops.state_gaps >= 2 * (30 * EVENTS_PER_CONNECTION + 2)),
      15_000,
      () => `every event in the agents: ${JSON.stringify(agents.map((a) => ((s) => ({ events: s.events, tracker: s.tracker, drops: s.drops }))(a.status())))}`,
    );
    await until(() => agents.every((a) => a.status().spool.messages === 0), 30_000, 'spools drained');
    const finals = await Promise.all(agents.map((a) => a.stop(20_000)));
    for (const s of finals) expect(s.spool.messages).toBe(0);

    const survivor = urls.find((_, i) => i !== victim)!;
    // Creating a consumer can time out while the cluster settles after the failover: retry.
    let all: Awaited<ReturnType<typeof readStream>> | null = null;
    for (let i = 0; !all; i++) all = await readStream(survivor).catch((err) => (i < 10 ? sleep(500).then(() => null) : Promise.reject(err)));
    const stream = all.filter((m) => m.subject !== 'tcpdwell.v1.alerts');
    const expected = new Map<string, number>();
    for (const host of hosts) {
      const mine = stream.filter((m) => m.header.hostId === host);
      for (const seqs of seqsByEpoch(mine).values()) expect(contiguousOnce(seqs)).toBe(true);
      const events = transitionEvents(mine);
      expected.set(host, expectedLessGaps(events, 2 * (30 * EVENTS_PER_CONNECTION + 2)));
      expect(events.length).toBe(expected.get(host));
    }
    const counted = () => collectors.reduce((n, c) => n + c.stats().counted, 0);
    await until(() => counted() === stream.length, 30_000, `${stream.length} counted`);
    await sleep(500);
    expect(counted()).toBe(stream.length);
    const fleet = mergeSnapshots(collectors.map((c) => c.snapshot()));
    for (const host of hosts) expect(fleet.events[host]).toBe(expected.get(host));
    // The store holds every message once; c1 knows every run whole from it (it reads what c2
    // stored), with nothing missing.
    const q = await stores[0]!.sql('SELECT count(), uniqExact(host, boot_id, epoch, seq) FROM messages');
    expect(q.rows).toEqual([[BigInt(stream.length), BigInt(stream.length)]]);
    await until(() => c1.agentRuns().length > 0 && c1.agentRuns().every((r) => r.ranges === 0 && r.upTo === r.maxSeq), 10_000, "c1's view of every agent run complete").catch(() => undefined);
    expect(c1.agentRuns().map((r) => ({ host: r.host, ranges: r.ranges, gap: r.maxSeq - r.upTo, lost: r.lost }))).toEqual(
      c1.agentRuns().map((r) => ({ host: r.host, ranges: 0, gap: 0, lost: 0 })),
    );
    void c2;
  }, 90_000);
});
