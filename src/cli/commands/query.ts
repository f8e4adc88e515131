/** `tcpdwell query`: the full life of each matching socket, read back from the stream (src/collect/query.ts). */
import { type Command, InvalidArgumentError } from 'commander';
import { buildTimelines, readQueryInputs, renderTimeline } from '../../collect/query.js';
import { STREAM } from '../../publish/subjects.js';
import { addConnectionOptions, addFormatOption, outputFormat, parsePort, parseSpan, parseTime, resolveConnection, type ConnectionFlags } from '../options.js';
import { logger } from '../../common/log.js';

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
  context: string;
  stream: string;
  format?: 'json' | 'text';
}

export function register(program: Command): void {
  const cmd = addConnectionOptions(
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
    const { inputs, messages, undecodable } = await readQueryInputs({ ...filter, connection: resolveConnection(o, undefined, logger('query')), stream: o.stream, contextMs: parseSpan(o.context, '--context') });
    const timelines = buildTimelines(inputs, filter);
    const format = outputFormat(o.format);
    for (const t of timelines) process.stdout.write(format === 'json' ? `${JSON.stringify(t)}\n` : `${renderTimeline(t)}\n\n`);
    logger('query')(`${timelines.length} connections from ${messages} messages${undecodable ? `, ${undecodable} undecodable (skipped)` : ''}`);
  });
}
