/** The operator's commands: `tcpdwell top` (the live view) and `tcpdwell explain [STATE]`. */
import { Command, Option } from 'commander';
import { UsageError } from '../errors.js';
import { resolveNetns } from '../netns.js';
import { addConnectionOptions, parsePort, parseRingBytes, parseSeconds, repeatable, resolveConnection, type ConnectionFlags } from './options.js';
import { explain } from '../explain.js';
import { runTop } from '../top/run.js';

interface TopFlags extends ConnectionFlags {
  host?: string;
  netns: string[];
  port: number[];
  family?: '4' | '6';
  ringBytes?: number;
  interval?: number;
  duration?: number;
}

/** Adds `top` and `explain` to the program. */
export function registerTopCommands(program: Command): void {
  addConnectionOptions(
    program
      .command('top')
      .description('live full-screen view: counts per state with trend, dwell percentiles, oldest sockets, connect failures, alerts, drops (this host; the fleet with --nats)'),
    "show the fleet: read the agents' summaries, alerts and dwell records from these NATS servers (env TCPDWELL_NATS_URL for the rest of the connection settings)",
  )
    .option('--host <name>', 'with --nats: only this host')
    .option('--netns <name|path|inode>', 'this host: only this network namespace (repeatable; filtered in the kernel)', repeatable(String), [])
    .option('--port <n>', 'this host: only sockets with this port at either end (repeatable; filtered in the kernel)', repeatable(parsePort), [])
    .addOption(new Option('--family <4|6>', 'this host: only IPv4 or only IPv6').choices(['4', '6']))
    .option('--ring-bytes <n>', 'this host: kernel ring buffer size in bytes (power of two)', parseRingBytes)
    .option('--interval <seconds>', 'refresh every this many seconds (default 1 on a terminal, 5 otherwise)', parseSeconds)
    .option('--duration <seconds>', 'stop after this many seconds', parseSeconds)
    .action(async (o: TopFlags) => {
      const fleet = o.nats !== undefined;
      if (fleet && (o.netns.length || o.port.length || o.family || o.ringBytes)) {
        throw new UsageError('--netns, --port, --family and --ring-bytes load the kernel program on this host; with --nats, filter in the view (keys n, p, c)');
      }
      if (!fleet && o.host) throw new UsageError('--host picks one host of the fleet: give --nats too');
      const connection = fleet ? resolveConnection(o, []) : null;
      await runTop({
        connection: connection ? { ...connection, name: 'tcpdwell-top' } : null,
        host: o.host,
        netns: o.netns.map((spec) => resolveNetns(spec)),
        ports: o.port,
        family: o.family === '4' ? 'inet' : o.family === '6' ? 'inet6' : null,
        ringBytes: o.ringBytes,
        intervalS: o.interval ?? (process.stdout.isTTY ? 1 : 5),
        durationS: o.duration ?? null,
        out: process.stdout,
        input: process.stdin,
        err: process.stderr,
      });
    });

  program
    .command('explain')
    .description('what a TCP state means, when a pile-up of it is normal and when it is an incident, and what to check next (every state without an argument)')
    .argument('[state]', 'a kernel state (CLOSE_WAIT), the name ss prints (CLOSE-WAIT, ESTAB), or a detector (close_wait_leak)')
    .action((state: string | undefined) => {
      const width = Math.min(process.stdout.columns || 100, 100);
      process.stdout.write(explain(state, width));
    });
}
