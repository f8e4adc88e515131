/**
 * `tcpdwell trace`: every TCP transition, timewait phase and existing socket, as text or JSON
 * lines — or `raw`: the kernel's records as bpf-ts-loader batches, undecoded ([u32 len][u32 0]
 * [record][pad to 8], back to back; a recording is itself one valid batch). Raw is the cheapest
 * capture there is (no decoding in the loop); `decodeRingBatch` reads it back, and `make bench`
 * replays such recordings through the agent's pipeline.
 */
import type { Writable } from 'node:stream';
import { decodeRecords, decodeRingBatch, RING_HEADER_BYTES, toJson, type DecodeStats, type TcpEvent } from './decode.js';
import { EVENT_SIZE } from './generated/abi.js';
import { formatText, TEXT_HEADER } from './format.js';
import { bootToEpochOffsetNs, isoTime, wallClock } from './clock.js';
import { listNetns, type Netns } from './netns.js';
import { Tracer, type TracerOptions } from './tracer.js';

export interface TraceOptions {
  format: 'json' | 'text' | 'raw';
  netns: Netns[];
  ports: number[];
  family: 'inet' | 'inet6' | null;
  /** stop after this many seconds; null = until SIGINT/SIGTERM */
  durationS: number | null;
  snapshot: boolean;
  ringBytes?: number;
  wakeupBytes?: number;
  objectPath?: string;
  out: Writable;
  err: Writable;
  /** resolves when the trace should stop (besides --duration and signals); for tests */
  stop?: Promise<void>;
  /** called once tracing is live (programs attached, ring open, snapshot written) */
  onReady?: () => void;
}

/** What a finished trace saw; also printed to stderr as its last line. */
export interface TraceSummary {
  events: number;
  lostRingFull: number;
  /** transitions the kernel never ran our program for (nested run on one CPU) */
  skipped: number;
  malformed: number;
  snapshotSkipped: number;
}

export async function runTrace(opts: TraceOptions): Promise<TraceSummary> {
  const tracerOpts: TracerOptions = {
    netns: opts.netns.map((n) => n.inode),
    ports: opts.ports,
    family: opts.family,
    ringBytes: opts.ringBytes,
    wakeupBytes: opts.wakeupBytes,
    objectPath: opts.objectPath,
  };
  const tracer = Tracer.open(tracerOpts);
  const offset = bootToEpochOffsetNs();
  const clock = wallClock(offset);
  const stats: DecodeStats = { records: 0, malformed: 0 };
  let events = 0;
  let snapshotSkipped = 0;
  let outputClosed = false;
  const render =
    opts.format === 'json'
      ? (e: TcpEvent) => `${JSON.stringify(toJson(e, isoTime(e.tsNs, offset)))}\n`
      : (e: TcpEvent) => `${formatText(e, clock)}\n`;

  let lines: string[] = [];
  const collect = (e: TcpEvent) => {
    events++;
    lines.push(render(e));
  };
  const flush = () => {
    if (lines.length && !outputClosed) opts.out.write(lines.join(''));
    lines = [];
  };

  let stopNow: () => void = () => {};
  const stopped = new Promise<void>((resolve) => (stopNow = resolve));
  // A closed pipe (`| head`) ends the trace like a signal: nothing more can be shown.
  opts.out.on('error', () => {
    outputClosed = true;
    stopNow();
  });

  try {
    if (opts.format === 'text') opts.out.write(`${TEXT_HEADER}\n`);
    const reader = tracer.readRing(
      opts.format === 'raw'
        ? (batch) => {
            // Counted, not decoded: each entry is [u32 len][u32 0][record][pad to 8].
            for (let off = 0; off + RING_HEADER_BYTES <= batch.length; off += RING_HEADER_BYTES + ((batch.readUInt32LE(off) + 7) & ~7)) events++;
            if (!outputClosed) opts.out.write(batch);
          }
        : (batch) => {
            decodeRingBatch(batch, collect, stats);
            flush();
          },
    );

    if (opts.snapshot) {
      const all = listNetns();
      const wanted = opts.netns.length
        ? opts.netns.map((n) => (n.path ? n : (all.find((a) => a.inode === n.inode) ?? n)))
        : all;
      for (const ns of wanted) {
        if (!ns.path) {
          snapshotSkipped++;
          opts.err.write(`tcpdwell trace: no path opens network namespace ${ns.inode}; its existing sockets are not listed\n`);
          continue;
        }
        const records = tracer.snapshot(ns);
        if (opts.format === 'raw') {
          if (!outputClosed) opts.out.write(frameRecords(records));
          events += Math.floor(records.length / EVENT_SIZE);
        } else {
          decodeRecords(records, collect, stats);
          flush();
        }
      }
    }
    opts.err.write('tcpdwell trace: tracing TCP state transitions (Ctrl-C to stop)\n');
    opts.onReady?.();

    const onSignal = () => stopNow();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const timer = opts.durationS !== null ? setTimeout(stopNow, opts.durationS * 1000) : undefined;
    await Promise.race([stopped, opts.stop ?? new Promise(() => {})]);
    clearTimeout(timer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);

    // Drain what the kernel already wrote before reading the counters.
    reader.consume();
    flush();
    const k = tracer.counters();
    const summary: TraceSummary = {
      events,
      lostRingFull: k.lost_ring_full,
      skipped: k.skipped_transitions,
      malformed: stats.malformed,
      snapshotSkipped,
    };
    // Skipped runs cannot be told apart by namespace or port: with filters they are reported
    // beside the loss, as an upper bound; without, they are loss.
    const filtered = opts.netns.length > 0 || opts.ports.length > 0 || opts.family !== null;
    const lost = summary.lostRingFull + summary.malformed + (filtered ? 0 : summary.skipped);
    const skippedNote = summary.skipped || k.skipped_timer
      ? filtered
        ? `; the kernel also skipped ${summary.skipped} transitions and ${k.skipped_timer} timer events host-wide (nested runs; some may be yours)`
        : `, ${summary.skipped} skipped by the kernel (nested runs)${k.skipped_timer ? `; ${k.skipped_timer} timer events skipped` : ''}`
      : '';
    opts.err.write(
      `tcpdwell trace: ${summary.events} events seen, ${lost} lost (${summary.lostRingFull} ring full, ${summary.malformed} malformed${skippedNote})\n`,
    );
    return summary;
  } finally {
    tracer.close();
  }
}

/** Back-to-back iterator records as one ring batch (the framing `--format raw` writes). */
export function frameRecords(records: Buffer): Buffer {
  const n = Math.floor(records.length / EVENT_SIZE);
  const padded = (EVENT_SIZE + 7) & ~7;
  const out = Buffer.alloc(n * (RING_HEADER_BYTES + padded));
  for (let i = 0; i < n; i++) {
    const at = i * (RING_HEADER_BYTES + padded);
    out.writeUInt32LE(EVENT_SIZE, at);
    records.copy(out, at + RING_HEADER_BYTES, i * EVENT_SIZE, (i + 1) * EVENT_SIZE);
  }
  return out;
}
