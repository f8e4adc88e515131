/**
 * TcpEvents ⇄ protobuf (proto/tcpdwell/v1/tcpdwell.proto), through the static code protobufjs
 * generates at build time. Batches are columnar; times are a base plus deltas.
 */
import Long from 'long';
import { tcpdwell } from './pb/tcpdwell.js';
import { AF_INET, AF_INET6, errnoName, formatAddress, stateName, stateValue, type ResetBy, type TcpEvent, type Vitals } from '../decode/index.js';
import type { CgroupInfo } from '../kernel/cgroups.js';
import type { Alert, DwellRecord, EncodedHistogram, LiveTableSnapshot, StuckSocket } from '../track/index.js';

export const pb = tcpdwell.v1;
export type Header = tcpdwell.v1.Header.$Properties;
export type Drops = tcpdwell.v1.Drops.$Properties;

export { KINDS, type MessageKind } from './subjects.js';

const KIND_VALUE = { transition: 1, timewait_start: 2, timewait_end: 3, snapshot: 4, reset: 5, accept: 6 } as const;
const KIND_NAME = ['unspecified', 'transition', 'timewait_start', 'timewait_end', 'snapshot', 'reset', 'accept'] as const;
const ERRNO_VALUE = new Map<string, number>();

export function errnoValue(name: string | null): number {
  if (name === null) return 0;
  let v = ERRNO_VALUE.get(name);
  if (v === undefined) {
    for (let i = 1; i < 200; i++) if (errnoName(i) === name) ERRNO_VALUE.set(name, (v = i));
  }
  return v ?? 0;
}

/** A uint64 for protobufjs: a plain number while exact, a Long past 2^53. */
export function u64(v: bigint): number | Long {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : Long.fromBigInt(v, true);
}

/** protobufjs hands back 64-bit values as Long (or number): as BigInt. */
export function big(v: number | Long | null | undefined): bigint {
  if (v === null || v === undefined) return 0n;
  return typeof v === 'number' ? BigInt(v) : v.toBigInt();
}

export function addrBytes(text: string, family: 'inet' | 'inet6'): Uint8Array {
  if (family === 'inet') return Uint8Array.from(text.split('.').map(Number));
  // IPv6 text from decode.ts: expand "::" and an embedded IPv4 tail.
  let t = text;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(t);
  let tail: number[] = [];
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    tail = [(b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!];
    t = t.slice(0, -v4[1]!.length).replace(/:$/, '');
    if (t.endsWith(':')) t += ':';
  }
  const [head, rest] = t.includes('::') ? t.split('::') : [t, undefined];
  const h = head ? head.split(':').filter(Boolean).map((x) => parseInt(x, 16)) : [];
  const r = rest ? rest.split(':').filter(Boolean).map((x) => parseInt(x, 16)) : [];
  const words = [...h, ...new Array(8 - h.length - r.length - tail.length).fill(0), ...r, ...tail];
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

/** An address as the wire carries it (4 or 16 bytes, network order) in text; '' when it is neither. */
export function addrText(b: Uint8Array | null | undefined): string {
  if (!b || (b.length !== 4 && b.length !== 16)) return '';
  return formatAddress(Buffer.from(b.buffer, b.byteOffset, b.length), 0, b.length === 4 ? AF_INET : AF_INET6);
}

/** String dictionary for a batch: index 0 is "". */
export class Strings {
  readonly list = [''];
  protected readonly index = new Map<string, number>([['', 0]]);
  id(s: string | null): number {
    if (!s) return 0;
    let i = this.index.get(s);
    if (i === undefined) {
      i = this.list.length;
      this.list.push(s);
      this.index.set(s, i);
    }
    return i;
  }
}

/**
 * Decodes a protobuf message from untrusted bytes. protobufjs throws RangeError for truncation
 * and TypeError for invalid UTF-8 in a string field (found by fuzzing); both become one Error
 * saying which message was malformed, with the original as cause.
 */
export function decodeMessage<T>(type: { decode(bytes: Uint8Array): T }, name: string, bytes: Uint8Array): T {
  try {
    return type.decode(bytes);
  } catch (err) {
    throw new Error(`malformed ${name}: ${(err as Error).message}`, { cause: err });
  }
}

/** The socket columns TransitionBatch and DwellBatch share (same names in both messages). */
interface SocketColumns {
  netns: number[];
  cgroupId: (number | Long)[];
  family: number[];
  saddr: Uint8Array[];
  sport: number[];
  daddr: Uint8Array[];
  dport: number[];
  ownerPid: number[];
  ownerCommIdx: number[];
}

/** Those columns, empty. */
const socketColumns = (): SocketColumns => ({ netns: [], cgroupId: [], family: [], saddr: [], sport: [], daddr: [], dport: [], ownerPid: [], ownerCommIdx: [] });

/** Appends one socket's identity (namespace, cgroup, ends, owner) to those columns. */
function pushSocket(
  c: SocketColumns,
  x: Pick<TcpEvent, 'netns' | 'cgroupId' | 'family' | 'saddr' | 'sport' | 'daddr' | 'dport' | 'ownerPid' | 'ownerComm'>,
  strings: Strings,
): void {
  c.netns.push(x.netns);
  c.cgroupId.push(u64(x.cgroupId));
  c.family.push(x.family === 'inet' ? 4 : 6);
  c.saddr.push(addrBytes(x.saddr, x.family));
  c.sport.push(x.sport);
  c.daddr.push(addrBytes(x.daddr, x.family));
  c.dport.push(x.dport);
  c.ownerPid.push(x.ownerPid ?? 0);
  c.ownerCommIdx.push(strings.id(x.ownerComm));
}

/** The earliest of the rows' times: a batch's base, the times become deltas from it. */
const earliest = <T>(rows: readonly T[], at: (r: T) => bigint): bigint => rows.reduce((m, r) => (at(r) < m ? at(r) : m), at(rows[0]!));

/** Encodes events (at least one) as a TransitionBatch. */
export function encodeTransitions(events: readonly TcpEvent[], header: Header, firstEventSeq: bigint): Uint8Array {
  const base = earliest(events, (e) => e.tsNs);
  const strings = new Strings();
  const b: tcpdwell.v1.TransitionBatch.$Properties = {
    header,
    firstEventSeq: u64(firstEventSeq),
    count: events.length,
    baseTsNs: u64(base),
    tsDeltaNs: [],
    kind: [],
    cookie: [],
    oldState: [],
    newState: [],
    substate: [],
    twReason: [],
    ageNsPlus1: [],
    expiresDeltaNs: [],
    ...socketColumns(),
    pid: [],
    commIdx: [],
    error: [],
    flags: [],
    strings: strings.list,
    srttUs: [],
    totalRetrans: [],
    bytesAcked: [],
    bytesReceived: [],
  };
  for (const e of events) {
    b.tsDeltaNs!.push(u64(e.tsNs - base));
    b.kind!.push(KIND_VALUE[e.type]);
    b.cookie!.push(u64(e.cookie));
    b.oldState!.push(stateValue(e.oldState));
    b.newState!.push(stateValue(e.newState));
    b.substate!.push(stateValue(e.substate));
    b.twReason!.push(e.reason === 'expired' || e.reason === 'sent' ? 1 : e.reason === 'killed' || e.reason === 'received' ? 2 : 0);
    b.ageNsPlus1!.push(e.enteredNs === null || e.enteredNs > e.tsNs ? 0 : u64(e.tsNs - e.enteredNs + 1n));
    b.expiresDeltaNs!.push(e.expiresNs === null ? 0 : u64(e.expiresNs > e.tsNs ? e.expiresNs - e.tsNs : 0n));
    pushSocket(b as SocketColumns, e, strings);
    b.pid!.push(e.pid);
    b.commIdx!.push(strings.id(e.comm));
    b.error!.push(errnoValue(e.error));
    b.flags!.push((e.actorIsOwner ? 1 : 0) | (e.child ? 2 : 0) | (e.gap ? 4 : 0) | (e.flip ? 8 : 0) | (e.resetBy === 'received' ? 16 : e.resetBy === 'sent' ? 32 : 0));
    // One value per transition to CLOSE (what decodeEvent gives vitals), as TransitionColumns picks them.
    if (e.type === 'transition' && e.newState === 'CLOSE' && e.oldState !== 'LISTEN') pushVitals(b as VitalsColumns, e.vitals ?? NO_VITALS);
  }
  return pb.TransitionBatch.encode(b).finish();
}

/**
 * A Snapshot: the header, then the sockets as the TransitionBatch bytes `encodeTransitions` (or
 * TransitionColumns) made, embedded as they are — the same bytes protobufjs writes for
 * { header, sockets }, without decoding the batch to encode it again.
 */
export function encodeSnapshot(header: Header, batch: Uint8Array): Uint8Array {
  return pb.Snapshot.encode({ header })
    .uint32((2 << 3) | 2) // field 2 (sockets), length-delimited
    .bytes(batch)
    .finish();
}

/** Rows of a TransitionBatch back as TcpEvents. Throws if the columns disagree with count. */
export function decodeTransitions(bytes: Uint8Array): { header: Header; firstEventSeq: bigint; events: TcpEvent[] } {
  return transitionsOf(decodeMessage(pb.TransitionBatch, 'TransitionBatch', bytes));
}

/** A Snapshot's header and sockets (rows of its TransitionBatch) as TcpEvents. */
export function decodeSnapshot(bytes: Uint8Array): { header: Header; firstEventSeq: bigint; events: TcpEvent[] } {
  const snap = decodeMessage(pb.Snapshot, 'Snapshot', bytes);
  return { ...transitionsOf((snap.sockets as tcpdwell.v1.TransitionBatch | null | undefined) ?? pb.TransitionBatch.create()), header: snap.header ?? {} };
}

function transitionsOf(m: tcpdwell.v1.TransitionBatch): { header: Header; firstEventSeq: bigint; events: TcpEvent[] } {
  const n = m.count;
  const cols = [m.tsDeltaNs, m.kind, m.cookie, m.newState, m.netns, m.family, m.saddr, m.daddr, m.sport, m.dport];
  if (cols.some((c) => c.length !== n)) throw new Error(`malformed TransitionBatch: columns do not all have ${n} rows`);
  const base = big(m.baseTsNs);
  const str = (i: number | undefined) => (i !== undefined ? (m.strings[i] ?? '') : '');
  const events: TcpEvent[] = [];
  let closes = 0;
  for (let i = 0; i < n; i++) {
    const ts = base + big(m.tsDeltaNs[i]);
    const kind = KIND_NAME[m.kind[i] ?? 0] ?? 'unspecified';
    if (kind === 'unspecified') throw new Error(`malformed TransitionBatch: row ${i} has no kind`);
    const age1 = big(m.ageNsPlus1[i]);
    const entered = age1 === 0n ? null : ts - (age1 - 1n);
    const exp = big(m.expiresDeltaNs[i]);
    const ownerPid = m.ownerPid[i] ?? 0;
    const err = m.error[i] ?? 0;
    const flags = m.flags[i] ?? 0;
    const type = kind;
    events.push({
      type,
      tsNs: ts,
      cookie: big(m.cookie[i]),
      // As decode.ts: a timewait start opens its phase, a snapshot has an age, not a dwell.
      dwellNs: entered !== null && (type === 'transition' || type === 'timewait_end') ? ts - entered : null,
      enteredNs: entered,
      expiresNs: exp === 0n ? null : ts + exp,
      netns: m.netns[i]!,
      cgroupId: big(m.cgroupId[i]),
      family: m.family[i] === 4 ? 'inet' : 'inet6',
      saddr: addrText(m.saddr[i]),
      sport: m.sport[i]!,
      daddr: addrText(m.daddr[i]),
      dport: m.dport[i]!,
      pid: m.pid[i] ?? 0,
      comm: str(m.commIdx[i]),
      ownerPid: ownerPid ? ownerPid : null,
      ownerComm: ownerPid ? str(m.ownerCommIdx[i]) : null,
      oldState: type === 'transition' ? stateName(m.oldState[i] ?? 0) : null,
      newState: stateName(m.newState[i]!),
      substate: m.substate[i] ? stateName(m.substate[i]!) : null,
      reason:
        type === 'timewait_end'
          ? m.twReason[i] === 1 ? 'expired' : m.twReason[i] === 2 ? 'killed' : null
          : type === 'reset'
            ? m.twReason[i] === 1 ? 'sent' : m.twReason[i] === 2 ? 'received' : null
            : null,
      error: err ? errnoName(err) : null,
      actorIsOwner: (flags & 1) !== 0,
      child: (flags & 2) !== 0,
      gap: (flags & 4) !== 0,
      flip: type === 'timewait_start' && (flags & 8) !== 0,
      ...closeOf(m, type === 'transition' && m.newState[i] === CLOSE && m.oldState[i] !== LISTEN ? closes++ : -1, flags & 16 ? 'received' : flags & 32 ? 'sent' : null),
    });
  }
  return { header: m.header ?? {}, firstEventSeq: big(m.firstEventSeq), events };
}

// ---- vital signs at the close (TcpEvent.vitals, DwellRecord.vitals) -------------------------

const CLOSE = stateValue('CLOSE');
const LISTEN = stateValue('LISTEN');
interface VitalsColumns {
  srttUs: number[];
  totalRetrans: number[];
  bytesAcked: (number | Long)[];
  bytesReceived: (number | Long)[];
}

/** The vital signs of one close into the batch's columns (which hold one value per close). */
function pushVitals(c: VitalsColumns, v: Vitals): void {
  c.srttUs.push(v.srttUs);
  c.totalRetrans.push(v.totalRetrans);
  c.bytesAcked.push(v.bytesAcked);
  c.bytesReceived.push(v.bytesReceived);
}

const NO_VITALS: Vitals = { srttUs: 0, totalRetrans: 0, bytesAcked: 0, bytesReceived: 0 };

/** DwellBatch.close_reset as resetBy. */
const CLOSE_RESET: (ResetBy | null)[] = [null, 'sent', 'received'];

/** vitals and resetBy of a row: the k-th close of its batch (k −1: not a close, both null). */
function closeOf(m: VitalsColumns, k: number, resetBy: ResetBy | null): { vitals: Vitals | null; resetBy: ResetBy | null } {
  if (k < 0) return { vitals: null, resetBy: null };
  if (k >= m.srttUs.length || k >= m.totalRetrans.length || k >= m.bytesAcked.length || k >= m.bytesReceived.length) {
    throw new Error(`malformed batch: close ${k + 1} has no vital signs`);
  }
  return {
    vitals: { srttUs: m.srttUs[k]!, totalRetrans: m.totalRetrans[k]!, bytesAcked: Number(big(m.bytesAcked[k])), bytesReceived: Number(big(m.bytesReceived[k])) },
    resetBy,
  };
}

// ---- agent-core records (src/track) ---------------------------------------------------

const PRECISION = { exact: 0, 'lower-bound': 1, estimated: 2, 'upper-bound': 3 } as const;
const PRECISION_NAME = ['exact', 'lower-bound', 'estimated', 'upper-bound'] as const;

/** Encodes dwell records (at least one) as a DwellBatch. */
export function encodeDwell(records: readonly DwellRecord[], header: Header): Uint8Array {
  const base = earliest(records, (r) => r.leftNs);
  const strings = new Strings();
  const b: tcpdwell.v1.DwellBatch.$Properties = {
    header,
    count: records.length,
    baseTsNs: u64(base),
    cookie: [],
    state: [],
    timewait: [],
    leftDeltaNs: [],
    dwellNs: [],
    precision: [],
    nextState: [],
    endReason: [],
    error: [],
    ...socketColumns(),
    strings: strings.list,
    enteredBackPlus1Ns: [],
    srttUs: [],
    totalRetrans: [],
    bytesAcked: [],
    bytesReceived: [],
    closeRow: [],
    closeReset: [],
  };
  for (const [i, r] of records.entries()) {
    b.cookie!.push(u64(r.cookie));
    b.state!.push(stateValue(r.state));
    b.timewait!.push(r.timewait);
    b.leftDeltaNs!.push(u64(r.leftNs - base));
    b.dwellNs!.push(u64(r.dwellNs));
    b.precision!.push(PRECISION[r.precision]);
    b.nextState!.push(stateValue(r.nextState));
    b.endReason!.push(r.timewaitEnd === 'expired' ? 1 : r.timewaitEnd === 'killed' ? 2 : 0);
    b.error!.push(errnoValue(r.error));
    pushSocket(b as SocketColumns, r, strings);
    b.enteredBackPlus1Ns!.push(r.enteredNs === null || r.enteredNs > r.leftNs ? 0 : u64(r.leftNs - r.enteredNs + 1n));
    if (r.vitals) {
      pushVitals(b as VitalsColumns, r.vitals);
      b.closeRow!.push(i);
      b.closeReset!.push(r.resetBy === 'sent' ? 1 : r.resetBy === 'received' ? 2 : 0);
    }
  }
  return pb.DwellBatch.encode(b).finish();
}

/** Rows of a DwellBatch back as DwellRecords. Throws if the columns disagree with count. */
export function decodeDwell(bytes: Uint8Array): { header: Header; records: DwellRecord[]; cgroups: Map<bigint, CgroupInfo> } {
  const m = decodeMessage(pb.DwellBatch, 'DwellBatch', bytes);
  const n = m.count;
  if ([m.cookie, m.state, m.leftDeltaNs, m.dwellNs, m.netns, m.family, m.saddr, m.daddr].some((c) => c.length !== n)) {
    throw new Error(`malformed DwellBatch: columns do not all have ${n} rows`);
  }
  const base = big(m.baseTsNs);
  const records: DwellRecord[] = [];
  let closes = 0;
  for (let i = 0; i < n; i++) {
    const left = base + big(m.leftDeltaNs[i]);
    const back = big(m.enteredBackPlus1Ns[i]);
    const ownerPid = m.ownerPid[i] ?? 0;
    const next = m.nextState[i] ?? 0;
    const err = m.error[i] ?? 0;
    const k = m.closeRow[closes] === i ? closes++ : -1;
    records.push({
      cookie: big(m.cookie[i]),
      netns: m.netns[i]!,
      cgroupId: big(m.cgroupId[i]),
      family: m.family[i] === 4 ? 'inet' : 'inet6',
      saddr: addrText(m.saddr[i]),
      sport: m.sport[i] ?? 0,
      daddr: addrText(m.daddr[i]),
      dport: m.dport[i] ?? 0,
      ownerPid: ownerPid || null,
      ownerComm: ownerPid ? (m.strings[m.ownerCommIdx[i] ?? 0] ?? '') : null,
      state: stateName(m.state[i]!),
      timewait: m.timewait[i] ?? false,
      dwellNs: big(m.dwellNs[i]),
      enteredNs: back === 0n ? null : left - (back - 1n),
      leftNs: left,
      precision: PRECISION_NAME[m.precision[i] ?? 0] ?? 'exact',
      nextState: next ? stateName(next) : null,
      timewaitEnd: m.endReason[i] === 1 ? 'expired' : m.endReason[i] === 2 ? 'killed' : null,
      error: err ? errnoName(err) : null,
      ...closeOf(m, k, k >= 0 ? (CLOSE_RESET[m.closeReset[k] ?? 0] ?? null) : null),
    });
  }
  return { header: m.header ?? {}, records, cgroups: cgroupsById(m.cgroups) };
}

// ---- cgroups: what the ids name, shipped beside them (readers elsewhere cannot look them up) ----

const cgroupMessage = (c: CgroupInfo): tcpdwell.v1.ICgroupInfo => ({ id: u64(c.id), path: c.path, runtime: c.runtime, containerId: c.containerId, podUid: c.podUid, unit: c.unit });

function cgroupFromMessage(m: tcpdwell.v1.ICgroupInfo): CgroupInfo {
  return { id: big(m.id as number | Long), path: m.path ?? '', runtime: m.runtime ?? '', containerId: m.containerId ?? '', podUid: m.podUid ?? '', unit: m.unit ?? '' };
}

/** A message's cgroup dictionary, by id. */
export function cgroupsById(list: readonly tcpdwell.v1.ICgroupInfo[] | null | undefined): Map<bigint, CgroupInfo> {
  return new Map((list ?? []).map((m) => [big(m.id as number | Long), cgroupFromMessage(m)]));
}

/**
 * A DwellBatch's cgroup dictionary (field 24) on its own. Protobuf merges repeated fields of
 * concatenated encodings, so these bytes appended to any DwellBatch encoding (src/publish/columns.ts
 * writes the rows) add the dictionary without touching the rows' bytes.
 */
export function encodeDwellCgroups(cgroups: readonly CgroupInfo[], maxBytes = Infinity): Uint8Array {
  // Entries that do not fit are left out: names are metadata (the summary carries them too),
  // and a message past the server's max payload would not be published at all.
  const parts: Uint8Array[] = [];
  let bytes = 0;
  for (const c of cgroups) {
    const part = pb.DwellBatch.encode({ cgroups: [cgroupMessage(c)] }).finish();
    if (bytes + part.length > maxBytes) break;
    parts.push(part);
    bytes += part.length;
  }
  return Buffer.concat(parts);
}

/** Encodes a summary: live table, the interval's histograms, the oldest sockets, loss. */
export function encodeSummary(
  header: Header,
  s: {
    table: LiveTableSnapshot;
    histograms: readonly EncodedHistogram[];
    stuck: readonly StuckSocket[];
    eventsTotal: number;
    spoolBytes: number;
    spoolMessages: number;
    /** what the stuck sockets' and the "cgroup" distributions' ids name */
    cgroups?: readonly CgroupInfo[];
  },
): Uint8Array {
  const counts = (c: Record<string, number>) => Object.entries(c).map(([state, count]) => ({ state: stateValue(state), count }));
  return pb.Summary.encode({
    header,
    atNs: u64(s.table.atNs),
    states: counts(s.table.total),
    byNetns: s.table.byNetns.map((n) => ({ netns: n.netns, states: counts(n.counts) })),
    distributions: s.histograms.map((h) => ({
      state: stateValue(h.state),
      timewait: h.timewait,
      dimension: h.dimension,
      key: h.key,
      hdr: Buffer.from(h.hdr, 'base64'),
      count: h.totalCount,
      unit: h.unit,
      significantDigits: h.significantDigits,
    })),
    stuck: s.stuck.map((x) => ({
      cookie: u64(x.cookie),
      state: stateValue(x.state),
      ageNs: u64(x.ageNs),
      lowerBound: x.ageIsLowerBound,
      timewait: x.timewait,
      netns: x.netns,
      family: x.family === 'inet' ? 4 : 6,
      saddr: addrBytes(x.saddr, x.family),
      sport: x.sport,
      daddr: addrBytes(x.daddr, x.family),
      dport: x.dport,
      ownerPid: x.ownerPid ?? 0,
      ownerComm: x.ownerComm ?? '',
      cgroupId: u64(x.cgroupId),
    })),
    eventsTotal: s.eventsTotal,
    spoolBytes: s.spoolBytes,
    spoolMessages: s.spoolMessages,
    cgroups: (s.cgroups ?? []).map(cgroupMessage),
  }).finish();
}

/** Encodes an alert, firing or resolved. */
export function encodeAlert(header: Header, a: Alert, severity: 'firing' | 'resolved', cgroup?: CgroupInfo | null): Uint8Array {
  return pb.Alert.encode({
    header,
    kind: a.detector,
    severity,
    message: a.summary,
    explanation: a.explanation,
    labels: a.labels,
    atNs: u64(a.atNs),
    sinceNs: u64(a.sinceNs),
    value: a.value,
    threshold: a.threshold,
    key: a.key,
    netns: a.netns,
    ownerPid: a.ownerPid ?? 0,
    ownerComm: a.ownerComm ?? '',
    cgroup: cgroup ? cgroupMessage(cgroup) : null,
  }).finish();
}
