/**
 * What happened to a connection, host or port between two times (`tcpdwell query`), from the
 * JetStream stream. Reads with an ordered consumer filtered by host subject and start time,
 * decodes, groups events by socket (host, boot id, cookie: one socket's whole story, its
 * timewait included, shares the cookie) into each matching socket's life.
 *
 * `buildTimelines` and `renderTimeline` are pure; `readQueryInputs` does the reading.
 */
import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import { formatDuration, formatVitals, type ResetBy, type TcpEvent, type Vitals } from '../decode/index.js';
import { EnvironmentError, UsageError } from '../common/errors.js';
import { connectNats, type ConnectionSettings } from '../publish/connection.js';
import { hostSubjects, HOST_TOKEN, parseAgentSubject, STREAM } from '../publish/subjects.js';
import { big, cgroupsById } from '../publish/wire.js';
import { cgroupLabel, type CgroupInfo } from '../kernel/cgroups.js';
import type { DwellRecord } from '../track/index.js';
import { classify } from './messages.js';

/** What `query` selects. Times are Unix ms. */
export interface QueryFilter {
  host?: string;
  sinceMs: number;
  untilMs: number;
  /** an address at either end */
  addr?: string;
  /** a port at either end */
  port?: number;
  cookie?: bigint;
}

/** Events and dwell records of one agent run, with its clock offset. */
export interface QueryInput {
  host: string;
  bootId: string;
  bootToUnixNs: bigint;
  events: readonly TcpEvent[];
  records: readonly DwellRecord[];
  /** what the run's cgroup ids name (dictionaries of its dwell batches and summaries) */
  cgroups?: ReadonlyMap<bigint, CgroupInfo>;
}

export interface TimelineStep {
  time: string;
  tsNs: string;
  type: TcpEvent['type'];
  /** "SYN_SENT->ESTABLISHED", "TIME_WAIT(TIME_WAIT) start", "TIME_WAIT(FIN_WAIT2) killed", "LISTEN (existing)" */
  what: string;
  oldState: string | null;
  newState: string;
  substate: string | null;
  /** time spent in the state left (transition), or in the timewait (its end); null when unknown */
  dwellNs: string | null;
  /** how far that dwell can be trusted, from the agent's dwell record when there is one */
  precision: string | null;
  /** timewait start: when it is due */
  dueInNs: string | null;
  reason: string | null;
  error: string | null;
  local: string;
  remote: string;
  pid: number;
  comm: string;
  ownerPid: number | null;
  ownerComm: string | null;
  /** the connection's close (a transition to CLOSE): its vital signs then; else null */
  vitals: Vitals | null;
  /** on that close: the RST it received or sent before it; else null */
  resetBy: ResetBy | null;
}

/** One socket's life. */
export interface ConnectionTimeline {
  host: string;
  bootId: string;
  cookie: string;
  netns: number;
  family: string;
  local: string;
  remote: string;
  ownerPid: number | null;
  ownerComm: string | null;
  /** the socket's cgroup and the container, pod or unit it names (resolved on the agent's host), when known */
  cgroup: { id: string; path: string; runtime: string; containerId: string; podUid: string; unit: string } | null;
  first: string;
  last: string;
  /** every transition, timewait start and end (and snapshot row), in time order */
  steps: TimelineStep[];
  /** the timewait phases the agent measured (TIME_WAIT, or FIN_WAIT2 held by a timewait sock) */
  timewaitPhases: { state: string; dwellNs: string; precision: string; end: string | null }[];
}

const ep = (addr: string, port: number, family: string) => (family === 'inet6' ? `[${addr}]:${port}` : `${addr}:${port}`);

function isoNs(unixNs: bigint): string {
  const iso = new Date(Number(unixNs / 1_000_000n)).toISOString();
  return iso.replace('Z', `${String(Number((unixNs / 1000n) % 1000n)).padStart(3, '0')}Z`);
}

/** The lives of the sockets that match the filter. */
export function buildTimelines(inputs: readonly QueryInput[], f: QueryFilter): ConnectionTimeline[] {
  interface Group {
    host: string;
    bootId: string;
    offset: bigint;
    events: TcpEvent[];
    records: DwellRecord[];
  }
  const groups = new Map<string, Group>();
  const cgroupNames = new Map<string, Map<bigint, CgroupInfo>>();
  for (const i of inputs) {
    const run = `${i.host}\t${i.bootId}`;
    for (const [id, c] of i.cgroups ?? []) {
      let m = cgroupNames.get(run);
      if (!m) cgroupNames.set(run, (m = new Map()));
      m.set(id, c);
    }
  }
  const group = (i: QueryInput, cookie: bigint) => {
    const k = `${i.host}\t${i.bootId}\t${cookie}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { host: i.host, bootId: i.bootId, offset: i.bootToUnixNs, events: [], records: [] }));
    return g;
  };
  for (const i of inputs) {
    if (f.host && i.host !== f.host) continue;
    for (const e of i.events) if (e.cookie !== 0n) group(i, e.cookie).events.push(e);
    for (const r of i.records) if (r.cookie !== 0n) group(i, r.cookie).records.push(r);
  }
  const sinceNs = BigInt(f.sinceMs) * 1_000_000n;
  const untilNs = BigInt(f.untilMs) * 1_000_000n;
  const out: ConnectionTimeline[] = [];
  for (const [k, g] of groups) {
    if (g.events.length === 0) continue;
    const cookie = BigInt(k.split('\t')[2]!);
    if (f.cookie !== undefined && cookie !== f.cookie) continue;
    // A re-sent batch can hold an event twice: one step per (time, kind, states).
    const seen = new Set<string>();
    const events = g.events
      .filter((e) => {
        const key = `${e.tsNs}/${e.type}/${e.oldState}/${e.newState}/${e.substate}`;
        return seen.has(key) ? false : (seen.add(key), true);
      })
      .sort((a, b) => (a.tsNs < b.tsNs ? -1 : a.tsNs > b.tsNs ? 1 : 0));
    if (f.addr && !events.some((e) => e.saddr === f.addr || e.daddr === f.addr)) continue;
    if (f.port !== undefined && !events.some((e) => e.sport === f.port || e.dport === f.port)) continue;
    if (!events.some((e) => e.tsNs + g.offset >= sinceNs && e.tsNs + g.offset <= untilNs)) continue;
    const named = [...events].reverse().find((e) => e.sport !== 0) ?? events[events.length - 1]!;
    const owner = [...events].reverse().find((e) => e.ownerPid !== null);
    const cgroupId = events.find((e) => e.cgroupId !== 0n)?.cgroupId ?? 0n;
    const cg = cgroupNames.get(`${g.host}\t${g.bootId}`)?.get(cgroupId);
    const precisionOf = (e: TcpEvent) =>
      g.records.find((r) => !r.timewait && r.leftNs === e.tsNs && r.state === (e.type === 'transition' ? e.oldState : null))?.precision ?? null;
    out.push({
      host: g.host,
      bootId: g.bootId,
      cookie: cookie.toString(),
      netns: named.netns,
      family: named.family,
      local: ep(named.saddr, named.sport, named.family),
      remote: ep(named.daddr, named.dport, named.family),
      ownerPid: owner?.ownerPid ?? null,
      ownerComm: owner?.ownerComm ?? null,
      cgroup: cg ? { ...cg, id: cg.id.toString() } : null,
      first: isoNs(events[0]!.tsNs + g.offset),
      last: isoNs(events[events.length - 1]!.tsNs + g.offset),
      steps: events.map((e) => ({
        time: isoNs(e.tsNs + g.offset),
        tsNs: e.tsNs.toString(),
        type: e.type,
        what:
          e.type === 'transition'
            ? `${e.oldState}->${e.newState}`
            : e.type === 'timewait_start'
              ? e.flip
                ? 'TIME_WAIT(FIN_WAIT2->TIME_WAIT) flip'
                : `TIME_WAIT(${e.substate}) start`
              : e.type === 'timewait_end'
                ? `TIME_WAIT(${e.substate}) ${e.reason ?? 'end'}`
                : e.type === 'reset'
                  ? `RST ${e.reason ?? ''} in ${e.newState}`
                  : e.type === 'accept'
                    ? `accepted by ${e.ownerComm}/${e.ownerPid}`
                    : `${e.substate ? `${e.newState}(${e.substate})` : e.newState} (existing)`,
        oldState: e.oldState,
        newState: e.newState,
        substate: e.substate,
        dwellNs: e.dwellNs === null ? null : e.dwellNs.toString(),
        precision: e.type === 'transition' ? precisionOf(e) : null,
        dueInNs: e.type === 'timewait_start' && e.expiresNs !== null ? (e.expiresNs - e.tsNs).toString() : null,
        reason: e.reason,
        error: e.error,
        local: ep(e.saddr, e.sport, e.family),
        remote: ep(e.daddr, e.dport, e.family),
        pid: e.pid,
        comm: e.comm,
        ownerPid: e.ownerPid,
        ownerComm: e.ownerComm,
        vitals: e.vitals,
        resetBy: e.resetBy,
      })),
      timewaitPhases: g.records
        .filter((r) => r.timewait)
        .sort((a, b) => (a.leftNs < b.leftNs ? -1 : 1))
        .map((r) => ({ state: r.state, dwellNs: r.dwellNs.toString(), precision: r.precision, end: r.timewaitEnd })),
    });
  }
  return out.sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0));
}

/** A timeline as readable text: a header line, then one line per step. */
export function renderTimeline(t: ConnectionTimeline): string {
  const owner = t.ownerPid !== null ? `${t.ownerComm}/${t.ownerPid}` : 'owner unknown';
  const container = t.cgroup ? `  ${t.cgroup.containerId ? `${t.cgroup.runtime || 'container'} ${cgroupLabel(t.cgroup)}${t.cgroup.podUid ? ` pod ${t.cgroup.podUid}` : ''}` : cgroupLabel(t.cgroup)}` : '';
  const lines = [`${t.host}  socket ${t.cookie}  ${t.local} -> ${t.remote}  ${owner}${container}  netns ${t.netns}  (${t.first} .. ${t.last})`];
  for (const s of t.steps) {
    const dwell =
      s.type === 'timewait_start'
        ? s.dueInNs !== null
          ? `due in ${formatDuration(BigInt(s.dueInNs))}`
          : ''
        : s.dwellNs !== null
          ? `${s.type === 'timewait_end' ? 'lasted' : 'after'} ${formatDuration(BigInt(s.dwellNs))}${s.precision && s.precision !== 'exact' ? ` (${s.precision})` : ''}`
          : s.type === 'transition'
            ? 'dwell unknown'
            : '';
    const who = s.ownerPid !== null && (s.ownerPid !== t.ownerPid || s.ownerComm !== t.ownerComm) ? `  owner ${s.ownerComm}/${s.ownerPid}` : '';
    const vitals = s.vitals ? `  ${formatVitals(s.vitals, s.resetBy)}` : '';
    lines.push(`  ${s.time}  ${s.what.padEnd(28)} ${dwell.padEnd(24)} ${s.local} -> ${s.remote}${s.error ? `  ${s.error}` : ''}${vitals}${who}`.trimEnd());
  }
  for (const p of t.timewaitPhases) {
    lines.push(`  timewait phase ${p.state}: ${formatDuration(BigInt(p.dwellNs))} (${p.precision})${p.end ? `, ${p.end}` : ''}`);
  }
  return lines.join('\n');
}

export interface StreamQuery extends QueryFilter {
  connection: ConnectionSettings;
  stream?: string;
  /** read this much before `since` so connections that began earlier show whole (ms) */
  contextMs: number;
}

/** Reads the stream for the window (plus context): the agent runs' events and dwell records. */
export async function readQueryInputs(o: StreamQuery): Promise<{ inputs: QueryInput[]; messages: number; undecodable: number }> {
  if (o.sinceMs > o.untilMs) throw new UsageError('--since is after --until');
  if (o.host && !HOST_TOKEN.test(o.host)) throw new UsageError(`--host ${o.host}: a host id has only letters, digits, _ and - (dots become _)`);
  const nc = await connectNats(o.connection);
  const inputs: QueryInput[] = [];
  let messages = 0;
  let undecodable = 0;
  try {
    const js = jetstream(nc);
    const stream = o.stream ?? STREAM;
    const c = await js.consumers
      .get(stream, {
        filter_subjects: hostSubjects(o.host),
        deliver_policy: DeliverPolicy.StartTime,
        opt_start_time: new Date(o.sinceMs - o.contextMs).toISOString(),
      })
      .catch((err: Error) => {
        throw new EnvironmentError(`cannot read the JetStream stream ${stream}: ${err.message}`, { cause: err });
      });
    // Messages are stored when they arrive; an agent's spool can deliver late, so read a while past --until.
    const stopNs = BigInt(o.untilMs + Math.max(o.contextMs, 60_000)) * 1_000_000n;
    let done = false;
    while (!done) {
      const batch = await c.fetch({ max_messages: 1000, expires: 1000 });
      let n = 0;
      for await (const m of batch) {
        n++;
        if (BigInt(m.info.timestampNanos) > stopNs) done = true;
        const kind = parseAgentSubject(m.subject)?.kind;
        if (kind !== 'transitions' && kind !== 'snapshot' && kind !== 'dwell' && kind !== 'summary') continue;
        messages++;
        const r = classify(m.subject, m.data);
        if (!r.ok) {
          if (!r.own) undecodable++;
          continue;
        }
        const msg = r.message;
        inputs.push({
          host: msg.id.host,
          bootId: msg.id.bootId,
          bootToUnixNs: big(msg.header.bootToUnixNs as number),
          events: (msg.kind === 'transitions' || msg.kind === 'snapshot' ? msg.events : null) ?? [],
          records: (msg.kind === 'dwell' ? msg.records : null) ?? [],
          cgroups: msg.kind === 'dwell' ? (msg.cgroups ?? undefined) : msg.kind === 'summary' ? cgroupsById(msg.summary.cgroups) : undefined,
        });
        if (m.info.pending === 0) done = true;
      }
      if (n === 0) done = true;
    }
  } finally {
    await nc.close();
  }
  return { inputs, messages, undecodable };
}
