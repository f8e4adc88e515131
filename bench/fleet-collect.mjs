// Collector throughput, one instance in this process: the stream is filled first with
// FLEET_MESSAGES messages of FLEET_HOSTS generated hosts (fleet-gen.mjs), then a collector with a
// fresh durable consumer reads all of it, into each store in turn (none, duckdb, clickhouse);
// the time from its first counted message to its last gives messages/s and events/s.
// Prints one JSON line per run. Used by bench/fleet-bench.mjs; alone:
//   node bench/fleet-collect.mjs busy|light [stores]
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Collector } from '../dist/collect/collector.js';
import { openStore } from '../dist/collect/open-store.js';
import { startLocalNats } from '../dist/publish/nats-server.js';
import { FleetGenerator, loadCapture } from './fleet-gen.mjs';

/** Publishes `count` generated messages to the stream, `window` in flight; returns rows published. */
export async function fill(url, gen, count, window = 512) {
  const nc = await connect({ servers: url });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  await jsm.streams.info('TCPDWELL').catch(() => jsm.streams.add({ name: 'TCPDWELL', subjects: ['tcpdwell.v1.>'], max_bytes: 8 * 2 ** 30, duplicate_window: 120e9 }));
  let rows = 0;
  const inflight = new Set();
  for (let i = 0; i < count; i++) {
    const m = gen.next(i % gen.hosts);
    rows += m.rows;
    const p = js.publish(m.subject, m.data, { msgID: m.msgId, timeout: 30_000 }).finally(() => inflight.delete(p));
    inflight.add(p);
    if (inflight.size >= window) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  await nc.close();
  return rows;
}

/** One collector reads the whole stream with a new durable; returns the rate it counted at. */
export async function drain(url, count, store, durable, batch = 1024) {
  const c = await Collector.start({ connection: { servers: [url] }, store, durable, batch, evaluateIntervalMs: 3_600_000, gapGraceS: 3600, log: (l) => process.stderr.write(`collector: ${l}\n`) });
  const done = () => c.stats().counted + c.stats().duplicates >= count;
  let t0 = 0;
  const cpu0 = process.cpuUsage();
  for (const deadline = Date.now() + 1_800_000; !done(); await sleep(20)) {
    if (!t0 && c.stats().counted > 0) t0 = performance.now();
    if (Date.now() > deadline) break;
  }
  const s = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const stats = c.stats();
  await c.stop();
  return { seconds: s, counted: stats.counted, duplicates: stats.duplicates, rowsStored: stats.rowsStored, storeErrors: stats.storeErrors, cpuS: (cpu.user + cpu.system) / 1e6 };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const profile = process.argv[2] ?? 'busy';
  const stores = (process.argv[3] ?? 'none,duckdb').split(',');
  const hosts = Number(process.env.FLEET_HOSTS ?? (profile === 'busy' ? 100 : 5000));
  const count = Number(process.env.FLEET_MESSAGES ?? (profile === 'busy' ? 3000 : 50_000));
  const dir = mkdtempSync(join(tmpdir(), 'tcpdwell-fleet-'));
  const nats = await startLocalNats({ storeDir: join(dir, 'nats') });
  try {
    const gen = new FleetGenerator(loadCapture(profile), hosts);
    const t = performance.now();
    const rows = await fill(nats.url, gen, count);
    process.stderr.write(`filled ${count} messages (${rows} rows) in ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
    for (const kind of stores) {
      const spec = kind === 'duckdb' ? join(dir, `fleet-${Date.now()}.duckdb`) : kind === 'clickhouse' ? process.env.FLEET_CLICKHOUSE : null;
      if (kind === 'clickhouse' && !spec) continue;
      const store = spec ? await openStore(spec) : undefined;
      const r = await drain(nats.url, count, store, `bench-${kind}-${Date.now()}`);
      await store?.close();
      const bytes = kind === 'duckdb' ? statSync(spec).size : null;
      console.log(JSON.stringify({ profile, store: kind, hosts, messages: count, rows, ...r, msgPerS: Math.round(r.counted / r.seconds), eventsPerS: Math.round((r.counted / count) * rows / r.seconds), bytesPerRow: bytes ? +(bytes / rows).toFixed(2) : null }));
    }
  } finally {
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
