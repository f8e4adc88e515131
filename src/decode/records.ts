/**
 * Decoder: ring-buffer batches (and iterator output) → typed events. Pure: no I/O.
 *
 * Every offset and enum value comes from src/kernel/abi.ts, which is generated from
 * bpf/tcpdwell.h; nothing about the record layout is written here by hand.
 */
import { EVENT_FIELDS as F, EVENT_SIZE, EventFlags, EventType, RstDirection, TwReason } from '../kernel/abi.js';
import type { DecodeStats, EventKind, ResetBy, TcpEvent } from './event.js';
import { AF_INET, AF_INET6, errnoName, formatAddress, stateName } from './names.js';

/** Record type → event kind: the one table (view.ts reads records through it too). */
export const KIND: Record<number, EventKind | undefined> = {
  [EventType.TRANSITION]: 'transition',
  [EventType.TIMEWAIT_START]: 'timewait_start',
  [EventType.TIMEWAIT_END]: 'timewait_end',
  [EventType.SNAPSHOT]: 'snapshot',
  [EventType.RESET]: 'reset',
  [EventType.ACCEPT]: 'accept',
};

function cString(buf: Buffer, offset: number, size: number): string {
  const end = buf.indexOf(0, offset);
  return buf.toString('latin1', offset, end < 0 || end > offset + size ? offset + size : end);
}

// Decoding caches: a host has few program names and local addresses, and decoding them again
// for every event was a fifth of the decoder's time. Direct-mapped, so they never grow; a
// miss decodes as before. Entries hold the raw bytes and are compared in full: no collisions.
const COMM_SLOTS = 256;
const commRaw = new Int32Array(COMM_SLOTS * 4);
const commText: (string | undefined)[] = new Array(COMM_SLOTS);
const V4_SLOTS = 4096;
const v4Raw = new Int32Array(V4_SLOTS);
const v4Text: (string | undefined)[] = new Array(V4_SLOTS);

// TASK_COMM_LEN: the cache compares comm as four 32-bit words.
if (F.comm.size !== 16 || F.owner_comm.size !== 16) throw new Error('src/decode/records.ts: comm fields are no longer 16 bytes; update comm()');

/** cString for the kernel's 16-byte comm fields, through the cache. */
export function comm(buf: Buffer, offset: number): string {
  const a = buf.readInt32LE(offset);
  const b = buf.readInt32LE(offset + 4);
  const c = buf.readInt32LE(offset + 8);
  const d = buf.readInt32LE(offset + 12);
  const slot = ((Math.imul(a, 0x9e3779b1) ^ Math.imul(b, 0x85ebca77) ^ Math.imul(c, 0xc2b2ae3d) ^ Math.imul(d, 0x27d4eb2f)) >>> 24) & (COMM_SLOTS - 1);
  const at = slot * 4;
  const cached = commText[slot];
  if (cached !== undefined && commRaw[at] === a && commRaw[at + 1] === b && commRaw[at + 2] === c && commRaw[at + 3] === d) return cached;
  const text = cString(buf, offset, 16);
  commRaw[at] = a;
  commRaw[at + 1] = b;
  commRaw[at + 2] = c;
  commRaw[at + 3] = d;
  commText[slot] = text;
  return text;
}

/** formatAddress, through the cache for IPv4. */
export function address(buf: Buffer, offset: number, family: number): string {
  if (family !== AF_INET) return formatAddress(buf, offset, family);
  const v = buf.readInt32LE(offset);
  const slot = (Math.imul(v, 0x9e3779b1) >>> 20) & (V4_SLOTS - 1);
  const cached = v4Text[slot];
  if (cached !== undefined && v4Raw[slot] === v) return cached;
  const text = formatAddress(buf, offset, family);
  v4Raw[slot] = v;
  v4Text[slot] = text;
  return text;
}

/** A u64 field as BigInt, with one allocation when it fits 53 bits (Buffer's reader makes three). */
function u64(buf: Buffer, offset: number): bigint {
  const lo = buf.readUInt32LE(offset);
  const hi = buf.readUInt32LE(offset + 4);
  return hi < 0x200000 ? BigInt(hi * 4294967296 + lo) : (BigInt(hi) << 32n) | BigInt(lo);
}

/** A u64 field as a number (byte counts: exact below 2^53, 8 PiB). */
function u64n(buf: Buffer, offset: number): number {
  return buf.readUInt32LE(offset + 4) * 4294967296 + buf.readUInt32LE(offset);
}

/** The new state of a closing transition (kernel TCP_CLOSE), whose record carries the vital signs. */
export const TCP_CLOSE = 7;
/** A LISTEN -> CLOSE is a listener's end, no connection's: no vital signs. */
export const TCP_LISTEN = 10;

/** resetBy of a closing transition from its flags. */
export function resetBy(flags: number): ResetBy | null {
  return flags & EventFlags.RST_RECEIVED ? 'received' : flags & EventFlags.RST_SENT ? 'sent' : null;
}

/**
 * Decodes one record of EVENT_SIZE bytes at buf[offset..]. Returns null for a record that
 * cannot be an event (unknown type or family, or fewer than EVENT_SIZE bytes); the caller counts it.
 */
export function decodeEvent(buf: Buffer, offset: number): TcpEvent | null {
  // A record that does not fit is not an event (found by fuzzing: it was an out-of-bounds RangeError).
  if (!(offset >= 0) || offset + EVENT_SIZE > buf.length) return null;
  const kind = KIND[buf.readUInt8(offset + F.type.offset)];
  const familyValue = buf.readUInt16LE(offset + F.family.offset);
  if (!kind || (familyValue !== AF_INET && familyValue !== AF_INET6)) return null;
  const flags = buf.readUInt8(offset + F.flags.offset);
  const tsNs = u64(buf, offset + F.ts_ns.offset);
  const entered = u64(buf, offset + F.entered_ns.offset);
  const enteredNs = flags & EventFlags.ENTERED_KNOWN && entered !== 0n ? entered : null;
  const expires = u64(buf, offset + F.expires_ns.offset);
  const ownerKnown = (flags & EventFlags.OWNER_KNOWN) !== 0;
  const errno = buf.readInt32LE(offset + F.error.offset);
  const isTimewait = kind === 'timewait_start' || kind === 'timewait_end';
  const substate = buf.readUInt8(offset + F.substate.offset);
  const reason = buf.readUInt8(offset + F.reason.offset);
  const closing = kind === 'transition' && buf.readUInt8(offset + F.new_state.offset) === TCP_CLOSE && buf.readUInt8(offset + F.old_state.offset) !== TCP_LISTEN;
  return {
    type: kind,
    tsNs,
    cookie: u64(buf, offset + F.cookie.offset),
    enteredNs,
    // A timewait start has no dwell of its own: it opens the timewait phase.
    dwellNs: enteredNs !== null && kind !== 'timewait_start' && kind !== 'snapshot' ? tsNs - enteredNs : null,
    expiresNs: expires !== 0n ? expires : null,
    netns: buf.readUInt32LE(offset + F.netns.offset),
    cgroupId: u64(buf, offset + F.cgroup_id.offset),
    family: familyValue === AF_INET ? 'inet' : 'inet6',
    saddr: address(buf, offset + F.saddr.offset, familyValue),
    sport: buf.readUInt16LE(offset + F.sport.offset),
    daddr: address(buf, offset + F.daddr.offset, familyValue),
    dport: buf.readUInt16LE(offset + F.dport.offset),
    pid: buf.readUInt32LE(offset + F.pid.offset),
    comm: comm(buf, offset + F.comm.offset),
    ownerPid: ownerKnown ? buf.readUInt32LE(offset + F.owner_pid.offset) : null,
    ownerComm: ownerKnown ? comm(buf, offset + F.owner_comm.offset) : null,
    oldState: kind === 'transition' ? stateName(buf.readUInt8(offset + F.old_state.offset)) : null,
    newState: stateName(buf.readUInt8(offset + F.new_state.offset)),
    substate: isTimewait || substate !== 0 ? stateName(substate) : null,
    reason:
      kind === 'timewait_end'
        ? reason === TwReason.EXPIRED ? 'expired' : reason === TwReason.KILLED ? 'killed' : null
        : kind === 'reset'
          ? reason === RstDirection.SENT ? 'sent' : reason === RstDirection.RECEIVED ? 'received' : null
          : null,
    error: errno > 0 ? errnoName(errno) : null,
    actorIsOwner: (flags & EventFlags.PROCESS_CTX) !== 0,
    child: (flags & EventFlags.CHILD) !== 0,
    gap: (flags & EventFlags.GAP) !== 0,
    flip: kind === 'timewait_start' && (flags & EventFlags.FLIP) !== 0,
    vitals: closing
      ? {
          srttUs: buf.readUInt32LE(offset + F.srtt_us.offset),
          totalRetrans: buf.readUInt32LE(offset + F.total_retrans.offset),
          bytesAcked: u64n(buf, offset + F.bytes_acked.offset),
          bytesReceived: u64n(buf, offset + F.bytes_received.offset),
        }
      : null,
    resetBy: closing ? resetBy(flags) : null,
  };
}

/** Bytes before each record in a ring batch: u32 length (LE), u32 zero (bpf-ts-loader's batch format). */
export const RING_HEADER_BYTES = 8;

/**
 * Decodes a ring-buffer batch from bpf-ts-loader: entries of [u32 length][u32 0][record][pad to 8].
 * A record of the wrong length, or that does not decode, is counted in stats.malformed and
 * skipped; a truncated batch stops there (the rest is counted as one malformed record).
 */
export function decodeRingBatch(batch: Buffer, onEvent: (e: TcpEvent, buf: Buffer, offset: number) => void, stats: DecodeStats): void {
  let off = 0;
  while (off < batch.length) {
    if (batch.length - off < RING_HEADER_BYTES) {
      stats.malformed++;
      return;
    }
    const len = batch.readUInt32LE(off);
    const body = off + RING_HEADER_BYTES;
    if (len === 0 || body + len > batch.length) {
      stats.malformed++;
      return;
    }
    stats.records++;
    const ev = len === EVENT_SIZE ? decodeEvent(batch, body) : null;
    if (ev) onEvent(ev, batch, body);
    else stats.malformed++;
    off = body + ((len + 7) & ~7);
  }
}

/** Decodes back-to-back records with no headers (what the iter/tcp program writes). */
export function decodeRecords(buf: Buffer, onEvent: (e: TcpEvent, buf: Buffer, offset: number) => void, stats: DecodeStats): void {
  let off = 0;
  for (; off + EVENT_SIZE <= buf.length; off += EVENT_SIZE) {
    stats.records++;
    const ev = decodeEvent(buf, off);
    if (ev) onEvent(ev, buf, off);
    else stats.malformed++;
  }
  if (off !== buf.length) stats.malformed++;
}

/** Back-to-back records with no headers (the iterator's output), decoded into a list. */
export function decodeRecordList(buf: Buffer, stats: DecodeStats): TcpEvent[] {
  const out: TcpEvent[] = [];
  decodeRecords(buf, (e) => out.push(e), stats);
  return out;
}

/** Back-to-back iterator records as one ring batch (the framing `trace --format raw` writes). */
export function frameRecords(records: Buffer): Buffer {
  const n = Math.floor(records.length / EVENT_SIZE);
  const padded = (EVENT_SIZE + 7) & ~7;
  const out = Buffer.alloc(n * (RING_HEADER_BYTES + padded));
  for (let i = 0; i < n; i++) {
    const at = i * (RING_HEADER_BYTES + padded);
    out.writeUInt32LE(EVENT_SIZE, at);
    records.copy(out, at + RING_HEADER_BYTES, i * EVENT_SIZE, (i + 1) * EVENT_SIZE);
  }
  return out;
}
