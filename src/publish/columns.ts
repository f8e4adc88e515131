/**
 * The agent's hot path to protobuf: TransitionBatch rows appended straight from the kernel's
 * records (no TcpEvent, no strings, no BigInt per event) and DwellBatch rows from the tracker's
 * records, kept in growable typed-array columns and written as packed fields by hand.
 *
 * The bytes are exactly what protobufjs writes for the same batch through `encodeTransitions` /
 * `encodeDwell` in wire.ts (fields in number order, packed scalars, scalars that those set
 * always written): test/unit/columns.test.ts compares them byte for byte, and protobufjs reads
 * them back. Those two stay the reference; this file only makes the same bytes faster
 * (measured by bench/pipeline-bench.mjs: protobufjs through objects cost ~4.5 µs per event).
 *
 * 64-bit values (boot-time ns, cookies, cgroup ids) are carried as two u32 halves, so a host up
 * for more than 104 days (2^53 ns) still encodes exactly.
 */
import { EVENT_FIELDS as F, EventFlags, EventType, TwReason } from '../kernel/abi.js';
import { pb, addrBytes, errnoValue, Strings, type Header } from './wire.js';
import { AF_INET, errnoName, RECORD_INDEX as I, RecordView, stateValue, type SocketIdentity } from '../decode/index.js';
import type { DwellRecord } from '../track/types.js';
import type { DwellRow, DwellRowSink, LiveTable } from '../track/index.js';

const TWO32 = 4294967296;

/** Bytes a varint of v takes (v an unsigned integer below 2^53). */
function varintSize(v: number): number {
  if (v < 0x80) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x200000) return 3;
  if (v < 0x10000000) return 4;
  if (v < 0x800000000) return 5;
  if (v < 0x40000000000) return 6;
  if (v < 0x2000000000000) return 7;
  return 8;
}

/** Bytes a varint of the u64 hi·2^32 + lo takes. */
function varint64Size(lo: number, hi: number): number {
  if (hi === 0) return varintSize(lo);
  return Math.ceil((64 - Math.clz32(hi)) / 7);
}

/** A growable byte buffer with the few protobuf primitives the batches need. */
export class ProtoWriter {
  buf = new Uint8Array(64 << 10);
  pos = 0;

  reset(): void {
    this.pos = 0;
  }

  /** Starts a batch message over: field 1 the header, field 2 the row count (both batches begin so). */
  startBatch(header: Header, rows: number): this {
    this.reset();
    this.bytes(1, pb.Header.encode(header).finish());
    this.tag(2, 0);
    this.varint(rows);
    return this;
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  /** An unsigned varint of v < 2^53 (call ensure first: at most 8 bytes). */
  varint(v: number): void {
    const b = this.buf;
    let p = this.pos;
    while (v > 0x7fffffff) {
      b[p++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    while (v > 0x7f) {
      b[p++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    b[p++] = v;
    this.pos = p;
  }

  /** An unsigned varint of hi·2^32 + lo (call ensure first: at most 10 bytes); protobufjs's loop. */
  varint64(lo: number, hi: number): void {
    const b = this.buf;
    let p = this.pos;
    while (hi) {
      b[p++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    while (lo > 0x7f) {
      b[p++] = (lo & 0x7f) | 0x80;
      lo >>>= 7;
    }
    b[p++] = lo;
    this.pos = p;
  }

  /** A uint64 field of hi·2^32 + lo; left out at 0, as proto3 (and protobufjs) does. */
  uint64Field(field: number, lo: number, hi: number): void {
    if ((lo | hi) === 0) return;
    this.tag(field, 0);
    this.varint64(lo, hi);
  }

  tag(field: number, wire: number): void {
    this.ensure(10);
    this.varint((field << 3) | wire);
  }

  /** A length-delimited field holding these bytes. */
  bytes(field: number, bytes: Uint8Array): void {
    this.tag(field, 2);
    this.ensure(10 + bytes.length);
    this.varint(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }
}

/** A column of u32 values. */
class U32Column {
  a = new Uint32Array(1024);
  n = 0;
  push(v: number): void {
    if (this.n === this.a.length) {
      const next = new Uint32Array(this.n * 2);
      next.set(this.a);
      this.a = next;
    }
    this.a[this.n++] = v;
  }
  /** Packed varints (also right for enums and bools: their values are small and non-negative). */
  write(w: ProtoWriter, field: number): void {
    const a = this.a;
    const n = this.n;
    let len = 0;
    for (let i = 0; i < n; i++) len += varintSize(a[i]!);
    w.tag(field, 2);
    w.ensure(10 + len);
    w.varint(len);
    for (let i = 0; i < n; i++) w.varint(a[i]!);
  }
}

/** A column of u64 values, as halves. */
class U64Column {
  lo = new Uint32Array(1024);
  hi = new Uint32Array(1024);
  n = 0;
  push(lo: number, hi: number): void {
    if (this.n === this.lo.length) {
      const lo2 = new Uint32Array(this.n * 2);
      const hi2 = new Uint32Array(this.n * 2);
      lo2.set(this.lo);
      hi2.set(this.hi);
      this.lo = lo2;
      this.hi = hi2;
    }
    this.lo[this.n] = lo;
    this.hi[this.n++] = hi;
  }
  pushBig(v: bigint): void {
    const n = Number(v);
    if (n <= Number.MAX_SAFE_INTEGER) this.push(n >>> 0, Math.floor(n / TWO32));
    else this.push(Number(v & 0xffffffffn), Number((v >> 32n) & 0xffffffffn));
  }
  /** pushBig(BigInt(n)) for an integer n of at most 2^53 in size (negative ones too, as pushBig). */
  pushNumber(n: number): void {
    this.push(n >>> 0, Math.floor(n / TWO32));
  }
  /**
   * Replaces every value by its difference from the smallest (times as a base plus deltas);
   * returns the base in `out` as [lo, hi].
   */
  rebase(out: Uint32Array): void {
    const { lo, hi, n } = this;
    let bLo = lo[0]!;
    let bHi = hi[0]!;
    for (let i = 1; i < n; i++) {
      if (hi[i]! < bHi || (hi[i] === bHi && lo[i]! < bLo)) {
        bLo = lo[i]!;
        bHi = hi[i]!;
      }
    }
    for (let i = 0; i < n; i++) {
      sub64(lo[i]!, hi[i]!, bLo, bHi, scratch);
      lo[i] = scratch[0]!;
      hi[i] = scratch[1]!;
    }
    out[0] = bLo;
    out[1] = bHi;
  }
  /** Packed varints. */
  write(w: ProtoWriter, field: number): void {
    const { lo, hi, n } = this;
    let len = 0;
    for (let i = 0; i < n; i++) len += varint64Size(lo[i]!, hi[i]!);
    w.tag(field, 2);
    w.ensure(10 + len);
    w.varint(len);
    for (let i = 0; i < n; i++) w.varint64(lo[i]!, hi[i]!);
  }
  /** Packed fixed64 (little-endian). */
  writeFixed(w: ProtoWriter, field: number): void {
    const { lo, hi, n } = this;
    w.tag(field, 2);
    w.ensure(10 + 8 * n);
    w.varint(8 * n);
    const b = w.buf;
    let p = w.pos;
    for (let i = 0; i < n; i++) {
      const l = lo[i]!;
      const h = hi[i]!;
      b[p] = l;
      b[p + 1] = l >>> 8;
      b[p + 2] = l >>> 16;
      b[p + 3] = l >>> 24;
      b[p + 4] = h;
      b[p + 5] = h >>> 8;
      b[p + 6] = h >>> 16;
      b[p + 7] = h >>> 24;
      p += 8;
    }
    w.pos = p;
  }
}

/** Addresses: 16 bytes a row, of which the first 4 (IPv4) or all 16 are the value. */
class AddressColumn {
  bytes = new Uint8Array(16 * 1024);
  len = new Uint8Array(1024);
  n = 0;
  private grow(): void {
    const b = new Uint8Array(this.bytes.length * 2);
    b.set(this.bytes);
    this.bytes = b;
    const l = new Uint8Array(this.len.length * 2);
    l.set(this.len);
    this.len = l;
  }
  push(src: Uint8Array, offset: number, length: 4 | 16): void {
    if (this.n === this.len.length) this.grow();
    const at = 16 * this.n;
    for (let i = 0; i < length; i++) this.bytes[at + i] = src[offset + i]!;
    this.len[this.n++] = length;
  }
  /** A repeated bytes field: one tag per row. */
  write(w: ProtoWriter, field: number): void {
    const tag = (field << 3) | 2;
    w.ensure(this.n * 18);
    for (let i = 0; i < this.n; i++) {
      const l = this.len[i]!;
      w.varint(tag);
      const b = w.buf;
      let p = w.pos;
      b[p++] = l;
      for (let j = 16 * i, end = j + l; j < end; j++) b[p++] = this.bytes[j]!;
      w.pos = p;
    }
  }
}

const textEncoder = new TextEncoder();

/** A batch's string dictionary (index 0 is ""), also keyed by the kernel's 16 comm bytes without decoding them. */
class CommDictionary extends Strings {
  private readonly byHash = new Map<number, number[]>();
  private readonly raw: Uint8Array[] = [new Uint8Array(16)];

  /** Index of the NUL-terminated comm in src[offset..offset+16]. */
  idRaw(src: Uint8Array, offset: number): number {
    if (src[offset] === 0) return 0;
    let h = 0x811c9dc5;
    for (let i = 0; i < 16; i++) h = Math.imul(h ^ src[offset + i]!, 0x01000193);
    const candidates = this.byHash.get(h);
    if (candidates) {
      outer: for (const idx of candidates) {
        const r = this.raw[idx]!;
        for (let i = 0; i < 16; i++) if (r[i] !== src[offset + i]) continue outer;
        return idx;
      }
    }
    let end = 0;
    while (end < 16 && src[offset + end] !== 0) end++;
    const text = Buffer.from(src.buffer, src.byteOffset + offset, end).toString('latin1');
    // Two raw spellings of one name (bytes after the NUL differ) share its index.
    const idx = this.id(text);
    this.raw[idx] = src.slice(offset, offset + 16);
    if (candidates) candidates.push(idx);
    else this.byHash.set(h, [idx]);
    return idx;
  }

  write(w: ProtoWriter, field: number): void {
    for (const s of this.list) this.writeString(w, field, s);
  }

  private writeString(w: ProtoWriter, field: number, s: string): void {
    const bytes = textEncoder.encode(s);
    w.bytes(field, bytes);
  }
}

/** The 16 comm bytes at a and at b of src are equal. */
function sameComm(src: Uint8Array, a: number, b: number): boolean {
  for (let i = 0; i < 16; i++) if (src[a + i] !== src[b + i]) return false;
  return true;
}

const KIND_VALUE = new Uint8Array(256);
KIND_VALUE[EventType.TRANSITION] = 1;
KIND_VALUE[EventType.TIMEWAIT_START] = 2;
KIND_VALUE[EventType.TIMEWAIT_END] = 3;
KIND_VALUE[EventType.SNAPSHOT] = 4;

/** u64 difference a − b of halves, as [lo, hi] in out; negative results come out as 2^64 − x (callers check). */
function sub64(aLo: number, aHi: number, bLo: number, bHi: number, out: Uint32Array): void {
  const lo = aLo - bLo;
  out[0] = lo;
  out[1] = aHi - bHi - (lo < 0 ? 1 : 0);
}

const scratch = new Uint32Array(2);
/** the base of a batch's times, from U64Column.rebase */
const base = new Uint32Array(2);

/**
 * The socket columns TransitionBatch and DwellBatch share, at consecutive field numbers in both:
 * netns, cgroup, family, saddr, sport, daddr, dport.
 */
class SocketColumns {
  private readonly netns = new U32Column();
  private readonly cgroup = new U64Column();
  private readonly family = new U32Column();
  private readonly saddr = new AddressColumn();
  private readonly sport = new U32Column();
  private readonly daddr = new AddressColumn();
  private readonly dport = new U32Column();

  /** From the kernel record at v/off. */
  pushRecord(v: RecordView, off: number): void {
    this.netns.push(v.netns(off));
    this.cgroup.push(v.lo(off, I.cgroup_id), v.hi(off, I.cgroup_id));
    const inet = v.family(off) === AF_INET;
    this.family.push(inet ? 4 : 6);
    this.saddr.push(v.u8, off + I.saddr, inet ? 4 : 16);
    this.sport.push(v.sport(off));
    this.daddr.push(v.u8, off + I.daddr, inet ? 4 : 16);
    this.dport.push(v.dport(off));
  }

  /** From a live-table slot, its addresses already as bytes. */
  pushSlot(t: LiveTable, slot: number, saddr: Uint8Array, daddr: Uint8Array): void {
    this.netns.push(t.netnsOf(slot));
    this.cgroup.pushNumber(t.cgroupOf(slot));
    const inet = !t.isInet6(slot);
    this.family.push(inet ? 4 : 6);
    this.saddr.push(saddr, 0, inet ? 4 : 16);
    this.sport.push(t.sport(slot));
    this.daddr.push(daddr, 0, inet ? 4 : 16);
    this.dport.push(t.dport(slot));
  }

  /** From a record's identity, its addresses already as bytes. */
  pushIdentity(r: SocketIdentity, saddr: Uint8Array, daddr: Uint8Array): void {
    this.netns.push(r.netns);
    this.cgroup.pushBig(r.cgroupId);
    const inet = r.family === 'inet';
    this.family.push(inet ? 4 : 6);
    this.saddr.push(saddr, 0, inet ? 4 : 16);
    this.sport.push(r.sport);
    this.daddr.push(daddr, 0, inet ? 4 : 16);
    this.dport.push(r.dport);
  }

  /** The seven columns as fields first .. first + 6. */
  write(w: ProtoWriter, first: number): void {
    this.netns.write(w, first);
    this.cgroup.write(w, first + 1);
    this.family.write(w, first + 2);
    this.saddr.write(w, first + 3);
    this.sport.write(w, first + 4);
    this.daddr.write(w, first + 5);
    this.dport.write(w, first + 6);
  }

  clear(): void {
    for (const c of [this.netns, this.cgroup, this.family, this.saddr, this.sport, this.daddr, this.dport]) c.n = 0;
  }
}

/**
 * TransitionBatch rows, appended from kernel records (`appendRecord`, offsets as decode.ts
 * accepted them), encoded by `encode` and then cleared.
 */
export class TransitionColumns {
  private readonly ts = new U64Column();
  private readonly kind = new U32Column();
  private readonly cookie = new U64Column();
  private readonly oldState = new U32Column();
  private readonly newState = new U32Column();
  private readonly substate = new U32Column();
  private readonly twReason = new U32Column();
  private readonly agePlus1 = new U64Column();
  private readonly expiresDelta = new U64Column();
  private readonly socket = new SocketColumns();
  private readonly pid = new U32Column();
  private readonly commOff = new U32Column(); // where each row's record sits in `sources`
  private readonly ownerPid = new U32Column();
  private readonly error = new U32Column();
  private readonly flags = new U32Column();
  /** the record bytes of each row, for the comm columns (resolved at encode, once per batch) */
  private sources: Uint8Array[] = [];
  private readonly ownerKnown = new U32Column();
  private readonly w = new ProtoWriter();
  /** for appendRecord: the view of the last buffer appended from */
  private readonly view = new RecordView();

  get length(): number {
    return this.kind.n;
  }

  /** Appends the record at buf[off..off+EVENT_SIZE] (one decodeEvent accepted). */
  appendRecord(buf: Buffer, off: number): void {
    this.appendView(this.view.of(buf), off);
  }

  /** Appends the record at v/off (one forEachRingRecord accepted): fields at the generated offsets. */
  appendView(v: RecordView, off: number): void {
    const type = v.type(off);
    const flags = v.flags(off);
    const tsLo = v.lo(off, I.ts_ns);
    const tsHi = v.hi(off, I.ts_ns);
    this.ts.push(tsLo, tsHi);
    this.kind.push(KIND_VALUE[type]!);
    this.cookie.push(v.lo(off, I.cookie), v.hi(off, I.cookie));
    this.oldState.push(type === EventType.TRANSITION ? v.oldState(off) : 0);
    this.newState.push(v.newState(off));
    this.substate.push(v.substate(off));
    const reason = v.u8at(off, I.reason);
    this.twReason.push(type === EventType.TIMEWAIT_END && (reason === TwReason.EXPIRED || reason === TwReason.KILLED) ? reason : 0);
    // age + 1: ts − entered + 1 when entered is known and not after ts, else 0
    const enLo = v.lo(off, I.entered_ns);
    const enHi = v.hi(off, I.entered_ns);
    if (flags & EventFlags.ENTERED_KNOWN && (enLo | enHi) !== 0 && (enHi < tsHi || (enHi === tsHi && enLo <= tsLo))) {
      sub64(tsLo, tsHi, enLo, enHi, scratch);
      const lo = scratch[0]! + 1;
      this.agePlus1.push(lo >>> 0, (scratch[1]! + (lo > 0xffffffff ? 1 : 0)) >>> 0);
    } else this.agePlus1.push(0, 0);
    const exLo = v.lo(off, I.expires_ns);
    const exHi = v.hi(off, I.expires_ns);
    if (exHi > tsHi || (exHi === tsHi && exLo > tsLo)) {
      sub64(exLo, exHi, tsLo, tsHi, scratch);
      this.expiresDelta.push(scratch[0]!, scratch[1]!);
    } else this.expiresDelta.push(0, 0);
    this.socket.pushRecord(v, off);
    this.pid.push(v.u32at(off, I.pid));
    const ownerKnown = (flags & EventFlags.OWNER_KNOWN) !== 0;
    this.ownerPid.push(ownerKnown ? v.ownerPid(off) : 0);
    this.ownerKnown.push(ownerKnown ? 1 : 0);
    const errno = v.errno(off);
    this.error.push(errno > 0 ? errnoValueOf(errno) : 0);
    this.flags.push(
      (flags & EventFlags.PROCESS_CTX ? 1 : 0) | (flags & EventFlags.CHILD ? 2 : 0) | (flags & EventFlags.GAP ? 4 : 0) |
        (type === EventType.TIMEWAIT_START && flags & EventFlags.FLIP ? 8 : 0),
    );
    this.sources.push(v.u8);
    this.commOff.push(off);
  }

  /** The TransitionBatch of the rows so far (at least one); the columns are cleared. */
  encode(header: Header, firstEventSeq: bigint): Uint8Array {
    const n = this.length;
    const w = this.w.startBatch(header, n);
    w.uint64Field(3, Number(firstEventSeq & 0xffffffffn), Number((firstEventSeq >> 32n) & 0xffffffffn));
    this.ts.rebase(base); // ts becomes the delta from the earliest
    w.uint64Field(4, base[0]!, base[1]!);
    this.ts.write(w, 5);
    this.kind.write(w, 6);
    this.cookie.writeFixed(w, 7);
    this.oldState.write(w, 8);
    this.newState.write(w, 9);
    this.substate.write(w, 10);
    this.twReason.write(w, 11);
    this.agePlus1.write(w, 12);
    this.expiresDelta.write(w, 13);
    this.socket.write(w, 14);
    this.pid.write(w, 21);
    // comm dictionary, in row order as encodeTransitions builds it: comm, then owner comm
    const strings = new CommDictionary();
    const comm = new U32Column();
    const ownerComm = new U32Column();
    for (let i = 0; i < n; i++) {
      const src = this.sources[i]!;
      const off = this.commOff.a[i]!;
      ownerComm.push(this.ownerKnown.a[i] ? strings.idRaw(src, off + F.owner_comm.offset) : 0);
      // The actor is most often the owner: the same 16 bytes, the same index.
      comm.push(this.ownerKnown.a[i] && sameComm(src, off + F.comm.offset, off + F.owner_comm.offset) ? ownerComm.a[i]! : strings.idRaw(src, off + F.comm.offset));
    }
    comm.write(w, 22);
    this.ownerPid.write(w, 23);
    ownerComm.write(w, 24);
    this.error.write(w, 25);
    this.flags.write(w, 26);
    strings.write(w, 27);
    this.clear();
    return w.finish();
  }

  clear(): void {
    for (const c of [this.ts, this.kind, this.cookie, this.oldState, this.newState, this.substate, this.twReason, this.agePlus1, this.expiresDelta, this.pid, this.commOff, this.ownerPid, this.ownerKnown, this.error, this.flags]) c.n = 0;
    this.socket.clear();
    this.sources = [];
  }
}

const ERRNO_VALUE = new Int32Array(4096).fill(-1);
/** errno as the wire carries it: its value when Node knows its name (as encodeTransitions), else 0. */
function errnoValueOf(errno: number): number {
  if (errno >= ERRNO_VALUE.length) return 0;
  let v = ERRNO_VALUE[errno]!;
  if (v < 0) ERRNO_VALUE[errno] = v = errnoValue(errnoName(errno));
  return v;
}

const PRECISION = { exact: 0, 'lower-bound': 1, estimated: 2, 'upper-bound': 3 } as const;
const MAX_ADDRESS_CACHE = 65536;

/**
 * DwellBatch rows from the tracker — as DwellRecords (`push`) or as rows (`DwellRowSink`: the
 * agent's path, no object per record; the same bytes) — encoded by `encode` and then cleared.
 */
export class DwellColumns implements DwellRowSink {
  private readonly cookie = new U64Column();
  private readonly state = new U32Column();
  private readonly timewait = new U32Column();
  private readonly left = new U64Column();
  private readonly dwell = new U64Column();
  private readonly precision = new U32Column();
  private readonly nextState = new U32Column();
  private readonly endReason = new U32Column();
  private readonly error = new U32Column();
  private readonly socket = new SocketColumns();
  private readonly ownerPid = new U32Column();
  private readonly ownerComm = new U32Column();
  private readonly enteredBack = new U64Column();
  private strings = new CommDictionary();
  /** address text → bytes: a host talks to few addresses, and parsing text costs ~1 µs */
  private readonly addresses = new Map<string, Uint8Array>();
  private readonly w = new ProtoWriter();

  get length(): number {
    return this.state.n;
  }

  push(r: DwellRecord): void {
    this.cookie.pushBig(r.cookie);
    this.state.push(stateValue(r.state));
    this.timewait.push(r.timewait ? 1 : 0);
    this.left.pushBig(r.leftNs);
    this.dwell.pushBig(r.dwellNs);
    this.precision.push(PRECISION[r.precision]);
    this.nextState.push(stateValue(r.nextState));
    this.endReason.push(r.timewaitEnd === 'expired' ? 1 : r.timewaitEnd === 'killed' ? 2 : 0);
    this.error.push(errnoValue(r.error));
    this.socket.pushIdentity(r, this.address(r.saddr, r.family), this.address(r.daddr, r.family));
    this.ownerPid.push(r.ownerPid ?? 0);
    this.ownerComm.push(this.strings.id(r.ownerComm));
    this.enteredBack.pushBig(r.enteredNs === null || r.enteredNs > r.leftNs ? 0n : r.leftNs - r.enteredNs + 1n);
  }

  fromObject(r: DwellRecord): void {
    this.push(r);
  }

  /** `push` of the DwellRecord the row describes, its socket the kernel record at v/off. */
  fromRecord(v: RecordView, off: number, row: Readonly<DwellRow>): void {
    this.cookie.push(v.lo(off, I.cookie), v.hi(off, I.cookie));
    this.pushRow(row);
    this.socket.pushRecord(v, off);
    const ownerKnown = v.ownerKnown(off);
    this.ownerPid.push(ownerKnown ? v.ownerPid(off) : 0);
    this.ownerComm.push(ownerKnown ? this.strings.idRaw(v.u8, off + I.owner_comm) : 0);
    this.pushEnteredBack(row);
  }

  /** `push` of the DwellRecord the row describes, its socket a slot of the live table. */
  fromSlot(t: LiveTable, slot: number, row: Readonly<DwellRow>): void {
    this.cookie.pushBig(t.cookie(slot));
    this.pushRow(row);
    const family = t.isInet6(slot) ? 'inet6' : 'inet';
    this.socket.pushSlot(t, slot, this.address(t.address(t.saddrId(slot)), family), this.address(t.address(t.daddrId(slot)), family));
    this.ownerPid.push(t.ownerPid(slot) ?? 0);
    this.ownerComm.push(this.strings.id(t.ownerComm(slot)));
    this.pushEnteredBack(row);
  }

  /** The columns from state to error, in push's order. */
  private pushRow(row: Readonly<DwellRow>): void {
    this.state.push(row.state);
    this.timewait.push(row.timewait ? 1 : 0);
    this.left.pushNumber(row.leftNs);
    this.dwell.pushNumber(row.dwellNs);
    this.precision.push(PRECISION[row.precision]);
    this.nextState.push(row.nextState < 0 ? 0 : row.nextState);
    this.endReason.push(row.timewaitEnd);
    this.error.push(row.errno > 0 ? errnoValueOf(row.errno) : 0);
  }

  private pushEnteredBack(row: Readonly<DwellRow>): void {
    const e = row.enteredNs;
    this.enteredBack.pushNumber(Number.isNaN(e) || e > row.leftNs ? 0 : row.leftNs - e + 1);
  }

  private address(text: string, family: 'inet' | 'inet6'): Uint8Array {
    let b = this.addresses.get(text);
    if (b === undefined) {
      if (this.addresses.size >= MAX_ADDRESS_CACHE) this.addresses.clear();
      b = addrBytes(text, family);
      this.addresses.set(text, b);
    }
    return b;
  }

  /** The DwellBatch of the rows so far (at least one); the columns are cleared. */
  encode(header: Header): Uint8Array {
    const w = this.w.startBatch(header, this.length);
    this.left.rebase(base); // left becomes the delta from the earliest
    w.uint64Field(3, base[0]!, base[1]!);
    this.cookie.writeFixed(w, 4);
    this.state.write(w, 5);
    this.timewait.write(w, 6);
    this.left.write(w, 7);
    this.dwell.write(w, 8);
    this.precision.write(w, 9);
    this.nextState.write(w, 10);
    this.endReason.write(w, 11);
    this.error.write(w, 12);
    this.socket.write(w, 13);
    this.ownerPid.write(w, 20);
    this.ownerComm.write(w, 21);
    this.strings.write(w, 22);
    this.enteredBack.write(w, 23);
    this.clear();
    return w.finish();
  }

  clear(): void {
    for (const c of [this.cookie, this.state, this.timewait, this.left, this.dwell, this.precision, this.nextState, this.endReason, this.error, this.ownerPid, this.ownerComm, this.enteredBack]) c.n = 0;
    this.socket.clear();
    this.strings = new CommDictionary();
  }
}
