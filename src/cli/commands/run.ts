/** `tcpdwell run`: the fleet agent, publishing to NATS (a local embedded server by default). */
import { fileURLToPath } from 'node:url';
import type { Writable } from 'node:stream';
import { type Command, InvalidArgumentError } from 'commander';
import { untilStopped } from '../../common/lifecycle.js';
import { logger } from '../../common/log.js';
import { DEFAULT_FLUSH_MS, DEFAULT_HEAL_MS, DEFAULT_SPOOL_DIR } from '../../agent/defaults.js';
import { DEFAULT_PIN_DIR } from '../../kernel/pins.js';
import type { Family } from '../../kernel/filters.js';
import type { Netns } from '../../kernel/namespaces.js';
import type { ConnectionSettings } from '../../publish/connection.js';
import { lossesOf, type AgentStatus } from '../../publish/service.js';
import { agentSubjects } from '../../publish/subjects.js';
import { DEFAULT_THRESHOLDS, parseThresholdValue, type DetectorThresholds } from '../../track/index.js';
import { applyConfigFile, connectionSettings, loadConfigFile, type FileConfig } from '../config.js';
import {
  addConnectionOptions,
  addDurationOption,
  addFilterOptions,
  connectionFlags,
  filtersFrom,
  parseBytes,
  parseRingBytes,
  parseSeconds,
  parseSecondsOrOff,
  type ConnectionFlags,
  type FilterFlags,
} from '../options.js';

/** The project folder for the embedded server's data and the default spool of `make run`. */
export const PROJECT_VAR_DIR = fileURLToPath(new URL('../../../var/', import.meta.url));

/** --threshold NAME=VALUE (repeatable): durations like 300ms or 60s for the duration thresholds. */
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

type RunFlags = ConnectionFlags &
  FilterFlags & {
    pinDir: string;
    pin: boolean;
    resnapshot?: boolean;
    metricsListen?: string | true;
    threshold: Partial<DetectorThresholds>;
    streamMaxAge?: number;
    streamMaxBytes?: number;
    createStream?: boolean;
    host?: string;
    spoolDir?: string;
    spoolMaxBytes?: number;
    ringBytes?: number;
    duration?: number;
    statusInterval: number;
    summaryInterval: number;
    flushInterval: number;
    healInterval: number;
    controlConfig: boolean;
    store?: string;
  };

export function register(program: Command): void {
  const cmd = addConnectionOptions(
    program.command('run').description('the fleet agent: trace, batch, spool and publish to NATS (a local embedded nats-server unless --nats is given)'),
  )
    .option('--host <name>', 'host id in subjects and messages (default: the hostname; env TCPDWELL_HOST)')
    .option('--spool-dir <dir>', 'store-and-forward spool directory (env TCPDWELL_SPOOL_DIR)')
    .option('--spool-max-bytes <n>', 'spool bound; the oldest messages are dropped (and counted) past it (e.g. 256MiB)', parseBytes)
    .option('--ring-bytes <n>', 'kernel ring buffer size in bytes (power of two; default 16 MiB)', parseRingBytes);
  addFilterOptions(cmd);
  addDurationOption(cmd)
    .option('--status-interval <seconds>', 'print a status line this often', parseSeconds, 5)
    .option('--summary-interval <seconds>', 'publish a summary this often', parseSeconds, 10)
    .option('--heal-interval <seconds>', "re-read the traced namespaces' sockets this often and put right what the live table missed (0 = never)", parseSecondsOrOff, DEFAULT_HEAL_MS / 1000)
    .option('--flush-interval <seconds>', 'latency budget: a batch is published once its oldest event has waited this long, or at 4096 events, whichever comes first', parseSeconds, DEFAULT_FLUSH_MS / 1000)
    .option('--no-control-config', "refuse the control service's config endpoint")
    .option('--metrics-listen [host:port]', 'serve Prometheus metrics at http://HOST:PORT/metrics, /healthz, /readyz and a landing page at / (the flag alone: 0.0.0.0:19464)')
    .option('--pin-dir <dir>', 'bpffs directory keeping per-socket state across agent restarts (dwells stay exact)', DEFAULT_PIN_DIR)
    .option('--no-pin', 'keep no per-socket state across restarts')
    .option('--resnapshot', 'keep CAP_SYS_ADMIN and CAP_SYS_PTRACE after start, so the control service can snapshot other network namespaces later (otherwise dropped)')
    .option('--threshold <name=value>', `detector threshold (repeatable), e.g. closeWaitAgeNs=30s; names: ${Object.keys(DEFAULT_THRESHOLDS).join(', ')}`, parseThreshold, {})
    .option('--create-stream', 'create the JetStream stream if it is missing (default: wait for it, spooling: fleets provision it centrally, e.g. tcpdwell collect creates it; on when no --nats is given)')
    .option('--stream-max-age <seconds>', 'retention of the JetStream stream when the agent creates it (default 7 days)', parseSeconds)
    .option('--stream-max-bytes <n>', 'size bound of the JetStream stream when the agent creates it (default 1GiB)', parseBytes)
    .option('--store <file>', 'also run a collector beside the agent, storing every message into this DuckDB file (forensics on one machine: tcpdwell query --store FILE)')
    .action(async (flags: RunFlags, cmd: Command) => {
      const file = flags.config ? loadConfigFile(flags.config, logger('run').warn) : {};
      applyConfigFile(cmd, 'run', file);
      const o = cmd.opts<RunFlags>();
      await runAgent({
        ...filtersFrom(o),
        connection: connectionFlags(o),
        file,
        host: o.host,
        spoolDir: o.spoolDir,
        spoolMaxBytes: o.spoolMaxBytes,
        ringBytes: o.ringBytes,
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
        store: o.store,
        createStream: o.createStream,
        err: process.stderr,
      });
    });
}

export interface RunOptions {
  connection: Partial<ConnectionSettings>;
  /** the config file, loaded (its host, nats, spool, filters and control; the rest fill flags) */
  file?: FileConfig;
  host?: string;
  spoolDir?: string;
  spoolMaxBytes?: number;
  /** kernel ring buffer size (default: the program's, 16 MiB) */
  ringBytes?: number;
  netns: Netns[];
  ports: number[];
  family: Family | null;
  durationS: number | null;
  controlConfig: boolean;
  statusIntervalS: number;
  summaryIntervalS: number;
  /** a batch of transitions is published at least this often (default 0.1 s) */
  flushIntervalS?: number;
  /** see AgentOptions.healIntervalMs (seconds; 0 = never) */
  healIntervalS?: number;
  streamMaxAgeS?: number;
  streamMaxBytes?: number;
  /** create the stream when missing (default: only with the embedded server) */
  createStream?: boolean;
  metricsListen?: string | true;
  /** a DuckDB file: run a collector beside the agent, storing into it */
  store?: string;
  thresholds?: Partial<DetectorThresholds>;
  /** bpffs directory for per-socket state kept across restarts; null = none */
  pinDir?: string | null;
  /** keep CAP_SYS_ADMIN + CAP_SYS_PTRACE after start, for snapshots of other namespaces on request */
  resnapshot?: boolean;
  err: Writable;
  env?: NodeJS.ProcessEnv;
}

export async function runAgent(opts: RunOptions): Promise<AgentStatus> {
  const [{ Agent }, { startLocalNats }, { dropAfterStart }, { AGENT_METRICS_PORT, listenAddress }, { agentHealth }, { startServiceNotify }, { checkEnvironment }] = await Promise.all([
    import('../../agent/agent.js'),
    import('../../publish/nats-server.js'),
    import('../../kernel/privileges.js'),
    import('../../publish/metrics.js'),
    import('../../agent/health.js'),
    import('../../agent/watchdog.js'),
    import('../../kernel/preflight.js'),
  ]);
  if (opts.metricsListen !== undefined) listenAddress(opts.metricsListen, AGENT_METRICS_PORT); // a usage error before anything loads
  // Before the embedded server and the spool touch any file: without the privileges, what is
  // needed is the one thing to say, not the EACCES of whichever directory came first.
  checkEnvironment();
  const say = logger('run', opts.err);
  const file = opts.file ?? {};
  const env = opts.env ?? process.env;
  let local: Awaited<ReturnType<typeof startLocalNats>> | null = null;
  let connection = connectionSettings(opts.connection, env, file, []);
  let spoolDir = opts.spoolDir ?? env.TCPDWELL_SPOOL_DIR ?? file.spool?.dir;
  if (connection.servers.length === 0) {
    local = await startLocalNats({ storeDir: `${PROJECT_VAR_DIR}nats`, port: 4222 }).catch(() =>
      startLocalNats({ storeDir: `${PROJECT_VAR_DIR}nats` }),
    );
    connection = { ...connection, servers: [local.url] };
    spoolDir ??= `${PROJECT_VAR_DIR}spool`;
    say(`no --nats given: started a local nats-server with JetStream at ${local.url} (data in ${local.storeDir})`);
  }
  spoolDir ??= DEFAULT_SPOOL_DIR;
  const agent = await Agent.start({
    host: opts.host ?? env.TCPDWELL_HOST ?? file.host,
    connection: { ...connection, name: 'tcpdwell-agent' },
    spoolDir,
    spoolMaxBytes: opts.spoolMaxBytes ?? file.spool?.maxBytes,
    summaryIntervalMs: opts.summaryIntervalS * 1000,
    flushIntervalMs: opts.flushIntervalS !== undefined ? opts.flushIntervalS * 1000 : undefined,
    healIntervalMs: opts.healIntervalS !== undefined ? opts.healIntervalS * 1000 : undefined,
    tracer: {
      netns: opts.netns.length ? opts.netns.map((n) => n.inode) : file.filters?.netns,
      ports: opts.ports.length ? opts.ports : file.filters?.ports,
      family: opts.family ?? file.filters?.family ?? null,
      pinDir: opts.pinDir === null ? undefined : (opts.pinDir ?? DEFAULT_PIN_DIR),
      ringBytes: opts.ringBytes,
      log: say,
    },
    controlConfig: opts.controlConfig && file.control?.config !== false,
    // An embedded server is this agent's own: it makes its stream there (make run).
    stream: { streamMaxAgeS: opts.streamMaxAgeS, streamMaxBytes: opts.streamMaxBytes, createStream: opts.createStream === true || local !== null },
    metricsListen: opts.metricsListen,
    thresholds: opts.thresholds,
    log: say,
  }).catch(async (err) => {
    await local?.stop();
    throw err;
  });
  // Loaded, attached, snapshotted and connected: give up what is no longer needed (src/privileges.ts).
  const dropped = dropAfterStart({ resnapshot: opts.resnapshot ?? false });
  if (dropped) {
    agent.enterNetns = opts.resnapshot ?? false;
    say(
      `capabilities after start: ${dropped.kept.length ? dropped.kept.join(', ') : 'none'} (dropped ${dropped.dropped.length})` +
        (dropped.unreached.length ? `; ${dropped.unreached.length} thread(s) blocking all signals kept theirs (Node's inspector signal thread, which runs no JavaScript)` : ''),
    );
  }
  say(`publishing to ${agentSubjects(agent.host, '{transitions,summary,snapshot}')} (spool ${spoolDir}); Ctrl-C to stop`);
  const line = (s: AgentStatus) => {
    const lost = lossesOf(s.drops);
    return (
      `${s.events} events in ${s.batches} messages, ${s.nats.published} published, spool ${s.spool.messages} (${s.spool.bytes} B), ` +
      `lost: ${lost.ring_full} ring full, ${lost.malformed} malformed, ${lost.spool_dropped} spool-dropped` +
      (s.nats.connected ? '' : ' [NATS unreachable: spooling]')
    );
  };
  // The collector beside it (src/collect/), when asked: the machine's own forensics, no server.
  let collector: { stop(): Promise<unknown> } | null = null;
  let store: { close(): Promise<void> } | null = null;
  if (opts.store) {
    const [{ Collector }, { openStore }] = await Promise.all([import('../../collect/collector.js'), import('../../collect/open-store.js')]);
    store = await openStore(opts.store);
    collector = await Collector.start({ connection, store: store as Awaited<ReturnType<typeof openStore>>, log: (l) => say(`collect: ${l}`) });
  }
  const systemd = startServiceNotify({ health: agentHealth(agent), log: say.warn, env });
  const ticker = setInterval(() => {
    const l = line(agent.status());
    say(l);
    systemd?.status(l);
  }, opts.statusIntervalS * 1000);
  await untilStopped({ durationS: opts.durationS });
  clearInterval(ticker);
  systemd?.stop();
  const final = await agent.stop();
  say(`stopped: ${line(final)}`);
  await collector?.stop();
  await store?.close();
  await local?.stop();
  return final;
}
