#!/usr/bin/env node
// `make bench-fleet` (issue 16; not part of make test or CI): the central pipeline at fleet scale,
// with agent messages generated for N hosts from a real agent's capture (fleet-capture.mjs,
// fleet-gen.mjs). Writes a block into BENCHMARKS.md (replacing the one with the same label) and
// the raw results to bench/.output/fleet-<label>.json. Run it under the heavy lock.
//
// Parts (FLEET_PARTS, comma-separated; default all):
//   collect  one collector instance draining a filled stream, busy hosts and light hosts, into
//            no store, DuckDB and ClickHouse (FLEET_REPS runs each; min–max)
//   cluster  1, 2 and 3 collector processes on a 3-node cluster (nats-server 2.10.27) into ClickHouse
//   store    store ingest without NATS (rows/s), bytes per event on disk, then the forensic
//            queries timed on what was stored (FLEET_STORE_EVENTS events, default 20 M)
//   scrape   /metrics of a collector holding FLEET_SCRAPE_HOSTS (5,000) hosts
// Knobs: FLEET_REPS=3 FLEET_LABEL=latest FLEET_STORE_EVENTS=20000000 FLEET_STORES=duckdb,clickhouse
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { OUT_DIR, ROOT, TCPDWELL } from './common.mjs';
import { FleetGenerator, loadCapture } from './fleet-gen.mjs';
import { drain, fill } from './fleet-collect.mjs';
import { openStore } from '../dist/collect/open-store.js';
import { classify } from '../dist/collect/messages.js';
import { rowsOf } from '../dist/collect/rows.js';
import { Collector } from '../dist/collect/collector.js';
import { CollectorMetrics } from '../dist/collect/metrics.js';
import { freePort, startLocalNats } from '../dist/publish/nats-server.js';

const env = process.env;
const parts = new Set((env.FLEET_PARTS ?? 'collect,cluster,store,scrape').split(','));
const reps = Number(env.FLEET_REPS ?? 3);
const label = env.FLEET_LABEL ?? 'latest';
const storeEvents = Number(env.FLEET_STORE_EVENTS ?? 20_000_000);
const storeKinds = (env.FLEET_STORES ?? 'duckdb,clickhouse').split(',');
/** FLEET_SCALE < 1 shrinks every message count (a quick smoke run). */
const scale = Number(env.FLEET_SCALE ?? 1);
const sc = (n) => Math.max(100, Math.round(n * scale));
const log = (l) => process.stderr.write(`bench-fleet: ${l}\n`);
const results = { machine: `${cpus().length} × ${cpus()[0]?.model}, ${Math.round(totalmem() / 2 ** 30)} GiB, node ${process.version}`, at: new Date().toISOString(), parts: {} };
const dir = mkdtempSync(join(tmpdir(), 'tcpdwell-bench-fleet-'));
const live = new Set();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

for (const name of ['busy', 'light']) {
  if (!existsSync(join(OUT_DIR, `fleet-capture-${name}.json`))) {
    log('no capture yet: recording one from a real agent (bench/fleet-capture.mjs, needs root)');
    execFileSync(process.execPath, [join(ROOT, 'bench/fleet-capture.mjs')], { stdio: 'inherit' });
    break;
  }
}
const capture = { busy: loadCapture('busy'), light: loadCapture('light') };

// ---- a ClickHouse server of our own (Debian's clickhouse-server), on free loopback ports --------
async function startClickHouse() {
  const d = join(dir, `ch-${Date.now()}`);
  for (const x of ['data', 'tmp', 'log']) mkdirSync(join(d, x), { recursive: true });
  const [http, tcp] = [await freePort(), await freePort()];
  writeFileSync(join(d, 'config.xml'), `<?xml version="1.0"?><yandex><logger><level>warning</level><log>${d}/log/s.log</log><errorlog>${d}/log/e.log</errorlog><console>0</console></logger><listen_host>127.0.0.1</listen_host><http_port>${http}</http_port><tcp_port>${tcp}</tcp_port><path>${d}/data/</path><tmp_path>${d}/tmp/</tmp_path><users_config>${d}/users.xml</users_config><default_profile>default</default_profile><default_database>default</default_database><mark_cache_size>268435456</mark_cache_size><max_concurrent_queries>100</max_concurrent_queries></yandex>`);
  writeFileSync(join(d, 'users.xml'), `<?xml version="1.0"?><yandex><profiles><default><max_memory_usage>8000000000</max_memory_usage></default></profiles><users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users><quotas><default></default></quotas></yandex>`);
  const child = spawn('clickhouse-server', [`--config-file=${d}/config.xml`], { stdio: 'ignore', cwd: d });
  live.add(child);
  for (const deadline = Date.now() + 20_000; ; await sleep(50)) {
    if (await fetch(`http://127.0.0.1:${http}/ping`).then((r) => r.ok, () => false)) break;
    if (Date.now() > deadline) throw new Error('clickhouse-server did not start');
  }
  return { spec: (db) => `clickhouse://127.0.0.1:${http}/${db}`, dir: d, stop: () => (child.kill('SIGKILL'), live.delete(child)) };
}
const ch = storeKinds.includes('clickhouse') || parts.has('cluster') ? await startClickHouse() : null;
const minmax = (xs) => ({ min: Math.min(...xs), max: Math.max(...xs), median: [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] });

// ---- collect: one instance -------------------------------------------------------------------
if (parts.has('collect')) {
  const out = (results.parts.collect = []);
  const nats = await startLocalNats({ storeDir: join(dir, 'nats-collect') });
  for (const [profile, hosts, count] of [['busy', 100, sc(3000)], ['light', 5000, sc(60_000)]]) {
    // A fresh stream per profile; every run reads it whole through a durable of its own.
    const nc = await connect({ servers: nats.url });
    await (await jetstreamManager(nc)).streams.delete('TCPDWELL').catch(() => {});
    await nc.close();
    const gen = new FleetGenerator(capture[profile], hosts);
    const rows = await fill(nats.url, gen, count);
    log(`${profile}: ${count} messages, ${rows} events from ${hosts} hosts in the stream`);
    for (const kind of ['none', ...storeKinds]) {
      const runs = [];
      for (let r = 0; r < reps; r++) {
        const spec = kind === 'duckdb' ? join(dir, `c-${profile}-${r}.duckdb`) : kind === 'clickhouse' ? ch.spec(`c_${profile}_${r}`) : null;
        const store = spec ? await openStore(spec) : undefined;
        const d = await drain(nats.url, count, store, `bench-${profile}-${kind}-${r}`);
        await store?.close();
        if (spec && kind === 'duckdb') rmSync(spec, { force: true });
        runs.push({ msgPerS: d.counted / d.seconds, eventsPerS: ((d.counted / count) * rows) / d.seconds, cpuPerS: d.cpuS / d.seconds, complete: d.counted === count });
        log(`  ${profile} → ${kind}: ${Math.round(runs.at(-1).msgPerS)} msg/s, ${Math.round(runs.at(-1).eventsPerS)} events/s`);
      }
      out.push({ profile, hosts, store: kind, messages: count, events: rows, msgPerS: minmax(runs.map((x) => x.msgPerS)), eventsPerS: minmax(runs.map((x) => x.eventsPerS)), cpu: minmax(runs.map((x) => x.cpuPerS)), complete: runs.every((x) => x.complete) });
    }
  }
  await nats.stop();
}

// ---- cluster: 1–3 instances on a 3-node cluster ------------------------------------------------
if (parts.has('cluster')) {
  const out = (results.parts.cluster = []);
  const bin = join(ROOT, '.cache/nats-server-2.10.27/usr/sbin/nats-server');
  const routes = await Promise.all([0, 1, 2].map(() => freePort()));
  const nodes = await Promise.all(
    [0, 1, 2].map((i) => startLocalNats({ bin, storeDir: join(dir, `cl-n${i}`), cluster: { serverName: `n${i}`, clusterName: 'bench', routePort: routes[i], peerRoutePorts: routes.filter((_, j) => j !== i) } })),
  );
  const urls = nodes.map((n) => n.url).join(',');
  for (const [profile, hosts, count] of [['light', 5000, sc(40_000)], ['busy', 100, sc(2000)]]) {
    for (const n of [1, 2, 3]) {
      // A fresh stream (R3), filled, then n collector processes on one new durable.
      const nc = await connect({ servers: urls.split(',') });
      for (let i = 0; ; i++) {
        try {
          const jsm = await jetstreamManager(nc);
          await jsm.streams.delete('TCPDWELL').catch(() => {});
          await jsm.streams.add({ name: 'TCPDWELL', subjects: ['tcpdwell.v1.>'], num_replicas: 3, max_bytes: 8 * 2 ** 30, duplicate_window: 120e9 });
          break;
        } catch (err) {
          if (i > 40) throw err;
          await sleep(500); // the meta leader is being elected
        }
      }
      await nc.close();
      const rows = await fill(urls.split(',')[0], new FleetGenerator(capture[profile], hosts), count);
      const db = `cl_${profile}_${n}`;
      const procs = [];
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        const p = spawn(TCPDWELL, ['collect', '--nats', urls, '--store', ch.spec(db), '--replicas', '3', '--durable', `bench-${db}`, '--instance', `i${i}`, '--status-interval', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
        live.add(p);
        let err = '';
        p.stderr.on('data', (d) => (err += d));
        procs.push({ p, err: () => err });
      }
      const counted = () => procs.reduce((s, x) => s + Number([...x.err().matchAll(/(\d+) counted, (\d+) duplicates/g)].at(-1)?.[1] ?? 0), 0);
      let first = 0;
      for (const deadline = Date.now() + 600_000; counted() < count && Date.now() < deadline; await sleep(200)) if (!first && counted() > 0) first = performance.now();
      const seconds = (performance.now() - (first || t0)) / 1000 + 1; // status lines come once a second: ±1 s
      for (const x of procs) {
        x.p.kill('SIGTERM');
        live.delete(x.p);
      }
      out.push({ profile, hosts, instances: n, messages: count, events: rows, counted: counted(), seconds, msgPerS: count / seconds, eventsPerS: rows / seconds });
      log(`  cluster ${profile}, ${n} instances: ${Math.round(count / seconds)} msg/s, ${Math.round(rows / seconds)} events/s (±1 s of ${seconds.toFixed(1)} s)`);
      await sleep(1000);
    }
  }
  for (const n of nodes) await n.stop();
}

// ---- store: ingest, bytes on disk, forensic queries ---------------------------------------------
if (parts.has('store')) {
  const out = (results.parts.store = []);
  for (const kind of storeKinds) {
    const spec = kind === 'duckdb' ? join(dir, 'forensics.duckdb') : ch.spec('forensics');
    const store = await openStore(spec);
    // 2,000 busy hosts' worth of messages, written as the collector writes them (1,024-message
    // batches), until FLEET_STORE_EVENTS events; times run on from 2 hours ago.
    // Their messages spread over FLEET_STORE_HOURS (default 2) in time order, as a collector
    // would have stored them, so a time window selects its share of the rows.
    const hosts = 2000;
    const hours = Number(env.FLEET_STORE_HOURS ?? 2);
    const perHost = storeEvents / (capture.busy.reduce((n, m) => n + (m.kind === 'transitions' ? 1 : 0), 0) ? 460 : 1) / hosts;
    const gen = new FleetGenerator(capture.busy, hosts, { startUnixMs: Date.now() - hours * 3600_000, spacingMs: (hours * 3600_000) / Math.max(1, perHost * 2) });
    let events = 0;
    let messages = 0;
    let decodeMs = 0;
    let storeMs = 0;
    const t0 = performance.now();
    while (events < storeEvents) {
      const a = performance.now();
      const batch = [];
      let bytes = 0;
      while (bytes < 8 << 20) {
        const m = gen.next(messages % hosts);
        messages++;
        bytes += m.data.length;
        const c = classify(m.subject, m.data);
        const r = rowsOf(c.message, Date.now());
        events += r.table === 'events' ? r.rows.length : 0;
        batch.push(r);
      }
      const b = performance.now();
      await store.store(batch);
      storeMs += performance.now() - b;
      decodeMs += b - a;
      if (messages % 20_000 < batch.length) log(`  ${kind}: ${events} events stored (${Math.round(events / ((performance.now() - t0) / 1000))}/s)`);
    }
    const seconds = (performance.now() - t0) / 1000;
    await store.close();
    // Bytes on disk once everything is compressed and merged.
    let bytes;
    if (kind === 'duckdb') {
      const s2 = await openStore(spec);
      await s2.sql('SELECT 1');
      await s2.close(); // CHECKPOINT
      bytes = statSync(spec).size;
    } else {
      const s2 = await openStore(spec);
      bytes = Number((await s2.sql("SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'forensics' AND active")).rows[0][0]);
      await s2.close();
    }
    const q = await openStore(spec, { readOnly: true });
    const one = async (what, sql) => {
      const times = [];
      let rows = 0;
      for (let i = 0; i < 3; i++) {
        const a = performance.now();
        rows = (await q.sql(sql)).rows.length;
        times.push((performance.now() - a) / 1000);
      }
      return { what, ...minmax(times), rows };
    };
    const ev = await q.sql('SELECT min(ts_ns), max(ts_ns), count(*) FROM events');
    const [lo, hi, n] = ev.rows[0].map((v) => BigInt(v));
    const mid = lo + (hi - lo) / 2n;
    const hour = 3_600_000_000_000n;
    const sample = (await q.sql(`SELECT host, cookie, daddr, dport, ts_ns FROM events WHERE ts_ns >= ${mid} AND type = 'transition' AND dport <> 0 LIMIT 1`)).rows[0];
    const [host, cookie, daddr, dport, ts] = sample;
    const queries = [
      await one('one cookie (all hosts)', `SELECT * FROM events WHERE cookie = ${cookie}`),
      await one('one host, one port, 10 minutes', `SELECT * FROM events WHERE host = '${host}' AND (sport = ${dport} OR dport = ${dport}) AND ts_ns BETWEEN ${BigInt(ts) - 300_000_000_000n} AND ${BigInt(ts) + 300_000_000_000n}`),
      await one('one remote address, all hosts, 1 hour', `SELECT * FROM events WHERE daddr = '${daddr}' AND ts_ns BETWEEN ${BigInt(ts) - hour / 2n} AND ${BigInt(ts) + hour / 2n} LIMIT 100000`),
      await one('failed connects by reason and destination, fleet, 1 hour', `SELECT error, daddr, dport, count(*) AS n FROM events WHERE error IS NOT NULL AND ts_ns BETWEEN ${BigInt(ts) - hour / 2n} AND ${BigInt(ts) + hour / 2n} GROUP BY error, daddr, dport ORDER BY n DESC LIMIT 20`),
    ];
    await q.close();
    const r = { store: kind, events: Number(n), messages, seconds, eventsPerS: events / seconds, decodeShare: decodeMs / (decodeMs + storeMs), bytes, bytesPerEvent: bytes / Number(n), spanS: Number((hi - lo) / 1_000_000_000n), queries };
    out.push(r);
    log(`  ${kind}: ${Number(n)} events in ${seconds.toFixed(0)} s (${Math.round(r.eventsPerS)}/s), ${r.bytesPerEvent.toFixed(1)} bytes/event on disk`);
    for (const x of queries) log(`    ${x.what}: ${x.min.toFixed(3)}–${x.max.toFixed(3)} s (${x.rows} rows)`);
    if (kind === 'duckdb') rmSync(spec, { force: true });
  }
}

// ---- scrape: /metrics at 5,000 hosts -------------------------------------------------------------
if (parts.has('scrape')) {
  const hosts = Number(env.FLEET_SCRAPE_HOSTS ?? 5000);
  const nats = await startLocalNats({ storeDir: join(dir, 'nats-scrape') });
  const gen = new FleetGenerator(capture.light, hosts);
  // Every host's picture (3 summaries, with their histograms) and a few batches each.
  const count = hosts * 8;
  const nc = await connect({ servers: nats.url });
  const js = (await import('@nats-io/jetstream')).jetstream(nc);
  await (await jetstreamManager(nc)).streams.add({ name: 'TCPDWELL', subjects: ['tcpdwell.v1.>'], max_bytes: 2 ** 31 });
  for (let i = 0; i < hosts; i++) {
    const list = [gen.nextOf(i, 'summary'), gen.next(i), gen.next(i), gen.nextOf(i, 'summary'), gen.next(i), gen.next(i), gen.nextOf(i, 'summary'), gen.next(i)];
    await Promise.all(list.map((m) => js.publish(m.subject, m.data, { msgID: m.msgId })));
  }
  await nc.close();
  const c = await Collector.start({ connection: { servers: [nats.url] }, evaluateIntervalMs: 3_600_000 });
  for (const deadline = Date.now() + 300_000; c.stats().counted < count && Date.now() < deadline; await sleep(100));
  const m = new CollectorMetrics(c);
  const url = await m.listen('127.0.0.1:0');
  const times = [];
  let size = 0;
  for (let i = 0; i < 5; i++) {
    const a = performance.now();
    const text = await (await fetch(url)).text();
    size = text.length;
    if (i === 0) writeFileSync(join(OUT_DIR, 'fleet-scrape.txt'), text);
    times.push((performance.now() - a) / 1000);
    await sleep(300); // past the snapshot's 250 ms reuse: every scrape takes its own
  }
  await m.close();
  await c.stop();
  await nats.stop();
  results.parts.scrape = { hosts: c.hosts().length, counted: c.stats().counted, bytes: size, ...minmax(times) };
  log(`  scrape at ${c.hosts().length} hosts: ${minmax(times).min.toFixed(3)}–${minmax(times).max.toFixed(3)} s, ${(size / 2 ** 20).toFixed(1)} MiB`);
}
ch?.stop();

// ---- results --------------------------------------------------------------------------------------
mkdirSync(OUT_DIR, { recursive: true });
writeFileSync(join(OUT_DIR, `fleet-${label}.json`), JSON.stringify(results, null, 2));
const k = (x) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)} M` : x >= 1e3 ? `${(x / 1e3).toFixed(1)} k` : x.toFixed(0));
const range = (r) => (r.min === r.max ? k(r.min) : `${k(r.min)}–${k(r.max)}`);
const lines = [`<!-- fleet:${label} -->`, `### Fleet pipeline (${label}, ${results.at.slice(0, 16)}Z)`, '', `Machine: ${results.machine}. Command: \`make bench-fleet\` (bench/fleet-bench.mjs), under the heavy lock. Hosts generated from a real agent capture (bench/fleet-capture.mjs: busy 1,000 conn/s ≈ 19k events/s per host, light 20 conn/s ≈ 385 events/s before batching).`, ''];
if (results.parts.collect) {
  lines.push(`One collector instance, in-process, draining a filled stream (single nats-server 2.9.10), ${reps} runs, min–max:`, '', '| hosts | store | messages/s | events/s | CPU (cores) |', '|---|---|---|---|---|');
  for (const r of results.parts.collect) lines.push(`| ${r.hosts} ${r.profile} | ${r.store} | ${range(r.msgPerS)} | ${range(r.eventsPerS)} | ${r.cpu.min.toFixed(2)}–${r.cpu.max.toFixed(2)} |`);
  lines.push('');
}
if (results.parts.cluster) {
  lines.push('Collector processes on a 3-node cluster (nats-server 2.10.27, R3 stream) into one ClickHouse 18.16 (all on these 2 cores; ±1 s of the time):', '', '| hosts | instances | messages/s | events/s |', '|---|---|---|---|');
  for (const r of results.parts.cluster) lines.push(`| ${r.hosts} ${r.profile} | ${r.instances} | ${k(r.msgPerS)} | ${k(r.eventsPerS)} |`);
  lines.push('');
}
if (results.parts.store) {
  lines.push('Store ingest without NATS (1,024-message / 8 MiB batches, as the collector writes), bytes on disk after compression, and forensic queries on what was stored (3 runs each, min–max):', '', '| store | events stored | ingest events/s | bytes/event | one cookie | host+port 10 min | remote addr 1 h | failures 1 h |', '|---|---|---|---|---|---|---|---|');
  for (const r of results.parts.store) lines.push(`| ${r.store} | ${k(r.events)} over ${(r.spanS / 3600).toFixed(1)} h | ${k(r.eventsPerS)} | ${r.bytesPerEvent.toFixed(1)} | ${r.queries.map((q) => `${q.min.toFixed(3)}–${q.max.toFixed(3)} s`).join(' | ')} |`);
  lines.push('');
}
if (results.parts.scrape) lines.push(`Scrape of /metrics at ${results.parts.scrape.hosts} hosts: ${results.parts.scrape.min.toFixed(3)}–${results.parts.scrape.max.toFixed(3)} s, ${(results.parts.scrape.bytes / 2 ** 20).toFixed(1)} MiB.`, '');
lines.push(`<!-- /fleet:${label} -->`);
const block = lines.join('\n');
const bm = join(ROOT, 'BENCHMARKS.md');
let text = readFileSync(bm, 'utf8');
const re = new RegExp(`<!-- fleet:${label} -->[\\s\\S]*?<!-- /fleet:${label} -->`);
text = re.test(text) ? text.replace(re, block) : `${text.trimEnd()}\n\n${block}\n`;
writeFileSync(bm, text);
log(`results in BENCHMARKS.md (block fleet:${label}) and ${join(OUT_DIR, `fleet-${label}.json`)}`);
