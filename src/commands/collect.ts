/**
 * The central pipeline's commands: `collect`, `query`, `agents`. Only parsing and wiring; the
 * work is in src/collect/.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { addConnectionOptions, parsePort, parseSeconds, resolveConnection, type ConnectionFlags } from './options.js';
import { UsageError } from '../errors.js';
import { Collector } from '../collect/collector.js';
import { CollectorMetrics } from '../collect/metrics.js';
import { DEFAULT_FLEET_THRESHOLDS, type FleetRuleThresholds } from '../collect/rules.js';
import { parseSpan, parseTime, runQuery } from '../collect/query.js';
import { runAgents } from '../collect/agents.js';

const positiveInt = (what: string) => (v: string) => {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new InvalidArgumentError(`'${v}' is not ${what}: give a whole number of at least 1.`);
  return Number(v);
};

function parseCookie(v: string): bigint {
  if (!/^\d+$/.test(v) || BigInt(v) >= 1n << 64n) throw new InvalidArgumentError(`'${v}' is not a socket cookie: give the decimal number trace and tail print.`);
  return BigInt(v);
}

const RULE_NAMES = Object.keys(DEFAULT_FLEET_THRESHOLDS).join(', ');

/** --rule NAME=VALUE (repeatable). */
function parseRule(v: string, previous: Partial<FleetRuleThresholds> = {}): Partial<FleetRuleThresholds> {
  const m = /^(\w+)=(\d+(?:\.\d+)?)$/.exec(v);
  if (!m || !(m[1]! in DEFAULT_FLEET_THRESHOLDS) || !(Number(m[2]) > 0)) throw new InvalidArgumentError(`'${v}': give NAME=NUMBER with NAME one of ${RULE_NAMES}.`);
  return { ...previous, [m[1]!]: Number(m[2]) };
}

/** Adds `collect`, `query` and `agents` to the program. */
export function registerCollectCommands(program: Command): void {
  addConnectionOptions(
    program
      .command('collect')
      .description('the fleet collector: consume every agent message once (durable consumer shared by instances), keep fleet views, fire fleet alerts, serve metrics'),
  )
    .option('--stream <name>', 'the JetStream stream the agents publish to', 'TCPDWELL')
    .option('--durable <name>', 'durable consumer shared by all collector instances', 'tcpdwell-collect')
    .option('--bucket <name>', 'KV bucket for the state shared by instances', 'tcpdwell-collect')
    .option('--replicas <n>', 'replicas of the streams the collector creates (3 on a cluster)', positiveInt('a replica count'), 1)
    .addOption(new Option('--from <where>', 'where a new durable consumer starts').choices(['all', 'new']).default('all'))
    .option('--batch <n>', 'messages per fetch', positiveInt('a batch size'), 256)
    .option('--ack-wait <seconds>', 'redeliver a message not acknowledged within this', parseSeconds, 30)
    .option('--evaluate-interval <seconds>', 'evaluate the fleet rules this often', parseSeconds, 5)
    .option('--gap-grace <seconds>', 'report a sequence hole as a gap once missing this long', parseSeconds, 60)
    .option('--rule <name=value>', `fleet rule threshold (repeatable), names: ${RULE_NAMES}`, parseRule, {})
    .option('--metrics-listen <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics')
    .option('--status-interval <seconds>', 'print a status line this often', parseSeconds, 10)
    .option('--duration <seconds>', 'stop after this many seconds', parseSeconds)
    .action(
      async (
        o: ConnectionFlags & {
          stream: string;
          durable: string;
          bucket: string;
          replicas: number;
          from: 'all' | 'new';
          batch: number;
          ackWait: number;
          evaluateInterval: number;
          gapGrace: number;
          rule: Partial<FleetRuleThresholds>;
          metricsListen?: string;
          statusInterval: number;
          duration?: number;
        },
      ) => {
        const log = (l: string) => process.stderr.write(`tcpdwell collect: ${l}\n`);
        const conn = resolveConnection(o);
        const metricsSpec = o.metricsListen;
        if (metricsSpec && !/^(.*):(\d+)$/.test(metricsSpec)) throw new UsageError(`--metrics-listen ${metricsSpec}: give HOST:PORT, e.g. 127.0.0.1:9465`);
        const c = await Collector.start({
          connection: conn,
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
          log,
        });
        let metrics: CollectorMetrics | null = null;
        try {
          if (metricsSpec) {
            metrics = new CollectorMetrics(c);
            log(`metrics at ${await metrics.listen(metricsSpec)}`);
          }
        } catch (err) {
          await c.stop();
          throw err;
        }
        log(`connected to NATS at ${conn.servers.join(',')}; Ctrl-C to stop`);
        const status = () => {
          const s = c.stats();
          const rejected = Object.values(s.rejected).reduce((a, b) => a + b, 0);
          const gaps = Object.values(c.gaps()).reduce((a, b) => a + b, 0);
          log(`${s.counted} counted, ${s.duplicates} duplicates, ${rejected} set aside, ${s.own} own skipped; ${c.liveHosts().length} hosts, ${gaps} missing; ${c.firing().length} fleet alerts firing`);
        };
        const timer = setInterval(status, o.statusInterval * 1000);
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
          if (o.duration) setTimeout(resolve, o.duration * 1000).unref();
        });
        clearInterval(timer);
        await metrics?.close();
        await c.stop();
        status();
      },
    );

  addConnectionOptions(
    program
      .command('query')
      .description('what happened to a connection, host or port between two times: the full life of each matching socket, from the JetStream stream'),
  )
    .option('--host <name>', 'only this host')
    .option('--since <time>', 'from: ISO-8601, or how long ago (90s, 30m, 1h, 2d)', '1h')
    .option('--until <time>', 'to: ISO-8601, or how long ago (default: now)')
    .option('--addr <ip>', 'an address at either end')
    .option('--port <n>', 'a port at either end', parsePort)
    .option('--cookie <n>', 'one socket, by its cookie', parseCookie)
    .option('--context <span>', 'also read this long before --since, to show connections that began earlier whole', '5m')
    .option('--stream <name>', 'the JetStream stream', 'TCPDWELL')
    .addOption(new Option('--format <format>', 'readable timelines or JSON lines (default: text on a terminal)').choices(['json', 'text']))
    .action(
      async (
        o: ConnectionFlags & { host?: string; since: string; until?: string; addr?: string; port?: number; cookie?: bigint; context: string; stream: string; format?: 'json' | 'text' },
      ) => {
        const now = Date.now();
        const r = await runQuery({
          connection: resolveConnection(o),
          stream: o.stream,
          host: o.host,
          sinceMs: parseTime(o.since, '--since', now),
          untilMs: o.until ? parseTime(o.until, '--until', now) : now,
          addr: o.addr,
          port: o.port,
          cookie: o.cookie,
          contextMs: parseSpan(o.context, '--context'),
          format: o.format ?? (process.stdout.isTTY ? 'text' : 'json'),
          out: process.stdout,
          err: process.stderr,
        });
        void r;
      },
    );

  addConnectionOptions(program.command('agents').description('list the live agents (NATS micro-service discovery) with their status'))
    .option('--timeout <seconds>', 'how long to wait for answers', parseSeconds, 2)
    .addOption(new Option('--format <format>', 'a table or JSON lines (default: text on a terminal)').choices(['json', 'text']))
    .action(async (o: ConnectionFlags & { timeout: number; format?: 'json' | 'text' }) => {
      await runAgents({
        connection: resolveConnection(o),
        timeoutMs: o.timeout * 1000,
        format: o.format ?? (process.stdout.isTTY ? 'text' : 'json'),
        out: process.stdout,
        err: process.stderr,
      });
    });
}
