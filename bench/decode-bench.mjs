// User-space microbenchmark for `make bench`: decode recorded ring records (test/fixtures/*.ring,
// replicated to BENCH_DECODE_RECORDS records and cut into ring-sized batches), then the same plus
// the JSON rendering `tcpdwell trace --format json` does per event (src/cli/commands/trace.ts). Run it on one
// core (run-bench.mjs starts it under `taskset -c N`). Prints one JSON line.
//
// What it times is the built code in dist/ (make builds it from src/); nothing is copied here.
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decodeRingBatch, isoTime, toJson } from '../dist/decode/index.js';
import { bootToEpochOffsetNs } from '../dist/kernel/clock.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const records = Number(process.env.BENCH_DECODE_RECORDS || 1_000_000);
const passes = Number(process.env.BENCH_DECODE_PASSES || 5);
// The JSON rendering is ~30x slower than decoding, so it gets fewer records (the rate is the same).
const jsonRecords = Math.min(records, Number(process.env.BENCH_DECODE_JSON_RECORDS || 100_000));
// The kernel wakes the reader once 256 KiB wait (DEFAULT_WAKEUP_BYTES in src/kernel/tracer.ts), so
// batches of about that size are what the decoder sees under load.
const batchBytes = Number(process.env.BENCH_DECODE_BATCH_BYTES || 256 << 10);

// The fixtures are bpf-ts-loader batches: [u32 len][u32 0][record][pad to 8] back to back, so
// concatenating them (and copies of them) is again a valid batch.
const fixtures = readdirSync(`${root}/test/fixtures`)
  .filter((f) => f.endsWith('.ring'))
  .sort()
  .map((f) => readFileSync(`${root}/test/fixtures/${f}`));
const entries = [];
for (const f of fixtures) {
  for (let off = 0; off + 8 <= f.length; ) {
    const len = f.readUInt32LE(off);
    const size = 8 + ((len + 7) & ~7);
    entries.push(f.subarray(off, off + size));
    off += size;
  }
}
const entryBytes = entries[0].length;
const all = Buffer.alloc(records * entryBytes);
for (let i = 0, off = 0; i < records; i++) {
  const e = entries[i % entries.length];
  e.copy(all, off);
  off += e.length;
}
const perBatch = Math.max(1, Math.floor(batchBytes / entryBytes));
const batches = [];
for (let off = 0; off < all.length; off += perBatch * entryBytes) batches.push(all.subarray(off, Math.min(all.length, off + perBatch * entryBytes)));

const jsonBatches = batches.slice(0, Math.ceil(jsonRecords / perBatch));
jsonBatches[jsonBatches.length - 1] = jsonBatches.at(-1).subarray(0, (jsonRecords - (jsonBatches.length - 1) * perBatch) * entryBytes);

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function time(name, run, n = records) {
  const rates = [];
  let events = 0;
  run(); // warm-up: JIT, inline caches
  for (let p = 0; p < passes; p++) {
    const t0 = process.hrtime.bigint();
    events = run();
    const ns = Number(process.hrtime.bigint() - t0);
    rates.push((events / ns) * 1e9);
  }
  if (events !== n) throw new Error(`${name}: ${events} events, expected ${n}`);
  return { name, events, eventsPerS: Math.round(median(rates)), nsPerEvent: Number((1e9 / median(rates)).toFixed(1)) };
}

const offset = bootToEpochOffsetNs();
// Mirrors the JSON `render` in src/cli/commands/trace.ts (keep in step with it): since e16b88c toJson takes
// the ISO time and builds the object in one literal; before, trace spread toJson's result.
const jsonLine =
  toJson.length >= 2
    ? (e) => JSON.stringify(toJson(e, isoTime(e.tsNs, offset)))
    : (e) => JSON.stringify({ ...toJson(e), time: isoTime(e.tsNs, offset) });
const results = [];
let sink = 0;

results.push(
  time('decode', () => {
    const stats = { records: 0, malformed: 0 };
    let n = 0;
    const onEvent = (e) => {
      n++;
      sink += e.sport;
    };
    for (const b of batches) decodeRingBatch(b, onEvent, stats);
    if (stats.malformed) throw new Error(`${stats.malformed} malformed records in the fixtures`);
    return n;
  }),
);

// Exactly what src/cli/commands/trace.ts does per event for --format json, and per batch (join + one write).
results.push(
  time('decode + JSON line (as trace)', () => {
    const stats = { records: 0, malformed: 0 };
    let n = 0;
    for (const b of jsonBatches) {
      const lines = [];
      decodeRingBatch(
        b,
        (e) => {
          n++;
          lines.push(`${jsonLine(e)}\n`);
        },
        stats,
      );
      sink += lines.join('').length;
    }
    return n;
  }, jsonRecords),
);

// The rendering parts alone on pre-decoded events, to split the cost.
const decoded = [];
decodeRingBatch(batches[0], (e) => decoded.push(e), { records: 0, malformed: 0 });
const reps = Math.ceil(jsonRecords / decoded.length);
results.push(
  time('toJson + isoTime + JSON.stringify only', () => {
    let n = 0;
    for (let r = 0; r < reps; r++) {
      for (const e of decoded) {
        if (n === jsonRecords) break;
        n++;
        sink += jsonLine(e).length;
      }
    }
    return n;
  }, jsonRecords),
);

process.stdout.write(
  `${JSON.stringify({ records, jsonRecords, recordBytes: entryBytes, batchRecords: perBatch, passes, fixtureRecords: entries.length, node: process.version, results, sink: sink > 0 })}\n`,
);
