/**
 * `tcpdwell query`: the full life of each matching socket — from the store (`--store`, across
 * all hosts unless --host says; src/collect/query-store.ts), or read back from the stream
 * (src/collect/query.ts) where there is no store.
 */
import { type Command, InvalidArgumentError } from 'commander';
import { buildTimelines, readQueryInputs, renderTimeline, type ConnectionTimeline } from '../../collect/query.js';
import { STREAM } from '../../publish/subjects.js';
import { UsageError } from '../../common/errors.js';
import { logger } from '../../common/log.js';
import { addConnectionOptions, addFormatOption, outputFormat, parsePort, parseSpan, parseTime, positiveInt, resolveConnection, type ConnectionFlags } from '../options.js';

function parseCookie(v: string): bigint {
  if (!/^\d+$/.test(v) || BigInt(v) >= 1n << 64n) throw new InvalidArgumentError(`'${v}' is not a socket cookie: give the decimal number trace and tail print.`);
  return BigInt(v);
}

interface QueryFlags extends ConnectionFlags {
  host?: string;
  since: string;
  until?: string;
  addr?: string;
  port?: number;
  cookie?: bigint;
  state?: string;
  error?: string;
  owner?: string;
  cgroup?: bigint;
  limit: number;
  context: string;
  stream: string;
  store?: string;
  format?: 'json' | 'text';
}

export function register(program: Command): void {
  const cmd = addConnectionOptions(
    program
      .command('query')
      .description('what happened to a connection, host or port between two times: the full life of each matching socket, from the store (--store) or the JetStream stream'),
  )
    .option('--store <where>', "the collector's store: a DuckDB file or clickhouse://HOST:8123/DATABASE (without it: the stream)")
    .option('--host <name>', 'only this host')
    .option('--since <time>', 'from: ISO-8601, or how long ago (90s, 30m, 1h, 2d)', '1h')
    .option('--until <time>', 'to: ISO-8601, or how long ago (default: now)')
    .option('--addr <ip>', 'an address at either end')
    .option('--port <n>', 'a port at either end', parsePort)
    .option('--cookie <n>', 'one socket, by its cookie', parseCookie)
    .option('--state <state>', 'sockets that entered or left this state (--store)')
    .option('--error <errno>', 'sockets with this error, e.g. ECONNREFUSED (--store)')
    .option('--owner <comm|pid>', 'sockets of this process (--store)')
    .option('--cgroup <id>', "sockets of this cgroup v2 id, a container's (--store)", parseCookie)
    .option('--limit <n>', 'at most this many sockets (--store)', positiveInt('a socket count'), 1000)
    .option('--context <span>', 'also read this long before --since, to show connections that began earlier whole', '5m')
    .option('--stream <name>', 'the JetStream stream', STREAM);
  addFormatOption(cmd, 'readable timelines or JSON lines').action(async (o: QueryFlags) => {
    const now = Date.now();
    const filter = {
      host: o.host,
      sinceMs: parseTime(o.since, '--since', now),
      untilMs: o.until ? parseTime(o.until, '--until', now) : now,
      addr: o.addr,
      port: o.port,
      cookie: o.cookie,
    };
    const contextMs = parseSpan(o.context, '--context');
    const format = outputFormat(o.format);
    const print = (timelines: ConnectionTimeline[]) => {
      for (const t of timelines) process.stdout.write(format === 'json' ? `${JSON.stringify(t)}\n` : `${renderTimeline(t)}\n\n`);
    };
    if (o.store) {
      const [{ openStore }, { readStoreInputs }] = await Promise.all([import('../../collect/open-store.js'), import('../../collect/query-store.js')]);
      const store = await openStore(o.store, { readOnly: true });
      try {
        const t0 = performance.now();
        const { inputs, sockets, truncated } = await readStoreInputs(store, { ...filter, state: o.state, error: o.error, owner: o.owner, cgroupId: o.cgroup, contextMs, limit: o.limit });
        const timelines = buildTimelines(inputs, filter);
        print(timelines);
        logger('query')(
          `${timelines.length} connections from ${store.kind} ${store.location} in ${((performance.now() - t0) / 1000).toFixed(2)} s${truncated ? ` (more than --limit ${o.limit} sockets matched: narrow the filter or raise --limit)` : ''}`,
        );
        void sockets;
      } finally {
        await store.close();
      }
      return;
    }
    for (const [flag, v] of [['--state', o.state], ['--error', o.error], ['--owner', o.owner], ['--cgroup', o.cgroup]] as const) {
      if (v !== undefined) throw new UsageError(`${flag} needs --store (the stream is read by host and time only)`);
    }
    const { inputs, messages, undecodable } = await readQueryInputs({ ...filter, connection: resolveConnection(o, undefined, logger('query')), stream: o.stream, contextMs });
    const timelines = buildTimelines(inputs, filter);
    print(timelines);
    logger('query')(`${timelines.length} connections from ${messages} messages${undecodable ? `, ${undecodable} undecodable (skipped)` : ''}`);
  });
}
