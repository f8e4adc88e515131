/**
 * `tcpdwell trace`: every TCP transition, timewait phase and existing socket, as text or JSON
 * lines — or `raw`: the kernel's records as bpf-ts-loader batches, undecoded ([u32 len][u32 0]
 * [record][pad to 8], back to back; a recording is itself one valid batch). Raw is the cheapest
 * capture there is (no decoding in the loop); `decodeRingBatch` reads it back, and `make bench`
 * replays such recordings through the agent's pipeline.
 */
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import { UsageError } from '../../common/errors.js';
import { untilStopped } from '../../common/lifecycle.js';
import { EVENT_SIZE, type LossReason } from '../../kernel/abi.js';
import type { Family } from '../../kernel/filters.js';
import { namespacesToWalk, type Netns } from '../../kernel/namespaces.js';
import {
  decodeRecords,
  decodeRingBatch,
  formatText,
  frameRecords,
  isoTime,
  RING_HEADER_BYTES,
  TEXT_HEADER,
  toJson,
  wallClock,
  type DecodeStats,
  type TcpEvent,
} from '../../decode/index.js';
import { addAgentPinOption, addDurationOption, addFilterOptions, addFormatOption, filtersFrom, outputFormat, parseRingBytes, type FilterFlags } from '../options.js';
import { logger } from '../../common/log.js';

export function register(program: Command): void {
  const cmd = program.command('trace').description('print every TCP state transition, timewait phase and (at start) existing socket');
  addFormatOption(cmd, 'json lines, a text table, or raw kernel records to replay later', ['json', 'text', 'raw']);
  addFilterOptions(cmd, { netnsHelp: 'only this network namespace (repeatable): a name from `ip netns`, a path like /proc/PID/ns/net, or an inode' });
  addAgentPinOption(addDurationOption(cmd))
    .option('--no-snapshot', 'do not list the sockets that exist when tracing starts')
    .option('--ring-bytes <n>', 'kernel ring buffer size in bytes (power of two)', parseRingBytes)
    .action(async (o: FilterFlags & { format?: 'json' | 'text' | 'raw'; duration?: number; snapshot: boolean; ringBytes?: number; agentPinDir?: string }) => {
      const filters = filtersFrom(o);
      if (o.format === 'raw' && process.stdout.isTTY) throw new UsageError('--format raw writes binary records: redirect it to a file (tcpdwell trace --format raw > capture.ring)');
      await runTrace({
        ...filters,
        format: outputFormat(o.format),
        durationS: o.duration ?? null,
        snapshot: o.snapshot,
        ringBytes: o.ringBytes,
        agentPinDir: o.agentPinDir,
        out: process.stdout,
        err: process.stderr,
      });
    });
}

export interface TraceOptions {
  format: 'json' | 'text' | 'raw';
  netns: Netns[];
  ports: number[];
  family: Family | null;
  /** stop after this many seconds; null = until SIGINT/SIGTERM */
  durationS: number | null;
  snapshot: boolean;
  ringBytes?: number;
  wakeupBytes?: number;
  /** the running agent's pin directory, read for the entry times and owners of existing sockets */
  agentPinDir?: string;
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
  const log = logger('trace', opts.err);
  const [{ Tracer }, { bootToEpochOffsetNs }] = await Promise.all([import('../../kernel/tracer.js'), import('../../kernel/clock.js')]);
  const tracer = Tracer.open({
    netns: opts.netns.map((n) => n.inode),
    ports: opts.ports,
    family: opts.family,
    ringBytes: opts.ringBytes,
    wakeupBytes: opts.wakeupBytes,
    objectPath: opts.objectPath,
    peerPinDir: opts.agentPinDir,
    log: (l) => log.warn(l),
  });
  const offset = bootToEpochOffsetNs();
  const clock = wallClock(offset);
  const stats: DecodeStats = { records: 0, malformed: 0 };
  let events = 0;
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

    let snapshotSkipped = 0;
    if (opts.snapshot) {
      const { noPath } = tracer.snapshotNamespaces(namespacesToWalk(opts.netns), (_ns, records) => {
        if (opts.format === 'raw') {
          if (!outputClosed) opts.out.write(frameRecords(records));
          events += Math.floor(records.length / EVENT_SIZE);
        } else {
          decodeRecords(records, collect, stats);
          flush();
        }
      });
      snapshotSkipped = noPath.length;
      for (const ns of noPath) log.warn(`no path opens network namespace ${ns.inode}; its existing sockets are not listed`);
    } else {
      tracer.socketFiles({ listenersOnly: false }); // not listed, but their holders are their owners in the events to come
    }
    log('tracing TCP state transitions (Ctrl-C to stop)');
    opts.onReady?.();

    await untilStopped({ durationS: opts.durationS, also: opts.stop ? Promise.race([stopped, opts.stop]) : stopped });

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
    const losses: Record<LossReason, number> = {
      ring_full: summary.lostRingFull,
      kernel_skipped: filtered ? 0 : summary.skipped,
      malformed: summary.malformed,
      spool_dropped: 0,
    };
    const lost = Object.values(losses).reduce((a, b) => a + b, 0);
    const skippedNote = summary.skipped || k.skipped_timer
      ? filtered
        ? `; the kernel also skipped ${summary.skipped} transitions and ${k.skipped_timer} timer events host-wide (nested runs; some may be yours)`
        : `, ${summary.skipped} skipped by the kernel (nested runs)${k.skipped_timer ? `; ${k.skipped_timer} timer events skipped` : ''}`
      : '';
    log(`${summary.events} events seen, ${lost} lost (${summary.lostRingFull} ring full, ${summary.malformed} malformed${skippedNote})`);
    return summary;
  } finally {
    tracer.close();
  }
}
