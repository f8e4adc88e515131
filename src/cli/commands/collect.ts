/** `tcpdwell collect`: the fleet collector (src/collect/), with its metrics and a status line. */
import { type Command, InvalidArgumentError, Option } from 'commander';
import { untilStopped } from '../../common/lifecycle.js';
import type { CollectorMetrics } from '../../collect/metrics.js';
import { DEFAULT_FLEET_THRESHOLDS, type FleetRuleThresholds } from '../../collect/rules.js';
import { COLLECT_BUCKET, COLLECT_DURABLE, STREAM } from '../../publish/subjects.js';
import { applyConfigFile, connectionSettings, loadConfigFile, type FileConfig } from '../config.js';
import { addConnectionOptions, addDurationOption, connectionFlags, parseSeconds, positiveInt, type ConnectionFlags } from '../options.js';
import { logger } from '../../common/log.js';

const RULE_NAMES = Object.keys(DEFAULT_FLEET_THRESHOLDS).join(', ');

/** --rule NAME=VALUE (repeatable). */
function parseRule(v: string, previous: Partial<FleetRuleThresholds> = {}): Partial<FleetRuleThresholds> {
  const m = /^(\w+)=(\d+(?:\.\d+)?)$/.exec(v);
  if (!m || !(m[1]! in DEFAULT_FLEET_THRESHOLDS) || !(Number(m[2]) > 0)) throw new InvalidArgumentError(`'${v}': give NAME=NUMBER with NAME one of ${RULE_NAMES}.`);
  return { ...previous, [m[1]!]: Number(m[2]) };
}

interface CollectFlags extends ConnectionFlags {
  stream: string;
  durable: string;
  bucket: string;
  store?: string;
  instance?: string;
  replicas: number;
  from: 'all' | 'new';
  batch: number;
  ackWait: number;
  evaluateInterval: number;
  gapGrace: number;
  rule: Partial<FleetRuleThresholds>;
  metricsListen?: string | true;
  statusInterval: number;
  duration?: number;
}

export function register(program: Command): void {
  const cmd = addConnectionOptions(
    program
      .command('collect')
      .description('the fleet collector: consume every agent message once (durable consumer shared by instances), keep fleet views, fire fleet alerts, serve metrics'),
  )
    .option('--stream <name>', 'the JetStream stream the agents publish to', STREAM)
    .option('--durable <name>', 'durable consumer shared by all collector instances', COLLECT_DURABLE)
    .option('--store <where>', 'store every message once: a DuckDB file (fleet.duckdb; one collector per file) or clickhouse://HOST:8123/DATABASE (shared by instances)')
    .option('--instance <name>', "this instance's name in logs, alerts and the holes it declares (default HOSTNAME/PID)")
    .option('--bucket <name>', 'KV bucket for the fleet alert state shared by instances', COLLECT_BUCKET)
    .option('--replicas <n>', 'replicas of the streams the collector creates (3 on a cluster)', positiveInt('a replica count'), 1)
    .addOption(new Option('--from <where>', 'where a new durable consumer starts').choices(['all', 'new']).default('all'))
    .option('--batch <n>', 'messages per fetch (and per store transaction)', positiveInt('a batch size'), 1024)
    .option('--ack-wait <seconds>', 'redeliver a message not acknowledged within this', parseSeconds, 30)
    .option('--evaluate-interval <seconds>', 'evaluate the fleet rules this often', parseSeconds, 5)
    .option('--gap-grace <seconds>', 'declare a sequence hole lost (reported once) when missing this long', parseSeconds, 60)
    .option('--rule <name=value>', `fleet rule threshold (repeatable), names: ${RULE_NAMES}`, parseRule, {})
    .option('--metrics-listen [host:port]', 'serve Prometheus metrics at http://HOST:PORT/metrics, /healthz, /readyz and a landing page at / (the flag alone: 0.0.0.0:19465)')
    .option('--status-interval <seconds>', 'print a status line this often', parseSeconds, 10);
  addDurationOption(cmd).action((flags: CollectFlags, c: Command) => {
    const file = flags.config ? loadConfigFile(flags.config, logger('collect').warn) : {};
    applyConfigFile(c, 'collect', file);
    return runCollect(c.opts<CollectFlags>(), file);
  });
}

async function runCollect(o: CollectFlags, file: FileConfig): Promise<void> {
  const log = logger('collect');
  const conn = connectionSettings(connectionFlags(o), process.env, file, ['nats://127.0.0.1:4222']);
  const metricsSpec = o.metricsListen;
  const [{ Collector }, { CollectorMetrics }, { openStore }, { COLLECT_METRICS_PORT, listenAddress }, { connectNats, watchConnection }] = await Promise.all([
    import('../../collect/collector.js'),
    import('../../collect/metrics.js'),
    import('../../collect/open-store.js'),
    import('../../publish/metrics.js'),
    import('../../publish/connection.js'),
  ]);
  if (metricsSpec !== undefined) listenAddress(metricsSpec, COLLECT_METRICS_PORT); // a usage error before connecting
  const store = o.store ? await openStore(o.store) : undefined;
  if (store) log(`storing into ${store.kind} ${store.location}`);
  const c = await Collector.start({
    connection: conn,
    store,
    stream: o.stream,
    durable: o.durable,
    bucket: o.bucket,
    replicas: o.replicas,
    deliver: o.from,
    batch: o.batch,
    ackWaitS: o.ackWait,
    evaluateIntervalMs: o.evaluateInterval * 1000,
    gapGraceS: o.gapGrace,
    thresholds: o.rule,
    instance: o.instance,
    log,
  }).catch(async (err: unknown) => {
    await store?.close();
    throw err;
  });
  let metrics: CollectorMetrics | null = null;
  // /readyz asks whether NATS is reachable now: a connection of its own to the same servers
  // follows that (the collector's connection is its own business; see collectorHealth).
  let probe: Awaited<ReturnType<typeof connectNats>> | null = null;
  try {
    if (metricsSpec !== undefined) {
      probe = await connectNats(conn, { name: 'tcpdwell-collect-health', maxReconnectAttempts: -1, reconnectTimeWait: 500 });
      const link = watchConnection(probe);
      metrics = new CollectorMetrics(c, () => link.connected);
      log(`metrics at ${await metrics.listen(metricsSpec, store)}${store ? ' (and POST /sql: tcpdwell query|sql --store http://HOST:PORT)' : ''}`);
    }
  } catch (err) {
    await probe?.close();
    await c.stop();
    await store?.close();
    throw err;
  }
  log(`connected to NATS at ${conn.servers.join(',')}; Ctrl-C to stop`);
  const status = () => {
    const s = c.stats();
    const rejected = Object.values(s.rejected).reduce((a, b) => a + b, 0);
    const gaps = Object.values(c.gaps()).reduce((a, b) => a + b, 0);
    log(
      `${s.counted} counted, ${s.duplicates} duplicates, ${rejected} set aside, ${s.own} own skipped${store ? `, ${s.rowsStored} rows stored${s.storeErrors ? `, ${s.storeErrors} batches held back by the store` : ''}` : ''}; ${c.liveHosts().length} hosts, ${gaps} messages lost; ${c.firing().length} fleet alerts firing`,
    );
  };
  const timer = setInterval(status, o.statusInterval * 1000);
  await untilStopped({ durationS: o.duration });
  clearInterval(timer);
  await metrics?.close();
  await probe?.close();
  await c.stop();
  await store?.close();
  status();
}
