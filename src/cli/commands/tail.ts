/** `tcpdwell tail`: subscribe to the fleet's subjects and print what arrives, decoded. */
import { cgroupLabel } from '../../kernel/cgroups.js';
import type { Writable } from 'node:stream';
import { type Command, Option } from 'commander';
import { UsageError } from '../../common/errors.js';
import { untilStopped } from '../../common/lifecycle.js';
import { formatDuration, formatText, isoTime, toJson } from '../../decode/index.js';
import { connectNats, type ConnectionSettings } from '../../publish/connection.js';
import { agentSubjects, KINDS } from '../../publish/subjects.js';
import { big, decodeDwell, decodeMessage, decodeSnapshot, decodeTransitions, pb } from '../../publish/wire.js';
import { addConnectionOptions, addDurationOption, addFormatOption, outputFormat, resolveConnection, type ConnectionFlags } from '../options.js';
import { logger } from '../../common/log.js';

export interface TailOptions {
  connection: ConnectionSettings;
  host?: string;
  kind?: string;
  format: 'json' | 'text';
  durationS: number | null;
  out: Writable;
  err: Writable;
}

export function register(program: Command): void {
  const cmd = addConnectionOptions(program.command('tail').description("print the fleet's messages as they arrive on NATS, decoded"))
    .option('--host <name>', 'only this host')
    .addOption(new Option('--kind <kind>', 'only this kind of message').choices([...KINDS]));
  addFormatOption(cmd, 'json lines or readable text');
  addDurationOption(cmd).action(async (o: ConnectionFlags & { host?: string; kind?: string; format?: 'json' | 'text'; duration?: number }) => {
    await runTail({
      connection: resolveConnection(o),
      host: o.host,
      kind: o.kind,
      format: outputFormat(o.format),
      durationS: o.duration ?? null,
      out: process.stdout,
      err: process.stderr,
    });
  });
}

const bigints = (_k: string, v: unknown) => (typeof v === 'bigint' ? v.toString() : v);

/** One message as output lines. Throws on a message that does not decode (the caller counts it). */
export function renderMessage(subject: string, data: Uint8Array, format: 'json' | 'text'): string[] {
  const [, , host, kind] = subject.split('.');
  if (kind === 'transitions' || kind === 'snapshot') {
    const { header, events } = kind === 'snapshot' ? decodeSnapshot(data) : decodeTransitions(data);
    const offset = big(header.bootToUnixNs as number);
    return events.map((e) =>
      format === 'json'
        ? JSON.stringify({ host, seq: Number(header.seq), ...toJson(e, isoTime(e.tsNs, offset)) })
        : `${String(host).padEnd(16)} ${formatText(e, (ns) => isoTime(ns, offset).slice(11, 26))}`,
    );
  }
  if (kind === 'dwell') {
    const { header, records, cgroups } = decodeDwell(data);
    return records.map((r) => {
      // The batch names its rows' cgroups: the container, pod or unit, resolved on the agent's host.
      const cgroup = cgroups.get(r.cgroupId) ?? null;
      return format === 'json'
        ? JSON.stringify({ host, seq: Number(header.seq), kind, ...r, cgroup }, bigints)
        : `${String(host).padEnd(16)} dwell ${(r.timewait ? `${r.state}(tw)` : r.state).padEnd(16)} ${formatDuration(r.dwellNs).padEnd(9)} ${r.precision.padEnd(11)} ` +
            `${r.saddr}:${r.sport} -> ${r.daddr}:${r.dport} ${r.ownerComm ?? '-'}/${r.ownerPid ?? '-'}${cgroup ? ` [${cgroupLabel(cgroup)}]` : ''} ${r.nextState ?? r.timewaitEnd ?? ''} ${r.error ?? ''}`.trimEnd();
    });
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
  const nc = await connectNats(opts.connection);
  const subject = agentSubjects(opts.host, opts.kind);
  const sub = nc.subscribe(subject);
  const log = logger('tail', opts.err);
  log(`listening on ${subject} (Ctrl-C to stop)`);
  let messages = 0;
  let undecodable = 0;
  const stopping = untilStopped({ durationS: opts.durationS, also: sub.closed }).then(() => sub.unsubscribe());
  for await (const m of sub) {
    messages++;
    try {
      const lines = renderMessage(m.subject, m.data, opts.format);
      if (lines.length) opts.out.write(`${lines.join('\n')}\n`);
    } catch (err) {
      undecodable++;
      log.warn(`${m.subject}: cannot decode (${(err as Error).message}); skipped`);
    }
  }
  await stopping;
  await nc.close();
  log(`${messages} messages, ${undecodable} undecodable`);
  return { messages, undecodable };
}
