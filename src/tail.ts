/** `tcpdwell tail`: subscribe to the fleet's subjects and print what arrives, decoded. */
import type { Writable } from 'node:stream';
import { connect } from '@nats-io/transport-node';
import { toJson } from './decode.js';
import { formatText } from './format.js';
import { isoTime } from './clock.js';
import { natsConnectOptions, type ConnectionSettings } from './publish/nats-options.js';
import { big, decodeDwell, decodeMessage, decodeTransitions, KINDS, pb } from './publish/wire.js';
import { formatDuration } from './format.js';
import { EnvironmentError, UsageError } from './errors.js';

export interface TailOptions {
  connection: ConnectionSettings;
  host?: string;
  kind?: string;
  format: 'json' | 'text';
  durationS: number | null;
  out: Writable;
  err: Writable;
}

const bigints = (_k: string, v: unknown) => (typeof v === 'bigint' ? v.toString() : v);

/** One message as output lines. Throws on a message that does not decode (the caller counts it). */
export function renderMessage(subject: string, data: Uint8Array, format: 'json' | 'text'): string[] {
  const [, , host, kind] = subject.split('.');
  if (kind === 'transitions' || kind === 'snapshot') {
    const bytes = kind === 'snapshot' ? pb.TransitionBatch.encode(decodeMessage(pb.Snapshot, 'Snapshot', data).sockets ?? {}).finish() : data;
    const { header, events } = decodeTransitions(bytes);
    const offset = big(header.bootToUnixNs as number);
    return events.map((e) =>
      format === 'json'
        ? JSON.stringify({ host, seq: Number(header.seq), ...toJson(e, isoTime(e.tsNs, offset)) })
        : `${String(host).padEnd(16)} ${formatText(e, (ns) => isoTime(ns, offset).slice(11, 26))}`,
    );
  }
  if (kind === 'dwell') {
    const { header, records } = decodeDwell(data);
    return records.map((r) =>
      format === 'json'
        ? JSON.stringify({ host, seq: Number(header.seq), kind, ...r }, bigints)
        : `${String(host).padEnd(16)} dwell ${(r.timewait ? `${r.state}(tw)` : r.state).padEnd(16)} ${formatDuration(r.dwellNs).padEnd(9)} ${r.precision.padEnd(11)} ` +
          `${r.saddr}:${r.sport} -> ${r.daddr}:${r.dport} ${r.ownerComm ?? '-'}/${r.ownerPid ?? '-'} ${r.nextState ?? r.timewaitEnd ?? ''} ${r.error ?? ''}`.trimEnd(),
    );
  }
  const type = kind === 'summary' ? pb.Summary : kind === 'alerts' ? pb.Alert : null;
  if (!type) return [JSON.stringify({ host, kind, bytes: data.length, note: 'unknown kind' })];
  const obj = type.toObject(decodeMessage(type as { decode(b: Uint8Array): unknown }, kind === 'summary' ? 'Summary' : 'Alert', data) as never, { longs: String, bytes: String, defaults: false });
  return [format === 'json' ? JSON.stringify({ host, kind, ...obj }, bigints) : `${String(host).padEnd(16)} ${kind} ${JSON.stringify(obj, bigints)}`];
}

export async function runTail(opts: TailOptions): Promise<{ messages: number; undecodable: number }> {
  if (opts.kind && !(KINDS as readonly string[]).includes(opts.kind)) {
    throw new UsageError(`--kind ${opts.kind}: give one of ${KINDS.join(', ')}`);
  }
  const nc = await connect(natsConnectOptions(opts.connection)).catch((err: Error) => {
    throw new EnvironmentError(`cannot reach NATS at ${opts.connection.servers.join(',')}: ${err.message}`, { cause: err });
  });
  const subject = `tcpdwell.v1.${opts.host ?? '*'}.${opts.kind ?? '*'}`;
  const sub = nc.subscribe(subject);
  opts.err.write(`tcpdwell tail: listening on ${subject} (Ctrl-C to stop)\n`);
  let messages = 0;
  let undecodable = 0;
  const stop = () => sub.unsubscribe();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const timer = opts.durationS !== null ? setTimeout(stop, opts.durationS * 1000) : undefined;
  for await (const m of sub) {
    messages++;
    try {
      const lines = renderMessage(m.subject, m.data, opts.format);
      if (lines.length) opts.out.write(`${lines.join('\n')}\n`);
    } catch (err) {
      undecodable++;
      opts.err.write(`tcpdwell tail: ${m.subject}: cannot decode (${(err as Error).message}); skipped\n`);
    }
  }
  clearTimeout(timer);
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  await nc.close();
  opts.err.write(`tcpdwell tail: ${messages} messages, ${undecodable} undecodable\n`);
  return { messages, undecodable };
}
