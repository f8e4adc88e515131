/** The tcpdwell command line. It only parses and wires modules together. */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { EnvironmentError, UsageError } from './errors.js';
import { resolveNetns } from './netns.js';
import { runTrace } from './trace.js';
import { DEFAULT_PIN_DIR, runAgent } from './run.js';
import { DEFAULT_FLUSH_MS, DEFAULT_HEAL_MS } from './agent.js';
import { removePinned } from './tracer.js';
import { runTail } from './tail.js';
import { runStates } from './states.js';
import { DEFAULT_THRESHOLDS, type DetectorThresholds } from './track/index.js';
import { parseThresholdValue } from './track/detectors.js';
import {
  addConnectionOptions,
  connectionFlags,
  parseBytes,
  parsePort,
  parseRingBytes,
  parseSeconds,
  parseSecondsOrOff,
  repeatable,
  resolveConnection,
  type ConnectionFlags,
} from './commands/options.js';
import { registerTopCommands } from './commands/top.js';
import { registerCollectCommands } from './commands/collect.js';

/** --threshold NAME=VALUE (repeatable): durations like 300ms or 60s for the *Ns thresholds. */
function parseThreshold(v: string, previous: Partial<DetectorThresholds> = {}): Partial<DetectorThresholds> {
  const m = /^(\w+)=(.+)$/.exec(v);
  const known = Object.keys(DEFAULT_THRESHOLDS).join(', ');
  if (!m || !(m[1]! in DEFAULT_THRESHOLDS)) throw new InvalidArgumentError(`'${v}': give NAME=VALUE with NAME one of ${known}.`);
  try {
    return { ...previous, [m[1]!]: parseThresholdValue(m[1]!, m[2]!) };
  } catch (err) {
    throw new InvalidArgumentError(`'${v}': ${(err as Error).message}.`);
  }
}

export function buildProgram(): Command {
  const program = new Command('tcpdwell')
    .description('Every TCP state transition on this host, with the exact time spent in each state (TIME_WAIT included).')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  program
    .command('trace')
    .description('print every TCP state transition, timewait phase and (at start) existing socket')
    .addOption(new Option('--format <format>', 'json lines, a text table, or raw kernel records to replay later (default: text on a terminal, json otherwise)').choices(['json', 'text', 'raw']))
    .option('--netns <name|path|inode>', 'only this network namespace (repeatable): a name from `ip netns`, a path like /proc/PID/ns/net, or an inode', repeatable(String), [])
    .option('--port <n>', 'only sockets with this port at either end (repeatable)', repeatable(parsePort), [])
    .addOption(new Option('--family <4|6>', 'only IPv4 or only IPv6').choices(['4', '6']))
    .option('--duration <seconds>', 'stop after this many seconds', parseSeconds)
    .option('--no-snapshot', 'do not list the sockets that exist when tracing starts')
    .option('--ring-bytes <n>', 'kernel ring buffer size in bytes (power of two)', parseRingBytes)
    .action(async (o: { format?: 'json' | 'text' | 'raw'; netns: string[]; port: number[]; family?: '4' | '6'; duration?: number; snapshot: boolean; ringBytes?: number }) => {
      const netns = o.netns.map((spec) => resolveNetns(spec));
      if (o.format === 'raw' && process.stdout.isTTY) throw new UsageError('--format raw writes binary records: redirect it to a file (tcpdwell trace --format raw > capture.ring)');
      await runTrace({
        format: o.format ?? (process.stdout.isTTY ? 'text' : 'json'),
        netns,
        ports: o.port,
        family: o.family === '4' ? 'inet' : o.family === '6' ? 'inet6' : null,
        durationS: o.duration ?? null,
        snapshot: o.snapshot,
        ringBytes: o.ringBytes,
        out: process.stdout,
        err: process.stderr,
      });
    });
  addConnectionOptions(
    program
      .command('run')
      .description('the fleet agent: trace, batch, spool and publish to NATS (a local embedded nats-server unless --nats is given)'),
  )
    .option('--host <name>', 'host id in subjects and messages (default: the hostname; env TCPDWELL_HOST)')
    .option('--spool-dir <dir>', 'store-and-forward spool directory (env TCPDWELL_SPOOL_DIR)')
    .option('--spool-max-bytes <n>', 'spool bound; the oldest messages are dropped (and counted) past it (e.g. 256MiB)', parseBytes)
    .option('--netns <name|path|inode>', 'only this network namespace (repeatable)', repeatable(String), [])
    .option('--port <n>', 'only sockets with this port at either end (repeatable)', repeatable(parsePort), [])
    .addOption(new Option('--family <4|6>', 'only IPv4 or only IPv6').choices(['4', '6']))
    .option('--duration <seconds>', 'stop after this many seconds', parseSeconds)
    .option('--status-interval <seconds>', 'print a status line this often', parseSeconds, 5)
    .option('--summary-interval <seconds>', 'publish a summary this often', parseSeconds, 10)
    .option('--heal-interval <seconds>', 're-read the traced namespaces\' sockets this often and put right what the live table missed (0 = never)', parseSecondsOrOff, DEFAULT_HEAL_MS / 1000)
    .option('--flush-interval <seconds>', 'publish a batch of transitions at least this often (also at 4096 events)', parseSeconds, DEFAULT_FLUSH_MS / 1000)
    .option('--no-control-config', "refuse the control service's config endpoint")
    .option('--metrics-listen <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics')
    .option('--pin-dir <dir>', 'bpffs directory keeping per-socket state across agent restarts (dwells stay exact)', DEFAULT_PIN_DIR)
    .option('--no-pin', 'keep no per-socket state across restarts')
    .option('--resnapshot', 'keep CAP_SYS_ADMIN and CAP_SYS_PTRACE after start, so the control service can snapshot other network namespaces later (otherwise dropped)')
    .option('--threshold <name=value>', `detector threshold (repeatable), e.g. closeWaitAgeNs=30s; names: ${Object.keys(DEFAULT_THRESHOLDS).join(', ')}`, parseThreshold, {})
    .option('--stream-max-age <seconds>', 'retention of the JetStream stream when the agent creates it (default 7 days)', parseSeconds)
    .option('--stream-max-bytes <n>', 'size bound of the JetStream stream when the agent creates it (default 1GiB)', parseBytes)
    .action(async (o: ConnectionFlags & { pinDir: string; pin: boolean; resnapshot?: boolean; metricsListen?: string; threshold: Partial<DetectorThresholds>; streamMaxAge?: number; streamMaxBytes?: number; host?: string; spoolDir?: string; spoolMaxBytes?: number; netns: string[]; port: number[]; family?: '4' | '6'; duration?: number; statusInterval: number; summaryInterval: number; flushInterval: number; healInterval: number; controlConfig: boolean }) => {
      await runAgent({
        connection: connectionFlags(o),
        configPath: o.config,
        host: o.host,
        spoolDir: o.spoolDir,
        spoolMaxBytes: o.spoolMaxBytes,
        netns: o.netns.map((spec) => resolveNetns(spec)),
        ports: o.port,
        family: o.family === '4' ? 'inet' : o.family === '6' ? 'inet6' : null,
        durationS: o.duration ?? null,
        controlConfig: o.controlConfig,
        statusIntervalS: o.statusInterval,
        summaryIntervalS: o.summaryInterval,
        flushIntervalS: o.flushInterval,
        healIntervalS: o.healInterval,
        streamMaxAgeS: o.streamMaxAge,
        metricsListen: o.metricsListen,
        thresholds: o.threshold,
        pinDir: o.pin ? o.pinDir : null,
        resnapshot: o.resnapshot ?? false,
        streamMaxBytes: o.streamMaxBytes,
        err: process.stderr,
      });
    });

  program
    .command('uninstall')
    .description("remove the agent's pinned kernel state (what `run` keeps across restarts)")
    .option('--pin-dir <dir>', 'the directory given to run --pin-dir', DEFAULT_PIN_DIR)
    .action((o: { pinDir: string }) => {
      const removed = removePinned(o.pinDir);
      process.stderr.write(`tcpdwell uninstall: ${removed.length ? `removed ${removed.join(', ')}` : `nothing pinned in ${o.pinDir}`}\n`);
    });

  program
    .command('states')
    .description('print the live socket table once (counts per state, per network namespace), from the kernel socket tables')
    .option('--netns <name|path|inode>', 'only this network namespace (repeatable)', repeatable(String), [])
    .addOption(new Option('--format <format>', 'json or a text table (default: text on a terminal)').choices(['json', 'text']))
    .action((o: { netns: string[]; format?: 'json' | 'text' }) => {
      runStates({
        netns: o.netns.map((spec) => resolveNetns(spec)),
        format: o.format ?? (process.stdout.isTTY ? 'text' : 'json'),
        out: process.stdout,
        err: process.stderr,
      });
    });

  addConnectionOptions(program.command('tail').description("print the fleet's messages as they arrive on NATS, decoded"))
    .option('--host <name>', 'only this host')
    .addOption(new Option('--kind <kind>', 'only this kind of message').choices(['transitions', 'dwell', 'summary', 'alerts', 'snapshot']))
    .addOption(new Option('--format <format>', 'json lines or readable text (default: text on a terminal)').choices(['json', 'text']))
    .option('--duration <seconds>', 'stop after this many seconds', parseSeconds)
    .action(async (o: ConnectionFlags & { host?: string; kind?: string; format?: 'json' | 'text'; duration?: number }) => {
      await runTail({
        connection: resolveConnection(o),
        host: o.host,
        kind: o.kind,
        format: o.format ?? (process.stdout.isTTY ? 'text' : 'json'),
        durationS: o.duration ?? null,
        out: process.stdout,
        err: process.stderr,
      });
    });
  registerTopCommands(program);
  registerCollectCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has already printed its message; help and version are not errors.
      return err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.help' ? 0 : 2;
    }
    if (err instanceof UsageError || err instanceof EnvironmentError) {
      process.stderr.write(`tcpdwell: ${err.message}\n`);
      return err.exitCode;
    }
    const e = err as Error;
    process.stderr.write(`tcpdwell: unexpected error: ${e?.message ?? String(err)}\n`);
    if (process.env.TCPDWELL_DEBUG) process.stderr.write(`${e?.stack}\n`);
    return 1;
  }
}
