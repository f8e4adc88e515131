/**
 * `tcpdwell query --store`: the sockets that match, across all hosts unless --host says, read
 * from the store in two steps — which sockets (host, boot id, cookie) had an event matching the
 * filter in the window, then every event and dwell record of those sockets (their whole story,
 * with the context before the window) — and handed to the same `buildTimelines` as the stream
 * path, so the output is the same. SQL common to DuckDB and ClickHouse 18.16.
 */
import { UsageError } from '../common/errors.js';
import { stateValue, type ResetBy, type SocketIdentity, type TcpEvent, type Vitals } from '../decode/index.js';
import type { CgroupInfo } from '../kernel/cgroups.js';
import type { DwellPrecision, DwellRecord } from '../track/index.js';
import type { QueryFilter, QueryInput } from './query.js';
import type { Store } from './store.js';

/** What `query --store` selects beyond the stream query's filter. */
export interface StoreFilter extends QueryFilter {
  /** a state left or entered (kernel name) */
  state?: string;
  /** an errno name, e.g. ECONNREFUSED */
  error?: string;
  /** the owning process: a name, or a pid */
  owner?: string;
  /** the socket's cgroup v2 id (its container) */
  cgroupId?: bigint;
  /** read this much before `since` so connections that began earlier show whole (ms) */
  contextMs: number;
  /** at most this many sockets */
  limit: number;
}

const TOKEN = /^[A-Za-z0-9_.:-]+$/;
const str = (v: string, flag: string) => {
  if (!TOKEN.test(v)) throw new UsageError(`${flag} ${v}: letters, digits and . : _ - only`);
  return `'${v}'`;
};
const ns = (ms: number) => BigInt(Math.floor(ms)) * 1_000_000n;

/** The WHERE clause that picks the events matching the filter in the window. */
export function matchWhere(f: StoreFilter): string {
  const w = [`ts_ns >= ${ns(f.sinceMs)}`, `ts_ns <= ${ns(f.untilMs)}`, 'cookie != 0'];
  if (f.host) w.push(`host = ${str(f.host, '--host')}`);
  if (f.addr) w.push(`(saddr = ${str(f.addr, '--addr')} OR daddr = ${str(f.addr, '--addr')})`);
  if (f.port !== undefined) w.push(`(sport = ${f.port} OR dport = ${f.port})`);
  if (f.cookie !== undefined) w.push(`cookie = ${f.cookie}`);
  if (f.state) {
    const s = f.state.toUpperCase().replace(/-/g, '_');
    if (!(stateValue(s) > 0)) throw new UsageError(`--state ${f.state}: give a TCP state, e.g. SYN_SENT, CLOSE_WAIT, TIME_WAIT`);
    w.push(`(old_state = '${s}' OR new_state = '${s}' OR substate = '${s}')`);
  }
  if (f.error) w.push(`error = ${str(f.error.toUpperCase(), '--error')}`);
  if (f.owner) w.push(/^\d+$/.test(f.owner) ? `owner_pid = ${f.owner}` : `owner_comm = ${str(f.owner, '--owner')}`);
  if (f.cgroupId !== undefined) w.push(`cgroup_id = ${f.cgroupId}`);
  return w.join(' AND ');
}

const n = (v: unknown) => Number(v);
const s = (v: unknown) => (v === null || v === undefined ? null : String(v));
/** The socket columns both tables share (cookie … owner_comm, in that order) as a SocketIdentity. */
const SOCKET = 'cookie, netns, cgroup_id, family, saddr, sport, daddr, dport, owner_pid, owner_comm';
const socketOf = ([cookie, netns, cg, family, saddr, sport, daddr, dport, opid, ocomm]: unknown[]): SocketIdentity => ({
  cookie: BigInt(cookie as bigint),
  netns: n(netns),
  cgroupId: BigInt(cg as bigint),
  family: family as SocketIdentity['family'],
  saddr: String(saddr),
  sport: n(sport),
  daddr: String(daddr),
  dport: n(dport),
  ownerPid: opid === null ? null : n(opid),
  ownerComm: s(ocomm),
});
/** The vitals columns (schema.ts), selected in this order. */
const VITALS = 'srtt_us, total_retrans, bytes_acked, bytes_received, reset_by';
const vitalsOf = ([srtt, retrans, acked, received, resetBy]: unknown[]): { vitals: Vitals | null; resetBy: ResetBy | null } =>
  srtt === null || srtt === undefined
    ? { vitals: null, resetBy: null }
    : { vitals: { srttUs: n(srtt), totalRetrans: n(retrans), bytesAcked: n(acked), bytesReceived: n(received) }, resetBy: s(resetBy) as ResetBy | null };
const b = (v: unknown) => (v === null || v === undefined ? null : BigInt(v as string | number | bigint));

/** Reads the matching sockets' stories; `truncated` when more sockets matched than the limit. */
export async function readStoreInputs(store: Store, f: StoreFilter): Promise<{ inputs: QueryInput[]; sockets: number; truncated: boolean }> {
  if (f.sinceMs > f.untilMs) throw new UsageError('--since is after --until');
  const sockets = await store.sql(`SELECT DISTINCT host, boot_id, cookie FROM events WHERE ${matchWhere(f)} LIMIT ${f.limit + 1}`);
  const truncated = sockets.rows.length > f.limit;
  const chosen = sockets.rows.slice(0, f.limit);
  if (chosen.length === 0) return { inputs: [], sockets: 0, truncated };
  // Their whole story: from the context before the window to a while after it (a timewait
  // ends up to a minute after its socket closed).
  const around = `ts_ns >= ${ns(f.sinceMs - f.contextMs)} AND ts_ns <= ${ns(f.untilMs + Math.max(f.contextMs, 120_000))}`;
  const bySocket = chosen.map(([h, bo, c]) => `(host = '${h}' AND boot_id = '${bo}' AND cookie = ${c})`).join(' OR ');
  const [events, dwell, offsets] = await Promise.all([
    store.sql(
      `SELECT host, boot_id, epoch, ts_ns, type, ${SOCKET}, old_state, new_state, substate, dwell_ns, expires_ns, reason, error, pid, comm, flags, ${VITALS} FROM events WHERE ${around} AND (${bySocket})`,
    ),
    store.sql(
      `SELECT host, boot_id, epoch, left_ns, state, timewait, dwell_ns, precision, next_state, timewait_end, error, ${SOCKET}, ${VITALS} FROM dwell WHERE ${around.replace(/ts_ns/g, 'left_ns')} AND (${bySocket})`,
    ),
    store.sql(
      `SELECT host, boot_id, epoch, min(boot_to_unix_ns) FROM messages WHERE ${[...new Set(chosen.map(([h, bo]) => `(host = '${h}' AND boot_id = '${bo}')`))].join(' OR ')} GROUP BY host, boot_id, epoch`,
    ),
  ]);
  const offset = new Map<string, bigint>();
  for (const [h, bo, e, o] of offsets.rows) offset.set(`${h}\t${bo}\t${e}`, BigInt(o as bigint));
  const inputs = new Map<string, QueryInput & { events: TcpEvent[]; records: DwellRecord[] }>();
  const input = (h: unknown, bo: unknown, e: unknown) => {
    const k = `${h}\t${bo}\t${e}`;
    let i = inputs.get(k);
    if (!i) inputs.set(k, (i = { host: String(h), bootId: String(bo), bootToUnixNs: offset.get(k) ?? 0n, events: [], records: [] }));
    return i;
  };
  for (const r of events.rows) {
    const [h, bo, e, ts, type] = r;
    const [old, nw, sub, dwellNs, exp, reason, error, pid, comm, flags] = r.slice(15, 25);
    const i = input(h, bo, e);
    const tsNs = BigInt(ts as bigint) - i.bootToUnixNs;
    const fl = n(flags);
    i.events.push({
      type: type as TcpEvent['type'],
      tsNs,
      ...socketOf(r.slice(5, 15)),
      oldState: s(old),
      newState: String(nw),
      substate: s(sub),
      dwellNs: b(dwellNs),
      enteredNs: dwellNs === null ? null : tsNs - BigInt(dwellNs as bigint),
      expiresNs: exp === null ? null : BigInt(exp as bigint) - i.bootToUnixNs,
      reason: s(reason) as TcpEvent['reason'],
      error: s(error),
      pid: n(pid),
      comm: String(comm),
      actorIsOwner: (fl & 1) !== 0,
      child: (fl & 2) !== 0,
      gap: (fl & 4) !== 0,
      flip: (fl & 8) !== 0,
      ...vitalsOf(r.slice(25)),
    });
  }
  for (const r of dwell.rows) {
    const [h, bo, e, left, state, tw, dwellNs, precision, next, twEnd, error] = r;
    const i = input(h, bo, e);
    i.records.push({
      state: String(state),
      timewait: tw === true || tw === 1,
      dwellNs: BigInt(dwellNs as bigint),
      enteredNs: null,
      leftNs: BigInt(left as bigint) - i.bootToUnixNs,
      precision: String(precision) as DwellPrecision,
      nextState: s(next),
      timewaitEnd: s(twEnd) as DwellRecord['timewaitEnd'],
      error: s(error),
      ...socketOf(r.slice(11, 21)),
      ...vitalsOf(r.slice(21)),
    });
  }
  // What their cgroups name (the agents' dictionaries, stored in `cgroups`), as the stream path
  // reads them from the dwell batches and summaries.
  const ids = new Map<string, Set<bigint>>();
  for (const i of inputs.values()) {
    for (const x of [...i.events, ...i.records]) {
      if (x.cgroupId === 0n) continue;
      const k = `${i.host}\t${i.bootId}`;
      if (!ids.has(k)) ids.set(k, new Set());
      ids.get(k)!.add(x.cgroupId);
    }
  }
  if (ids.size > 0) {
    const where = [...ids].map(([k, set]) => {
      const [h, bo] = k.split('\t');
      return `(host = '${h}' AND boot_id = '${bo}' AND cgroup_id IN (${[...set].join(', ')}))`;
    });
    const names = await store.sql(`SELECT DISTINCT host, boot_id, cgroup_id, path, runtime, container_id, pod_uid, unit FROM cgroups WHERE ${where.join(' OR ')}`);
    const byRun = new Map<string, Map<bigint, CgroupInfo>>();
    for (const [h, bo, id, path, runtime, containerId, podUid, unit] of names.rows) {
      const k = `${h}\t${bo}`;
      if (!byRun.has(k)) byRun.set(k, new Map());
      const cid = BigInt(id as bigint);
      byRun.get(k)!.set(cid, { id: cid, path: String(path), runtime: String(runtime), containerId: String(containerId), podUid: String(podUid), unit: String(unit) });
    }
    for (const i of inputs.values()) i.cgroups = byRun.get(`${i.host}\t${i.bootId}`);
  }
  return { inputs: [...inputs.values()], sockets: chosen.length, truncated };
}
