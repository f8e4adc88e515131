/** `tcpdwell run`: the fleet agent, publishing to NATS (a local embedded server by default). */
import { fileURLToPath } from 'node:url';
import type { Writable } from 'node:stream';
import { Agent, type AgentStatus } from './agent.js';
import { connectionSettings, loadConfigFile } from './config.js';
import { startLocalNats, type LocalNats } from './nats-server.js';
import type { ConnectionSettings } from './publish/nats-options.js';
import type { Netns } from './netns.js';
import type { DetectorThresholds } from './track/index.js';
import { dropAfterStart } from './privileges.js';

/** The project folder for the embedded server's data and the default spool of `make run`. */
export const PROJECT_VAR_DIR = fileURLToPath(new URL('../var/', import.meta.url));
export const DEFAULT_SPOOL_DIR = '/var/lib/tcpdwell/spool';
/** Where the agent keeps per-socket kernel state across restarts (see `tcpdwell uninstall`). */
export const DEFAULT_PIN_DIR = '/sys/fs/bpf/tcpdwell';

export interface RunOptions {
  connection: Partial<ConnectionSettings>;
  configPath?: string;
  host?: string;
  spoolDir?: string;
  spoolMaxBytes?: number;
  netns: Netns[];
  ports: number[];
  family: 'inet' | 'inet6' | null;
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
  metricsListen?: string;
  thresholds?: Partial<DetectorThresholds>;
  /** bpffs directory for per-socket state kept across restarts; null = none */
  pinDir?: string | null;
  /** keep CAP_SYS_ADMIN + CAP_SYS_PTRACE after start, for snapshots of other namespaces on request */
  resnapshot?: boolean;
  err: Writable;
  env?: NodeJS.ProcessEnv;
}

export async function runAgent(opts: RunOptions): Promise<AgentStatus> {
  const say = (line: string) => opts.err.write(`tcpdwell run: ${line}\n`);
  const file = opts.configPath ? loadConfigFile(opts.configPath, (l) => opts.err.write(`${l}\n`)) : {};
  const env = opts.env ?? process.env;
  let local: LocalNats | null = null;
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
      log: say,
    },
    controlConfig: opts.controlConfig && file.control?.config !== false,
    stream: { streamMaxAgeS: opts.streamMaxAgeS, streamMaxBytes: opts.streamMaxBytes },
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
  say(`publishing to tcpdwell.v1.${agent.host}.{transitions,summary,snapshot} (spool ${spoolDir}); Ctrl-C to stop`);
  const line = (s: AgentStatus) =>
    `${s.events} events in ${s.batches} messages, ${s.nats.published} published, spool ${s.spool.messages} (${s.spool.bytes} B), ` +
    `lost: ${s.drops.lost_ring_full} ring full, ${s.drops.malformed} malformed, ${s.drops.spoolDropped} spool-dropped` +
    (s.nats.connected ? '' : ' [NATS unreachable: spooling]');
  const ticker = setInterval(() => say(line(agent.status())), opts.statusIntervalS * 1000);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
    if (opts.durationS !== null) setTimeout(resolve, opts.durationS * 1000);
  });
  clearInterval(ticker);
  const final = await agent.stop();
  say(`stopped: ${line(final)}`);
  await local?.stop();
  return final;
}
