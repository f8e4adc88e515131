/** `tcpdwell top`: the live view of this host, or of the fleet with --nats (src/top/). */
import type { Command } from 'commander';
import { UsageError } from '../../common/errors.js';
import { addAgentPinOption, addConnectionOptions, addDurationOption, addFilterOptions, filtersFrom, parseRingBytes, parseSeconds, resolveConnection, type ConnectionFlags, type FilterFlags } from '../options.js';
import { logger } from '../../common/log.js';

interface TopFlags extends ConnectionFlags, FilterFlags {
  host?: string;
  ringBytes?: number;
  interval?: number;
  duration?: number;
  agentPinDir: string;
}

export function register(program: Command): void {
  const cmd = addConnectionOptions(
    program
      .command('top')
      .description('live full-screen view: counts per state with trend, dwell percentiles, oldest sockets, connect failures, alerts, drops (this host; the fleet with --nats)'),
    "show the fleet: read the agents' summaries, alerts and dwell records from these NATS servers (env TCPDWELL_NATS_URL for the rest of the connection settings)",
  ).option('--host <name>', 'with --nats: only this host');
  addFilterOptions(cmd, { scope: 'this host: ', netnsHelp: 'only this network namespace (repeatable; filtered in the kernel)' })
    .option('--ring-bytes <n>', 'this host: kernel ring buffer size in bytes (power of two)', parseRingBytes)
    .option('--interval <seconds>', 'refresh every this many seconds (default 1 on a terminal, 5 otherwise)', parseSeconds);
  addAgentPinOption(addDurationOption(cmd)).action(async (o: TopFlags) => {
    const fleet = o.nats !== undefined;
    if (fleet && (o.netns.length || o.port.length || o.family || o.ringBytes)) {
      throw new UsageError('--netns, --port, --family and --ring-bytes load the kernel program on this host; with --nats, filter in the view (keys n, p, c)');
    }
    if (!fleet && o.host) throw new UsageError('--host picks one host of the fleet: give --nats too');
    const connection = fleet ? resolveConnection(o, [], logger('top')) : null;
    const { runTop } = await import('../../top/app.js');
    await runTop({
      ...filtersFrom(o),
      connection: connection ? { ...connection, name: 'tcpdwell-top' } : null,
      host: o.host,
      ringBytes: o.ringBytes,
      agentPinDir: o.agentPinDir,
      intervalS: o.interval ?? (process.stdout.isTTY ? 1 : 5),
      durationS: o.duration ?? null,
      out: process.stdout,
      input: process.stdin,
      err: process.stderr,
    });
  });
}
