/** `tcpdwell states`: the live socket table once, netstat-style, from the kernel's own socket tables. */
import type { Writable } from 'node:stream';
import { clockBoottimeNs } from 'bpf-ts-loader';
import { decodeRecords, type DecodeStats, type TcpEvent } from './decode.js';
import { listNetns, type Netns } from './netns.js';
import { Tracer } from './tracer.js';
import { Tracker, type LiveTableSnapshot } from './track/index.js';

export interface StatesOptions {
  netns: Netns[];
  format: 'json' | 'text';
  out: Writable;
  err: Writable;
  objectPath?: string;
}

/** Seeds a tracker from a snapshot of each namespace and returns its table. */
export function snapshotTable(opts: Pick<StatesOptions, 'netns' | 'objectPath'>, stats: DecodeStats): LiveTableSnapshot {
  const tracer = Tracer.open({ netns: opts.netns.map((n) => n.inode), objectPath: opts.objectPath });
  try {
    const tracker = new Tracker({ clock: clockBoottimeNs });
    const all = listNetns();
    const wanted = opts.netns.length ? opts.netns.map((n) => (n.path ? n : (all.find((a) => a.inode === n.inode) ?? n))) : all;
    for (const ns of wanted) {
      if (!ns.path) continue;
      const events: TcpEvent[] = [];
      decodeRecords(tracer.snapshot(ns), (e) => events.push(e), stats);
      tracker.seed(ns.inode, events);
    }
    return tracker.table();
  } finally {
    tracer.close();
  }
}

export function runStates(opts: StatesOptions): LiveTableSnapshot {
  const stats: DecodeStats = { records: 0, malformed: 0 };
  const table = snapshotTable(opts, stats);
  if (opts.format === 'json') {
    opts.out.write(`${JSON.stringify({ total: table.total, byNetns: table.byNetns, sockets: table.sockets })}\n`);
  } else {
    const rows: string[] = ['NETNS        STATE          COUNT'];
    for (const { netns, counts } of table.byNetns) {
      for (const [state, n] of Object.entries(counts).sort()) rows.push(`${String(netns).padEnd(12)} ${state.padEnd(14)} ${n}`);
    }
    for (const [state, n] of Object.entries(table.total).sort()) rows.push(`${'total'.padEnd(12)} ${state.padEnd(14)} ${n}`);
    opts.out.write(`${rows.join('\n')}\n`);
  }
  if (stats.malformed) opts.err.write(`tcpdwell states: ${stats.malformed} malformed records skipped\n`);
  return table;
}
