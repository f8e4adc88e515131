/** The operator's commands: `tcpdwell top` (the live view) and `tcpdwell explain [STATE]`. */
import { Command, InvalidArgumentError, Option } from 'commander';
import { UsageError } from '../errors.js';
import { resolveNetns } from '../netns.js';
import { connectionSettings, loadConfigFile } from '../config.js';
import { explain } from '../explain.js';
import { runTop } from '../top/run.js';

// The same rules as cli.ts applies to trace/run flags (kept here so this file stands alone).
const collect = <T>(parse: (v: string) => T) => (value: string, previous: T[] = []) => [...previous, parse(value)];

function parsePort(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 65535) throw new InvalidArgumentError(`'${v}' is not a port: give a number from 1 to 65535.`);
  return Number(v);
}

function parseSeconds(v: string): number {
  const n = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v) || !(n > 0)) throw new InvalidArgumentError(`'${v}' is not a duration: give seconds > 0, e.g. 10 or 0.5.`);
  return n;
}

function parseRingBytes(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 4096 || (n & (n - 1)) !== 0) throw new InvalidArgumentError(`'${v}' is not a ring size: give a power of two of at least 4096 (bytes).`);
  return n;
}

interface TopFlags {
  nats?: string;
  user?: string;
  password?: string;
  token?: string;
  nkeySeed?: string;
  creds?: string;
  tlsCa?: string;
  config?: string;
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
  program
    .command('top')
    .description('live full-screen view: counts per state with trend, dwell percentiles, oldest sockets, connect failures, alerts, drops (this host; the fleet with --nats)')
    .option('--nats <urls>', 'show the fleet: read the agents\' summaries, alerts and dwell records from these NATS servers (env TCPDWELL_NATS_URL for the rest of the connection settings)')
    .option('--user <user>', 'NATS user (env TCPDWELL_NATS_USER)')
    .option('--password <password>', 'NATS password (env TCPDWELL_NATS_PASSWORD)')
    .option('--token <token>', 'NATS token (env TCPDWELL_NATS_TOKEN)')
    .option('--nkey-seed <file>', 'file with an NKey seed (env TCPDWELL_NATS_NKEY_SEED_FILE)')
    .option('--creds <file>', 'NATS credentials file (env TCPDWELL_NATS_CREDS)')
    .option('--tls-ca <file>', 'CA certificate to verify the server (env TCPDWELL_NATS_TLS_CA)')
    .option('--config <file>', 'JSON config file for the NATS connection (see README: Configuration)')
    .option('--host <name>', 'with --nats: only this host')
    .option('--netns <name|path|inode>', 'this host: only this network namespace (repeatable; filtered in the kernel)', collect(String), [])
    .option('--port <n>', 'this host: only sockets with this port at either end (repeatable; filtered in the kernel)', collect(parsePort), [])
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
      const connection = fleet
        ? connectionSettings(
            {
              servers: o.nats!.split(',').map((s) => s.trim()).filter(Boolean),
              user: o.user,
              password: o.password,
              token: o.token,
              nkeySeedFile: o.nkeySeed,
              credsFile: o.creds,
              tlsCaFile: o.tlsCa,
            },
            process.env,
            o.config ? loadConfigFile(o.config) : {},
            [],
          )
        : null;
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
