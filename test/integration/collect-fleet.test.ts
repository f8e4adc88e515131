import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { Collector } from '../../src/collect/collector.js';
import { CollectorMetrics } from '../../src/collect/metrics.js';
import { mergeSnapshots } from '../../src/collect/views.js';
import { openStore } from '../../src/collect/open-store.js';
import type { Store } from '../../src/collect/store.js';
import { clickHouseAvailable, startClickHouse, type TestClickHouse } from './clickhouse.js';
import { kernelAvailable, TestNetns, EVENTS_PER_CONNECTION } from '../kernel/helpers.js';
import { readStream, startNats, transitionEvents, type TestNats } from './helpers.js';
import { until } from './collect-helpers.js';

const bin = fileURLToPath(new URL('../../bin/tcpdwell', import.meta.url));

describe.skipIf(!kernelAvailable || !clickHouseAvailable)('the fleet collector with two real agents (two namespaces standing for two hosts)', () => {
  let nats: TestNats;
  const netns: TestNetns[] = [];
  const dirs: string[] = [];
  const collectors: Collector[] = [];

  beforeEach(async () => {
    nats = await startNats();
  });
  let ch: TestClickHouse | null = null;
  const cleanupStores: Store[] = [];
  afterAll(async () => {
    await ch?.cleanup();
  });
  afterEach(async () => {
    for (const c of collectors.splice(0)) await c.stop().catch(() => {});
    for (const s of cleanupStores.splice(0)) await s.close().catch(() => {});
    for (const n of netns.splice(0)) n.delete();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    await nats?.cleanup();
  });

  const agent = (host: string, ns: TestNetns) => {
    const spoolDir = mkdtempSync(join(tmpdir(), 'tcpdwell-spool-'));
    dirs.push(spoolDir);
    return Agent.start({ host, connection: { servers: [nats.url] }, spoolDir, flushIntervalMs: 50, summaryIntervalMs: 60_000, tracer: { netns: [ns.ns.inode] } });
  };

  it('two collector instances count every batch once; the fleet views equal the sum of the hosts; query rebuilds a connection exactly', async () => {
    const [na, nb] = [new TestNetns(), new TestNetns()];
    netns.push(na, nb);
    ch = await startClickHouse();
    const [c1, c2] = await Promise.all(
      // Two instances share a store (ClickHouse): that is how they share the hosts' pictures too.
      ['one', 'two'].map(async (instance) => {
        const store = await openStore(ch!.spec('fleet'));
        cleanupStores.push(store);
        return Collector.start({ connection: { servers: [nats.url] }, store, instance, batch: 8, evaluateIntervalMs: 500 });
      }),
    );
    collectors.push(c1!, c2!);
    const [a, b] = await Promise.all([agent('host-a', na), agent('host-b', nb)]);
    await Promise.all([na.run('client-first', '127.0.0.1', 8601), na.run('refused', '127.0.0.1', 8602), nb.run('burst', '127.0.0.1', 8603, 20)]);
    await sleep(200);
    a.publishSummary();
    b.publishSummary();
    await Promise.all([a.stop(), b.stop()]);

    const stream = await readStream(nats.url);
    const agentMsgs = stream.filter((m) => m.subject !== 'tcpdwell.v1.alerts');
    const counted = () => c1!.stats().counted + c2!.stats().counted;
    await until(() => counted() === agentMsgs.length, 15_000, `${agentMsgs.length} messages counted`);
    await sleep(300);
    expect(counted()).toBe(agentMsgs.length);
    expect(c1!.stats().duplicates + c2!.stats().duplicates).toBe(0);

    const fleet = mergeSnapshots([c1!.snapshot(), c2!.snapshot()]);
    for (const host of ['host-a', 'host-b']) {
      const mine = agentMsgs.filter((m) => m.subject.startsWith(`tcpdwell.v1.${host}.`));
      const byKind: Record<string, number> = {};
      for (const m of mine) byKind[m.kind] = (byKind[m.kind] ?? 0) + 1;
      expect(fleet.messages[host]).toEqual(byKind);
      expect(fleet.events[host]).toBe(transitionEvents(mine).length);
    }
    expect(fleet.events['host-b']).toBe(20 * EVENTS_PER_CONNECTION + 2);
    expect(fleet.connectFailures).toEqual({ ECONNREFUSED: { '127.0.0.1:8602': 1 } });
    // Both instances hold the same latest picture of both hosts, and no sequence is missing.
    await until(() => c1!.hosts().length === 2 && c2!.hosts().length === 2 && JSON.stringify(c1!.hosts()) === JSON.stringify(c2!.hosts()), 5000, 'both hosts on both');
    expect(c1!.hosts()).toEqual(c2!.hosts());
    expect(c1!.agentRuns().map((r) => r.pending + r.lost)).toEqual([0, 0]);

    // Prometheus: the fleet histogram (each instance exports its share: the summaries carrying
    // dwell histograms may all have gone to one of them), and bounded labels.
    const scrape = async (c: typeof c1) => {
      const m = new CollectorMetrics(c!);
      const url = await m.listen('127.0.0.1:0');
      const text = await (await fetch(url)).text();
      await m.close();
      return text;
    };
    const texts = [await scrape(c1), await scrape(c2)];
    const synSent = (t: string) => Number(/^tcpdwell_collect_dwell_seconds_count\{scope="fleet",host="",port="",state="SYN_SENT"\} (\d+)/m.exec(t)?.[1] ?? 0);
    expect(texts[0]).toMatch(/^tcpdwell_fleet_sockets\{host="host-a",state="/m);
    expect(synSent(texts[0]!) + synSent(texts[1]!)).toBeGreaterThan(0);
    for (const t of texts) expect(t).not.toMatch(/pid=|cookie=/);

    // The morning after: query rebuilds the refused connect and the client-first connection.
    const client = transitionEvents(agentMsgs.filter((x) => x.subject.startsWith('tcpdwell.v1.host-a.'))).filter((e) => e.dport === 8601 && e.ownerComm);
    const cookie = client.find((e) => e.oldState === 'SYN_SENT' && e.newState === 'ESTABLISHED' && e.sport !== 8601)!.cookie;
    const expected = transitionEvents(agentMsgs).filter((e) => e.cookie === cookie);
    const q = spawnSync(bin, ['query', '--nats', nats.url, '--host', 'host-a', '--since', '10m', '--cookie', cookie.toString(), '--format', 'json'], { encoding: 'utf8' });
    expect(q.status, q.stderr).toBe(0);
    const lives = q.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lives).toHaveLength(1);
    const life = lives[0];
    expect(life.steps.map((s: { what: string }) => s.what)).toEqual([
      'CLOSE->SYN_SENT',
      'SYN_SENT->ESTABLISHED',
      'ESTABLISHED->FIN_WAIT1',
      'FIN_WAIT1->FIN_WAIT2',
      'TIME_WAIT(TIME_WAIT) start',
      'FIN_WAIT2->CLOSE',
    ]);
    expect(life.steps.map((s: { dwellNs: string | null; tsNs: string }) => [s.tsNs, s.dwellNs])).toEqual(expected.map((e) => [e.tsNs.toString(), e.dwellNs?.toString() ?? null]));
    expect(life.steps[1].precision).toBe('exact');
    expect(life.ownerComm).toBe('node');
    expect(life.remote).toBe('127.0.0.1:8601');
    const refusedRun = spawnSync(bin, ['query', '--nats', nats.url, '--since', '10m', '--port', '8602', '--format', 'text'], { encoding: 'utf8' });
    expect(refusedRun.status, refusedRun.stderr).toBe(0);
    expect(refusedRun.stdout).toMatch(/CLOSE->SYN_SENT/);
    expect(refusedRun.stdout).toMatch(/SYN_SENT->CLOSE\s+after [\d.]+(µs|ms)\s+127\.0\.0\.1:\d+ -> 127\.0\.0\.1:8602\s+ECONNREFUSED/);
    expect(refusedRun.stderr).toMatch(/1 connections/);
  });

  it('collect --store fleet.duckdb keeps every event once; query --store gives the same timelines as the stream, across hosts, and sql answers', async () => {
    const [na, nb] = [new TestNetns(), new TestNetns()];
    netns.push(na, nb);
    const dir = mkdtempSync(join(tmpdir(), 'tcpdwell-store-'));
    dirs.push(dir);
    const db = join(dir, 'fleet.duckdb');
    const collect = spawn(bin, ['collect', '--nats', nats.url, '--store', db, '--status-interval', '1', '--metrics-listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    collect.stderr.on('data', (d) => (err += d));
    await until(() => /consuming TCPDWELL/.test(err), 15_000, 'the collector consuming');
    const [a, b] = await Promise.all([agent('store-a', na), agent('store-b', nb)]);
    await Promise.all([na.run('client-first', '127.0.0.1', 8621), na.run('refused', '127.0.0.1', 8622), nb.run('refused', '127.0.0.1', 8622), nb.run('burst', '127.0.0.1', 8623, 10)]);
    await sleep(200);
    await Promise.all([a.stop(), b.stop()]);
    const stream = (await readStream(nats.url)).filter((m) => m.subject !== 'tcpdwell.v1.alerts');
    const events = transitionEvents(stream).length;
    await until(() => new RegExp(`${stream.length} counted`).test(err), 15_000, `${stream.length} counted (${err.slice(-300)})`).catch(() => undefined);
    // While it runs, the collector holds the file: query asks it over its metrics port.
    const collector = /metrics at (http:\/\/[^/]+)\/metrics/.exec(err)![1]!;
    const runAsync = (args: string[]) => promisify(execFile)(bin, args, { encoding: 'utf8' });
    const live = await runAsync(['query', '--store', collector, '--since', '10m', '--port', '8622', '--format', 'json']);
    const locked = spawnSync(bin, ['sql', '--store', db, 'SELECT 1'], { encoding: 'utf8' });
    expect(locked.status).toBe(1);
    expect(locked.stderr).toMatch(/in use by another process.*--store http:\/\/HOST:PORT/);
    collect.kill('SIGINT');
    await new Promise((r) => collect.once('exit', r));
    expect(err).toMatch(new RegExp(`${stream.length} counted, 0 duplicates`));

    const run = (args: string[]) => spawnSync(bin, args, { encoding: 'utf8' });
    expect(run(['query', '--store', db, '--since', '10m', '--port', '8622', '--format', 'json']).stdout).toBe(live.stdout);
    // SQL reads the store, not other files.
    const files = run(['sql', '--store', db, "SELECT * FROM read_text('/etc/hostname')"]);
    expect(files.status).toBe(2);
    const n = run(['sql', '--store', db, '--format', 'json', "SELECT count(*) AS n, count(DISTINCT (host, boot_id, epoch, seq, row)) AS k FROM events WHERE type <> 'snapshot'"]);
    expect(n.status, n.stderr).toBe(0);
    expect(JSON.parse(n.stdout)).toEqual({ n: String(events), k: String(events) });
    // Failed connects by reason and destination across the fleet, as an SRE would ask.
    const failures = run(['sql', '--store', db, '--format', 'json', 'SELECT error, daddr, dport, count(*) AS n FROM events WHERE error IS NOT NULL GROUP BY ALL']);
    expect(failures.stdout.trim().split('\n').map((l) => JSON.parse(l))).toEqual([{ error: 'ECONNREFUSED', daddr: '127.0.0.1', dport: 8622, n: '2' }]);
    // The same question both ways: the stream (per host) and the store.
    for (const filter of [['--host', 'store-a', '--port', '8621'], ['--port', '8622']]) {
      const fromStream = run(['query', '--nats', nats.url, '--since', '10m', ...filter, '--format', 'json']);
      const fromStore = run(['query', '--store', db, '--since', '10m', ...filter, '--format', 'json']);
      expect(fromStore.status, fromStore.stderr).toBe(0);
      expect(fromStore.stdout).toBe(fromStream.stdout);
      expect(fromStore.stdout.length).toBeGreaterThan(0);
    }
    const refusedEverywhere = run(['query', '--store', db, '--since', '10m', '--error', 'ECONNREFUSED', '--format', 'json']);
    expect(refusedEverywhere.stdout.trim().split('\n').map((l) => JSON.parse(l).host).sort()).toEqual(['store-a', 'store-b']);
    const bad = run(['sql', '--store', db, 'DELETE FROM events']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^tcpdwell: tcpdwell sql runs one read-only statement/);
  });

  it('tcpdwell agents lists the live agents with their status', async () => {
    const na = new TestNetns();
    netns.push(na);
    const a = await agent('host-z', na);
    try {
      // Not spawnSync: the agent answers from this process's event loop.
      const run = promisify(execFile);
      const r = await run(bin, ['agents', '--nats', nats.url, '--format', 'json', '--timeout', '1'], { encoding: 'utf8' });
      const list = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
      expect(list).toHaveLength(1);
      expect(list[0]).toMatchObject({ host: 'host-z', status: { host: 'host-z', nats: { connected: true } } });
      const text = await run(bin, ['agents', '--nats', nats.url, '--timeout', '1', '--format', 'text'], { encoding: 'utf8' });
      expect(text.stdout).toMatch(/^host-z\s+\S+\s+\d+\s+\d+s\s+\d+\s+\d+\s+connected\s+0$/m);
    } finally {
      await a.stop();
    }
  });
});
