/** `tcpdwell states`: the live socket table once, netstat-style, from the kernel's own socket tables. */
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import type { Netns } from '../../kernel/namespaces.js';
import { decodeRecordList, type DecodeStats } from '../../decode/index.js';
import { Tracker, type LiveTableSnapshot } from '../../track/index.js';
import { addAgentPinOption, addFilterOptions, addFormatOption, filtersFrom, outputFormat, type FilterFlags } from '../options.js';
import { logger } from '../../common/log.js';

export interface StatesOptions {
  netns: Netns[];
  format: 'json' | 'text';
  out: Writable;
  err: Writable;
  objectPath?: string;
  /** the running agent's pin directory, read for the entry times and owners of existing sockets */
  agentPinDir?: string;
}

export function register(program: Command): void {
  const cmd = program.command('states').description('print the live socket table once (counts per state, per network namespace), from the kernel socket tables');
  addFilterOptions(cmd, { ports: false, family: false });
  addAgentPinOption(addFormatOption(cmd, 'json or a text table')).action(async (o: FilterFlags & { format?: 'json' | 'text'; agentPinDir: string }) => {
    await runStates({ netns: filtersFrom(o, { needPath: true }).netns, format: outputFormat(o.format), out: process.stdout, err: process.stderr, agentPinDir: o.agentPinDir });
  });
}

/** Seeds a tracker from a snapshot of each namespace and returns its table. */
export async function snapshotTable(opts: Pick<StatesOptions, 'netns' | 'objectPath' | 'agentPinDir'> & { log?: (line: string) => void }, stats: DecodeStats): Promise<LiveTableSnapshot> {
  const [{ Tracer }, { clockBoottimeNs }, { namespacesToWalk }] = await Promise.all([
    import('../../kernel/tracer.js'),
    import('../../kernel/clock.js'),
    import('../../kernel/namespaces.js'),
  ]);
  const tracer = Tracer.open({ netns: opts.netns.map((n) => n.inode), objectPath: opts.objectPath, peerPinDir: opts.agentPinDir, log: opts.log });
  try {
    const tracker = new Tracker({ clock: clockBoottimeNs });
    tracer.snapshotNamespaces(namespacesToWalk(opts.netns), (ns, records) => tracker.seed(ns.inode, decodeRecordList(records, stats)));
    return tracker.table();
  } finally {
    tracer.close();
  }
}

export async function runStates(opts: StatesOptions): Promise<LiveTableSnapshot> {
  const stats: DecodeStats = { records: 0, malformed: 0 };
  const table = await snapshotTable({ ...opts, log: (l) => logger('states', opts.err).warn(l) }, stats);
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
  if (stats.malformed) logger('states', opts.err).warn(`${stats.malformed} malformed records skipped`);
  return table;
}
