// User-space pipeline microbenchmark for `make bench` (issue 6): the agent's per-event work on
// recorded kernel records, on one core — decode → track (dwell, live table, histograms) →
// protobuf encode of the TransitionBatch and DwellBatch messages the agent publishes. Publishing
// itself is measured end to end by the `tcpdwell-run` contender, against a real nats-server.
//
// Input: a recording made with `tcpdwell trace --format raw` of a real churn (BENCH_RECORDING;
// run-bench.mjs records one in its namespace before the contenders run). Each stage is timed
// over the whole recording, cut into batches of BENCH_PIPELINE_BATCH_BYTES (256 KiB: what the
// kernel hands over per wake-up under load). Prints one JSON line.
//
// What it times is the built code in dist/ (make builds it from src/); nothing is copied here.
import { readFileSync } from 'node:fs';
import { decodeRingBatch, forEachRingRecord, RecordView } from '../dist/decode/index.js';
import { Tracker } from '../dist/track/index.js';
import { encodeDwell, encodeTransitions } from '../dist/publish/wire.js';
import { DwellColumns, TransitionColumns } from '../dist/publish/columns.js';

const env = process.env;
const path = env.BENCH_RECORDING;
if (!path) throw new Error('BENCH_RECORDING=<file from tcpdwell trace --format raw> is required');
const passes = Number(env.BENCH_PIPELINE_PASSES || 5);
const batchBytes = Number(env.BENCH_PIPELINE_BATCH_BYTES || 256 << 10);
const publishEvents = Number(env.BENCH_PIPELINE_MESSAGE_EVENTS || 4096); // the agent's batchMaxEvents
// BENCH_PIPELINE_ONLY=<text>: only the steps whose name contains it (for a profile: node --cpu-prof)

// Cut the recording at entry boundaries into ring-sized batches.
const rec = readFileSync(path);
const batches = [];
let records = 0;
for (let start = 0, off = 0; off < rec.length; ) {
  const size = 8 + ((rec.readUInt32LE(off) + 7) & ~7);
  off += size;
  records++;
  if (off - start >= batchBytes || off >= rec.length) {
    batches.push(rec.subarray(start, off));
    start = off;
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const header = { hostId: 'bench', bootId: 'bench', agentVersion: '0', epoch: 1, seq: 1, drops: {}, bootToUnixNs: 0, sentAtBootNs: 0 };
let sink = 0;

// Rates from the CPU time this process used (process.cpuUsage), the median of the passes: on a
// 2-core VM where anything else runs, wall time also counts the waits for the core.
const only = env.BENCH_PIPELINE_ONLY; // run only the steps whose name contains this (profiling)
function time(name, run) {
  if (only && !name.includes(only)) return { name, skipped: true };
  const cpuNs = [];
  const wallNs = [];
  let out = null;
  run(); // warm-up: JIT, inline caches
  for (let p = 0; p < passes; p++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    out = run();
    wallNs.push(Number(process.hrtime.bigint() - t0));
    const c = process.cpuUsage(c0);
    cpuNs.push((c.user + c.system) * 1000);
  }
  const ns = median(cpuNs) / records;
  return { name, records, eventsPerS: Math.round(1e9 / ns), nsPerEvent: Number(ns.toFixed(1)), wallNsPerEvent: Number((median(wallNs) / records).toFixed(1)), ...out };
}

const results = [];
results.push(
  time('decode', () => {
    const stats = { records: 0, malformed: 0 };
    for (const b of batches) decodeRingBatch(b, (e) => (sink += e.sport), stats);
    return { malformed: stats.malformed };
  }),
);

// A fresh tracker per pass: the recording replays the same sockets.
const newTracker = (onDwell) => new Tracker({ clock: () => 0n, onDwell, sysctls: {} });
results.push(
  time('decode + track', () => {
    let dwell = 0;
    const t = newTracker(() => dwell++);
    const stats = { records: 0, malformed: 0 };
    for (const b of batches) {
      const events = [];
      decodeRingBatch(b, (e) => events.push(e), stats);
      t.ingest(events);
    }
    return { dwellRecords: dwell };
  }),
);

// Before the columnar encoders: TcpEvent and DwellRecord objects through protobufjs.
results.push(
  time('decode + track + protobufjs objects (before)', () => {
    let dwell = [];
    const t = newTracker((r) => dwell.push(r));
    const stats = { records: 0, malformed: 0 };
    let pending = [];
    let bytes = 0;
    let messages = 0;
    const flush = () => {
      if (pending.length) {
        bytes += encodeTransitions(pending, header, 1n).length;
        messages++;
      }
      if (dwell.length) {
        bytes += encodeDwell(dwell, header).length;
        messages++;
      }
      pending = [];
      dwell = [];
    };
    for (const b of batches) {
      const events = [];
      decodeRingBatch(b, (e) => events.push(e), stats);
      t.ingest(events);
      for (const e of events) pending.push(e);
      if (pending.length >= publishEvents) flush();
    }
    flush();
    return { messages, bytesPerEvent: Number((bytes / records).toFixed(1)) };
  }),
);

// The agent's path before issue 13: TcpEvents into the tracker, DwellRecords into the columns.
results.push(
  time('decode + track + protobuf (objects, before issue 13)', () => {
    const transitions = new TransitionColumns();
    const dwell = new DwellColumns();
    let bytes = 0;
    let messages = 0;
    const t = newTracker((r) => {
      dwell.push(r);
      if (dwell.length >= publishEvents) {
        bytes += dwell.encode(header).length;
        messages++;
      }
    });
    const stats = { records: 0, malformed: 0 };
    const events = [];
    const take = (e, buf, off) => {
      events.push(e);
      transitions.appendRecord(buf, off);
      if (transitions.length >= publishEvents) {
        bytes += transitions.encode(header, 1n).length;
        messages++;
      }
    };
    for (const b of batches) {
      events.length = 0;
      decodeRingBatch(b, take, stats);
      t.ingest(events);
    }
    if (transitions.length) bytes += transitions.encode(header, 1n).length;
    if (dwell.length) bytes += dwell.encode(header).length;
    return { messages, bytesPerEvent: Number((bytes / records).toFixed(1)) };
  }),
);

// Records read in place (src/decode/view.ts): no TcpEvent, BigInt or DwellRecord per event.
results.push(
  time('in place: records + track', () => {
    let dwell = 0;
    const sink = { fromRecord: () => dwell++, fromSlot: () => dwell++, fromObject: () => dwell++ };
    const t = new Tracker({ clock: () => 0n, dwellRows: sink, sysctls: {} });
    const stats = { records: 0, malformed: 0 };
    const view = new RecordView();
    const take = (v, off) => t.ingestRecord(v, off);
    for (const b of batches) forEachRingRecord(b, view, stats, take);
    return { dwellRecords: dwell };
  }),
);

// What Agent does per ring batch and per flush (src/agent/agent.ts), without the spool and NATS.
results.push(
  time('in place: records + track + protobuf (as the agent)', () => {
    const transitions = new TransitionColumns();
    const dwell = new DwellColumns();
    let bytes = 0;
    let messages = 0;
    const full = () => {
      if (dwell.length >= publishEvents) {
        bytes += dwell.encode(header).length;
        messages++;
      }
    };
    const sink = {
      fromRecord: (v, off, row) => (dwell.fromRecord(v, off, row), full()),
      fromSlot: (tb, slot, row) => (dwell.fromSlot(tb, slot, row), full()),
      fromObject: (r) => (dwell.push(r), full()),
    };
    const t = new Tracker({ clock: () => 0n, dwellRows: sink, sysctls: {} });
    const stats = { records: 0, malformed: 0 };
    const view = new RecordView();
    const take = (v, off) => {
      transitions.appendView(v, off);
      t.ingestRecord(v, off);
      if (transitions.length >= publishEvents) {
        bytes += transitions.encode(header, 1n).length;
        messages++;
      }
    };
    for (const b of batches) forEachRingRecord(b, view, stats, take);
    if (transitions.length) bytes += transitions.encode(header, 1n).length;
    if (dwell.length) bytes += dwell.encode(header).length;
    return { messages, bytesPerEvent: Number((bytes / records).toFixed(1)) };
  }),
);

process.stdout.write(`${JSON.stringify({ recording: path, records, batches: batches.length, passes, node: process.version, results, sink: sink > 0 })}\n`);
