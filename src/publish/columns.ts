/**
 * The agent's hot path to protobuf: TransitionBatch rows appended straight from the kernel's
 * records (no TcpEvent, no strings, no BigInt per event) and DwellBatch rows from the tracker,
 * staged as rows of the kernel's own record layout and written column by column as packed
 * fields by hand, at encode (one copy of the record per row; every field read at its generated
 * offset through src/decode/view.ts).
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
import { EVENT_FIELDS as F, EVENT_SIZE, EventFlags, EventType, RstDirection, TwReason } from '../kernel/abi.js';
import { pb, addrBytes, errnoValue, Strings, type Header } from './wire.js';
import { AF_INET, AF_INET6, errnoName, RECORD_INDEX as I, RecordView, stateValue, TCP_CLOSE, TCP_LISTEN } from '../decode/index.js';
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

  /**
   * Starts a packed field of at most maxBytes: its tag, and room for the longest length prefix
   * (5 bytes). Write the values at `pos`, then endPacked(start), which writes the length and
   * moves the values back over the room the prefix did not need — one pass over the values
   * instead of one to size them and one to write them.
   */
  beginPacked(field: number, maxBytes: number): number {
    this.tag(field, 2);
    this.ensure(5 + maxBytes);
    const start = this.pos;
    this.pos += 5;
    return start;
  }

  endPacked(start: number): void {
    const len = this.pos - start - 5;
    const size = varintSize(len);
    const end = this.pos;
    this.pos = start;
    this.varint(len);
    if (size < 5) this.buf.copyWithin(start + size, start + 5, end);
    this.pos = end - (5 - size);
  }

  /** A length-delimited field holding these bytes. */
  bytes(field: number, bytes: Uint8Array): void {
    this.tag(field, 2);
    this.ensure(10 + bytes.length);
    this.varint(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /** The message so far, as its own bytes (the writer's buffer is reused; the spool keeps these). */
  finish(): Uint8Array {
    const out = Buffer.allocUnsafe(this.pos); // no zero-fill: every byte is written next
    out.set(this.buf.subarray(0, this.pos));
    return out;
  }
}


type FieldName = keyof typeof F;

/**
 * Rows staged as kernel records (plus `extra` u32 words after each, for what a row adds):
 * one growable buffer, read back through a RecordView, so a field is read at encode exactly as
 * the hot path reads it. `add` returns the byte offset of a new, zeroed row.
 */
class Stage {
  readonly stride: number;
  readonly view = new RecordView();
  private buf: Buffer;
  n = 0;

  constructor(readonly extra = 0) {
    this.stride = EVENT_SIZE + 4 * extra;
    this.buf = Buffer.alloc(this.stride * 1024);
    this.view.of(this.buf);
  }

  add(): number {
    if ((this.n + 1) * this.stride > this.buf.length) {
      const next = Buffer.alloc(this.buf.length * 2);
      this.buf.copy(next, 0, 0, this.n * this.stride);
      this.buf = next;
      this.view.of(next);
    }
    return this.n++ * this.stride;
  }

  /** Copies the record at v/off into a new row; returns the row's offset. */
  copy(v: RecordView, off: number): number {
    const at = this.add();
    const src = v.u32;
    const dst = this.view.u32;
    const s = off >> 2;
    const d = at >> 2;
    for (let i = 0; i < EVENT_SIZE >> 2; i++) dst[d + i] = src[s + i]!;
    return at;
  }

  /** Zeroes a row added by `add` that is then filled field by field (rows are reused after clear). */
  zero(at: number): void {
    this.view.u32.fill(0, at >> 2, (at + this.stride) >> 2);
  }

  clear(): void {
    this.n = 0;
  }
}

/** Packed varints of the u8/u16/u32/u64 record field `name` of every row. */
function packedField(w: ProtoWriter, field: number, st: Stage, name: FieldName): void {
  const f = F[name];
  const i = I[name];
  if (f.size === 8) packedU64(w, field, st, i);
  else if (f.size === 4) packedU32s(w, field, st.view.u32, st.n, i, st.stride >> 2);
  else if (f.size === 2) packedU16s(w, field, st.view.u16, st.n, i, st.stride >> 1);
  else packedU8s(w, field, st.view.u8, st.n, i, st.stride);
}

/**
 * Packed varints of a[first + r·step] for n rows: one function per array type, so every load in
 * the loop sees one type (one function for the three measured 6 % slower, and all three in one
 * loop with a type switch made the loads megamorphic).
 */
function packedU32s(w: ProtoWriter, field: number, a: Uint32Array, n: number, first: number, step: number): void {
  const start = w.beginPacked(field, 5 * n);
  const b = w.buf;
  let p = w.pos;
  for (let r = 0, at = first; r < n; r++, at += step) {
    let v = a[at]!;
    while (v > 0x7f) {
      b[p++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    b[p++] = v;
  }
  w.pos = p;
  w.endPacked(start);
}
function packedU16s(w: ProtoWriter, field: number, a: Uint16Array, n: number, first: number, step: number): void {
  const start = w.beginPacked(field, 3 * n);
  const b = w.buf;
  let p = w.pos;
  for (let r = 0, at = first; r < n; r++, at += step) {
    let v = a[at]!;
    while (v > 0x7f) {
      b[p++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    b[p++] = v;
  }
  w.pos = p;
  w.endPacked(start);
}
function packedU8s(w: ProtoWriter, field: number, a: Uint8Array, n: number, first: number, step: number): void {
  const start = w.beginPacked(field, 2 * n);
  const b = w.buf;
  let p = w.pos;
  for (let r = 0, at = first; r < n; r++, at += step) {
    const v = a[at]!;
    if (v > 0x7f) {
      b[p++] = (v & 0x7f) | 0x80;
      b[p++] = v >>> 7;
    } else b[p++] = v;
  }
  w.pos = p;
  w.endPacked(start);
}

/** Packed varints of the u64 at u32 index i of every row, minus base (halves; 0 for none). */
function packedU64(w: ProtoWriter, field: number, st: Stage, i: number, baseLo = 0, baseHi = 0): void {
  const { n, stride } = st;
  const u = st.view.u32;
  const start = w.beginPacked(field, 10 * n);
  const b = w.buf;
  let p = w.pos;
  const step = stride >> 2;
  for (let r = 0, at = i; r < n; r++, at += step) {
    let l = u[at]!;
    let h = u[at + 1]!;
    if (baseLo !== 0 || baseHi !== 0) {
      const d = l - baseLo;
      h = (h - baseHi - (d < 0 ? 1 : 0)) >>> 0;
      l = d >>> 0;
    }
    while (h) {
      b[p++] = (l & 0x7f) | 0x80;
      l = ((l >>> 7) | (h << 25)) >>> 0;
      h >>>= 7;
    }
    while (l > 0x7f) {
      b[p++] = (l & 0x7f) | 0x80;
      l >>>= 7;
    }
    b[p++] = l;
  }
  w.pos = p;
  w.endPacked(start);
}

/** Packed fixed64 of the u64 at u32 index i of every row. */
function packedFixed64(w: ProtoWriter, field: number, st: Stage, i: number): void {
  const { n, stride } = st;
  const u = st.view.u32;
  const start = w.beginPacked(field, 8 * n);
  const b = w.buf;
  let p = w.pos;
  const step = stride >> 2;
  for (let r = 0, at = i; r < n; r++, at += step) {
    const l = u[at]!;
    const h = u[at + 1]!;
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
  w.endPacked(start);
}

/** Packed varints of values computed per row (the caller's loop wrote them into `vals`). */
function packedValues(w: ProtoWriter, field: number, vals: Uint32Array, n: number): void {
  packedU32s(w, field, vals, n, 0, 1);
}

/** The smallest u64 at u32 index i over the rows, as [lo, hi] in out. */
function minU64(st: Stage, i: number, out: Uint32Array): void {
  const u = st.view.u32;
  const step = st.stride >> 2;
  let bLo = u[i]!;
  let bHi = u[i + 1]!;
  for (let r = 1, at = i + step; r < st.n; r++, at += step) {
    const h = u[at + 1]!;
    if (h < bHi || (h === bHi && u[at]! < bLo)) {
      bLo = u[at]!;
      bHi = h;
    }
  }
  out[0] = bLo;
  out[1] = bHi;
}

/** An address field (saddr/daddr) of every row as a repeated bytes field: 4 bytes for IPv4, 16 else. */
function addresses(w: ProtoWriter, field: number, st: Stage, name: 'saddr' | 'daddr'): void {
  const { n, stride, view } = st;
  const u8 = view.u8;
  const tag = (field << 3) | 2;
  w.ensure(n * 18);
  const b = w.buf;
  let p = w.pos;
  for (let r = 0, at = 0; r < n; r++, at += stride) {
    const l = view.family(at) === AF_INET ? 4 : 16;
    b[p++] = tag; // field numbers below 16: a one-byte tag
    b[p++] = l;
    for (let j = at + I[name], end = j + l; j < end; j++) b[p++] = u8[j]!;
  }
  w.pos = p;
}

/** `addresses` for any field number (tags past 15 take two bytes). */
function addressesAnyTag(w: ProtoWriter, field: number, st: Stage, name: 'saddr' | 'daddr'): void {
  if (field < 16) {
    addresses(w, field, st, name);
    return;
  }
  const { n, stride, view } = st;
  const u8 = view.u8;
  w.ensure(n * 20);
  for (let r = 0, at = 0; r < n; r++, at += stride) {
    const l = view.family(at) === AF_INET ? 4 : 16;
    w.varint((field << 3) | 2);
    const b = w.buf;
    let p = w.pos;
    b[p++] = l;
    for (let j = at + I[name], end = j + l; j < end; j++) b[p++] = u8[j]!;
    w.pos = p;
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
    for (const s of this.list) w.bytes(field, textEncoder.encode(s));
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
KIND_VALUE[EventType.RESET] = 5;
KIND_VALUE[EventType.ACCEPT] = 6;

/** the base of a batch's times */
const base = new Uint32Array(2);

/** Per-row scratch values for computed columns, grown as batches grow. */
class Scratch {
  a = new Uint32Array(1024);
  b = new Uint32Array(1024);
  of(n: number): this {
    if (this.a.length < n) {
      this.a = new Uint32Array(n * 2);
      this.b = new Uint32Array(n * 2);
    }
    return this;
  }
}

/**
 * TransitionBatch rows, appended from kernel records (`appendView` in place, `appendRecord` from
 * a Buffer), encoded by `encode` and then cleared. Each row is the record itself: the columns
 * are computed from it at encode.
 */
export class TransitionColumns {
  private readonly stage = new Stage();
  private readonly scratch = new Scratch();
  private readonly w = new ProtoWriter();
  /** for appendRecord: the view of the last buffer appended from */
  private readonly view = new RecordView();

  get length(): number {
    return this.stage.n;
  }

  /** Appends the record at buf[off..off+EVENT_SIZE] (one decodeEvent accepted). */
  appendRecord(buf: Buffer, off: number): void {
    this.stage.copy(this.view.of(buf), off);
  }

  /** Appends the record at v/off (one forEachRingRecord accepted). */
  appendView(v: RecordView, off: number): void {
    this.stage.copy(v, off);
  }

  /** The TransitionBatch of the rows so far (at least one); the columns are cleared. */
  encode(header: Header, firstEventSeq: bigint): Uint8Array {
    const st = this.stage;
    const w = this.w.startBatch(header, st.n);
    w.uint64Field(3, Number(firstEventSeq & 0xffffffffn), Number((firstEventSeq >> 32n) & 0xffffffffn));
    writeColumns(w, st, TRANSITION_COLUMNS, this.scratch.of(st.n), new CommDictionary());
    this.clear();
    return w.finish();
  }

  clear(): void {
    this.stage.clear();
  }
}

// ---- the computed TransitionBatch columns: one function each, row values into vals ----------

function kindColumn(st: Stage, vals: Uint32Array): void {
  const u8 = st.view.u8;
  for (let r = 0, at = I.type; r < st.n; r++, at += st.stride) vals[r] = KIND_VALUE[u8[at]!]!;
}

function oldStateColumn(st: Stage, vals: Uint32Array): void {
  const u8 = st.view.u8;
  for (let r = 0, at = 0; r < st.n; r++, at += st.stride) vals[r] = u8[at + I.type] === EventType.TRANSITION ? u8[at + I.old_state]! : 0;
}

function reasonColumn(st: Stage, vals: Uint32Array): void {
  const u8 = st.view.u8;
  for (let r = 0, at = 0; r < st.n; r++, at += st.stride) {
    const reason = u8[at + I.reason]!;
    const type = u8[at + I.type];
    // tw_reason carries a timewait end's reason and a reset's direction (1 sent, 2 received)
    vals[r] = (type === EventType.TIMEWAIT_END && (reason === TwReason.EXPIRED || reason === TwReason.KILLED)) || (type === EventType.RESET && (reason === RstDirection.SENT || reason === RstDirection.RECEIVED)) ? reason : 0;
  }
}

/** age + 1: ts − entered + 1 when entered is known and not after ts, else 0 (halves) */
function ageColumn(st: Stage, lo: Uint32Array, hi: Uint32Array): void {
  const u8 = st.view.u8;
  const u = st.view.u32;
  for (let r = 0, at = 0; r < st.n; r++, at += st.stride) {
    const q = at >> 2;
    const tsLo = u[q + I.ts_ns]!;
    const tsHi = u[q + I.ts_ns + 1]!;
    const enLo = u[q + I.entered_ns]!;
    const enHi = u[q + I.entered_ns + 1]!;
    if (u8[at + I.flags]! & EventFlags.ENTERED_KNOWN && (enLo | enHi) !== 0 && (enHi < tsHi || (enHi === tsHi && enLo <= tsLo))) {
      const d = tsLo - enLo;
      const h = tsHi - enHi - (d < 0 ? 1 : 0);
      const l = (d >>> 0) + 1;
      lo[r] = l >>> 0;
      hi[r] = (h + (l > 0xffffffff ? 1 : 0)) >>> 0;
    } else lo[r] = hi[r] = 0;
  }
}

/** expires − ts when after ts, else 0 (halves) */
function expiresColumn(st: Stage, lo: Uint32Array, hi: Uint32Array): void {
  const u = st.view.u32;
  for (let r = 0, at = 0; r < st.n; r++, at += st.stride) {
    const q = at >> 2;
    const tsLo = u[q + I.ts_ns]!;
    const tsHi = u[q + I.ts_ns + 1]!;
    const exLo = u[q + I.expires_ns]!;
    const exHi = u[q + I.expires_ns + 1]!;
    if (exHi > tsHi || (exHi === tsHi && exLo > tsLo)) {
      const d = exLo - tsLo;
      lo[r] = d >>> 0;
      hi[r] = (exHi - tsHi - (d < 0 ? 1 : 0)) >>> 0;
    } else lo[r] = hi[r] = 0;
  }
}

/** comm (into comm) and owner comm (into owner) dictionary indexes, in row order as encodeTransitions builds it: owner comm, then comm */
function commColumns(st: Stage, strings: CommDictionary, comm: Uint32Array, owner: Uint32Array): void {
  const u8 = st.view.u8;
  const OC = I.owner_comm;
  const C = I.comm;
  for (let r = 0, at = 0, prev = -1; r < st.n; r++, prev = at, at += st.stride) {
    const ownerKnown = (u8[at + I.flags]! & EventFlags.OWNER_KNOWN) !== 0;
    // Neighbouring rows mostly carry the same names: the previous row's index, without hashing.
    let o = 0;
    if (ownerKnown) o = prev >= 0 && (u8[prev + I.flags]! & EventFlags.OWNER_KNOWN) !== 0 && sameComm(u8, at + OC, prev + OC) ? owner[r - 1]! : strings.idRaw(u8, at + OC);
    owner[r] = o;
    // The actor is most often the owner: the same 16 bytes, the same index.
    comm[r] = ownerKnown && sameComm(u8, at + C, at + OC) ? o : prev >= 0 && sameComm(u8, at + C, prev + C) ? comm[r - 1]! : strings.idRaw(u8, at + C);
  }
}

function ownerPidColumn(st: Stage, vals: Uint32Array): void {
  const u8 = st.view.u8;
  const u = st.view.u32;
  for (let r = 0, at = 0; r < st.n; r++, at += st.stride) vals[r] = u8[at + I.flags]! & EventFlags.OWNER_KNOWN ? u[(at >> 2) + I.owner_pid]! : 0;
}

function errorColumn(st: Stage, vals: Uint32Array): void {
  const i32 = st.view.i32;
  for (let r = 0, at = 0; r < st.n; r++, at += st.stride) {
    const errno = i32[(at >> 2) + I.error]!;
    vals[r] = errno > 0 ? errnoValueOf(errno) : 0;
  }
}

function flagsColumn(st: Stage, vals: Uint32Array): void {
  const u8 = st.view.u8;
  for (let r = 0, at = 0; r < st.n; r++, at += st.stride) {
    const flags = u8[at + I.flags]!;
    vals[r] =
      (flags & EventFlags.PROCESS_CTX ? 1 : 0) | (flags & EventFlags.CHILD ? 2 : 0) | (flags & EventFlags.GAP ? 4 : 0) |
      (u8[at + I.type] === EventType.TIMEWAIT_START && flags & EventFlags.FLIP ? 8 : 0) |
      (closingAt(u8, at) ? (flags & EventFlags.RST_RECEIVED ? 16 : flags & EventFlags.RST_SENT ? 32 : 0) : 0);
  }
}

/** The row at `at` is a transition to CLOSE, not a listener's: its record's vital signs go on the wire (else 0, as decodeEvent's null). */
const closingAt = (u8: Uint8Array, at: number) => u8[at + I.type] === EventType.TRANSITION && u8[at + I.new_state] === TCP_CLOSE && u8[at + I.old_state] !== TCP_LISTEN;

/**
 * Packed varints of the record field `name` of the rows `pick` takes (the closes: their vital
 * signs, one value per close), in row order; none picked, the field is left out, as protobufjs
 * leaves out an empty repeated field.
 */
function pickedField(w: ProtoWriter, field: number, st: Stage, name: FieldName, pick: (u8: Uint8Array, u32: Uint32Array, at: number) => boolean): void {
  const { u8, u32 } = st.view;
  let r = 0;
  let at = 0;
  while (r < st.n && !pick(u8, u32, at)) r++, (at += st.stride);
  if (r === st.n) return;
  const wide = F[name].size === 8;
  const i = I[name];
  const start = w.beginPacked(field, 10 * (st.n - r));
  for (; r < st.n; r++, at += st.stride) {
    if (!pick(u8, u32, at)) continue;
    if (wide) w.varint64(u32[(at >> 2) + i]!, u32[(at >> 2) + i + 1]!);
    else w.varint(u32[(at >> 2) + i]!);
  }
  w.endPacked(start);
}

/** Packed varints of each picked row's index (DwellBatch.close_row) or of f(row) (close_reset); left out when none. */
function pickedRows(w: ProtoWriter, field: number, st: Stage, pick: (u8: Uint8Array, u32: Uint32Array, at: number) => boolean, f: (u32: Uint32Array, at: number, r: number) => number): void {
  const { u8, u32 } = st.view;
  let r = 0;
  let at = 0;
  while (r < st.n && !pick(u8, u32, at)) r++, (at += st.stride);
  if (r === st.n) return;
  const start = w.beginPacked(field, 5 * (st.n - r));
  for (; r < st.n; r++, at += st.stride) if (pick(u8, u32, at)) w.varint(f(u32, at, r));
  w.endPacked(start);
}

const isClose = (u8: Uint8Array, _u32: Uint32Array, at: number) => closingAt(u8, at);
const isCloseRow = (_u8: Uint8Array, u32: Uint32Array, at: number) => u32[dw(at, D.close)] !== 0;

/** Packed varints of u64 values given as halves. */
function packedHalves(w: ProtoWriter, field: number, lo: Uint32Array, hi: Uint32Array, n: number): void {
  const start = w.beginPacked(field, 10 * n);
  const b = w.buf;
  let p = w.pos;
  for (let r = 0; r < n; r++) {
    let l = lo[r]!;
    let h = hi[r]!;
    while (h) {
      b[p++] = (l & 0x7f) | 0x80;
      l = ((l >>> 7) | (h << 25)) >>> 0;
      h >>>= 7;
    }
    while (l > 0x7f) {
      b[p++] = (l & 0x7f) | 0x80;
      l >>>= 7;
    }
    b[p++] = l;
  }
  w.pos = p;
  w.endPacked(start);
}

/**
 * The words a DwellBatch row adds after its socket's record: the dwell itself, as the columns
 * carry it (u64 values as halves).
 */
const D = {
  state: 0,
  timewait: 1,
  leftLo: 2,
  leftHi: 3,
  dwellLo: 4,
  dwellHi: 5,
  precision: 6,
  nextState: 7,
  endReason: 8,
  error: 9,
  ownerComm: 10,
  backLo: 11,
  backHi: 12,
  /** 0: not a close's row; else 1 + DwellBatch.close_reset (1 none, 2 RST sent, 3 received) */
  close: 13,
} as const;
const D_WORDS = 14; // (even: rows stay 8-byte aligned)
/** u32 index of a row word in a row at byte offset at */
const dw = (at: number, k: number) => ((at + EVENT_SIZE) >> 2) + k;

// ---- the column tables -------------------------------------------------------------------
//
// Every column of a batch, in field-number order (protobufjs writes fields so, and the bytes must
// be its bytes). A row is a field of the kernel record written as it is (`record`: its width and
// offset come from the generated ABI), a u32 word a DwellBatch row adds (`word`), or a computed
// column (`values`/`halves`: one function filling the row values; `write`: anything else).
// A new record field that goes on the wire as it is takes one row here (and its field in
// proto/, wire.ts's reference encoder, and for dwell records `setRecordFields` from the object).

interface ColumnContext {
  vals: Uint32Array;
  vals2: Uint32Array;
  strings: CommDictionary;
}

type Column =
  | { field: number; record: FieldName }
  | { field: number; word: number }
  | { field: number; fixed64: FieldName }
  | { field: number; values: (st: Stage, vals: Uint32Array, c: ColumnContext) => void }
  | { field: number; halves: (st: Stage, lo: Uint32Array, hi: Uint32Array) => void }
  | { field: number; write: (w: ProtoWriter, field: number, st: Stage, c: ColumnContext) => void };

function writeColumns(w: ProtoWriter, st: Stage, columns: readonly Column[], scratch: Scratch, strings: CommDictionary): void {
  const c: ColumnContext = { vals: scratch.a, vals2: scratch.b, strings };
  for (const col of columns) {
    if ('record' in col) packedField(w, col.field, st, col.record);
    else if ('word' in col) packedWord(w, col.field, st, col.word);
    else if ('fixed64' in col) packedFixed64(w, col.field, st, I[col.fixed64]);
    else if ('values' in col) {
      col.values(st, c.vals, c);
      packedValues(w, col.field, c.vals, st.n);
    } else if ('halves' in col) {
      col.halves(st, c.vals, c.vals2);
      packedHalves(w, col.field, c.vals, c.vals2, st.n);
    } else col.write(w, col.field, st, c);
  }
}

/** The socket columns TransitionBatch and DwellBatch share, from field `first` on. */
const socketColumns = (first: number): Column[] => [
  { field: first, record: 'netns' },
  { field: first + 1, record: 'cgroup_id' },
  { field: first + 2, values: familyColumn },
  { field: first + 3, write: (w, f, st) => addressesAnyTag(w, f, st, 'saddr') },
  { field: first + 4, record: 'sport' },
  { field: first + 5, write: (w, f, st) => addressesAnyTag(w, f, st, 'daddr') },
  { field: first + 6, record: 'dport' },
];

/** TransitionBatch (proto/tcpdwell/v1/tcpdwell.proto), from field 4 (1–3 are written by encode). */
const TRANSITION_COLUMNS: readonly Column[] = [
  { field: 4, write: (w, f, st) => (minU64(st, I.ts_ns, base), w.uint64Field(f, base[0]!, base[1]!)) }, // ts: a base, deltas at 5
  { field: 5, write: (w, f, st) => packedU64(w, f, st, I.ts_ns, base[0]!, base[1]!) },
  { field: 6, values: kindColumn },
  { field: 7, fixed64: 'cookie' },
  { field: 8, values: oldStateColumn },
  { field: 9, record: 'new_state' },
  { field: 10, record: 'substate' },
  { field: 11, values: reasonColumn },
  { field: 12, halves: ageColumn },
  { field: 13, halves: expiresColumn },
  ...socketColumns(14),
  { field: 21, record: 'pid' },
  // comm and owner comm: both dictionary indexes in one pass (owner comm first, as protobufjs)
  { field: 22, values: (st, vals, c) => commColumns(st, c.strings, vals, c.vals2) },
  { field: 23, values: ownerPidColumn },
  { field: 24, write: (w, f, st, c) => packedValues(w, f, c.vals2, st.n) },
  { field: 25, values: errorColumn },
  { field: 26, values: flagsColumn },
  { field: 27, write: (w, f, _st, c) => c.strings.write(w, f) },
  { field: 28, write: (w, f, st) => pickedField(w, f, st, 'srtt_us', isClose) },
  { field: 29, write: (w, f, st) => pickedField(w, f, st, 'total_retrans', isClose) },
  { field: 30, write: (w, f, st) => pickedField(w, f, st, 'bytes_acked', isClose) },
  { field: 31, write: (w, f, st) => pickedField(w, f, st, 'bytes_received', isClose) },
];

const DW = (k: number) => (EVENT_SIZE >> 2) + k;


/** DwellBatch, from field 3: the socket's record, then the dwell's words (D). */
const DWELL_COLUMNS: readonly Column[] = [
  { field: 3, write: (w, f, st) => (minU64(st, DW(D.leftLo), base), w.uint64Field(f, base[0]!, base[1]!)) }, // left: a base, deltas at 7
  { field: 4, fixed64: 'cookie' },
  { field: 5, word: DW(D.state) },
  { field: 6, word: DW(D.timewait) },
  { field: 7, write: (w, f, st) => packedU64(w, f, st, DW(D.leftLo), base[0]!, base[1]!) },
  { field: 8, write: (w, f, st) => packedU64(w, f, st, DW(D.dwellLo)) },
  { field: 9, word: DW(D.precision) },
  { field: 10, word: DW(D.nextState) },
  { field: 11, word: DW(D.endReason) },
  { field: 12, word: DW(D.error) },
  ...socketColumns(13),
  { field: 20, record: 'owner_pid' },
  { field: 21, word: DW(D.ownerComm) },
  { field: 22, write: (w, f, _st, c) => c.strings.write(w, f) },
  { field: 23, write: (w, f, st) => packedU64(w, f, st, DW(D.backLo)) },
  // 24 (the cgroup dictionary) is appended after the rows: encodeDwellCgroups in wire.ts.
  // The closes' rows only (word close not 0): their vital signs are their records'.
  { field: 25, write: (w, f, st) => pickedField(w, f, st, 'srtt_us', isCloseRow) },
  { field: 26, write: (w, f, st) => pickedField(w, f, st, 'total_retrans', isCloseRow) },
  { field: 27, write: (w, f, st) => pickedField(w, f, st, 'bytes_acked', isCloseRow) },
  { field: 28, write: (w, f, st) => pickedField(w, f, st, 'bytes_received', isCloseRow) },
  { field: 29, write: (w, f, st) => pickedRows(w, f, st, isCloseRow, (_u, _at, r) => r) },
  { field: 30, write: (w, f, st) => pickedRows(w, f, st, isCloseRow, (u, at) => u[dw(at, D.close)]! - 1) },
];

function familyColumn(st: Stage, vals: Uint32Array): void {
  const u16 = st.view.u16;
  for (let r = 0, at = I.family; r < st.n; r++, at += st.stride >> 1) vals[r] = u16[at] === AF_INET ? 4 : 6;
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
 * Each row is its socket as a kernel record (the record itself on the agent's path; written
 * field by field from a DwellRecord or a live-table slot otherwise) plus the dwell's words.
 */
export class DwellColumns implements DwellRowSink {
  private readonly stage = new Stage(D_WORDS);
  private readonly scratch = new Scratch();
  private strings = new CommDictionary();
  /** address text → bytes: a host talks to few addresses, and parsing text costs ~1 µs */
  private readonly addresses = new Map<string, Uint8Array>();
  private readonly w = new ProtoWriter();

  get length(): number {
    return this.stage.n;
  }

  /** A DwellRecord (the object path). */
  push(r: DwellRecord): void {
    const st = this.stage;
    const at = st.add();
    st.zero(at);
    const v = st.view;
    const u = v.u32;
    for (const [name, value] of RECORD_FROM_DWELL) setField(v, at, name, value(r));
    v.u8.set(this.address(r.saddr, r.family), at + I.saddr);
    v.u8.set(this.address(r.daddr, r.family), at + I.daddr);
    u[dw(at, D.state)] = stateValueOf(r.state);
    u[dw(at, D.timewait)] = r.timewait ? 1 : 0;
    setU64(u, dw(at, D.leftLo), r.leftNs);
    setU64(u, dw(at, D.dwellLo), r.dwellNs);
    u[dw(at, D.precision)] = PRECISION[r.precision];
    u[dw(at, D.nextState)] = stateValueOf(r.nextState);
    u[dw(at, D.endReason)] = r.timewaitEnd === 'expired' ? 1 : r.timewaitEnd === 'killed' ? 2 : 0;
    u[dw(at, D.error)] = errnoValue(r.error);
    u[dw(at, D.ownerComm)] = this.strings.id(r.ownerComm);
    setU64(u, dw(at, D.backLo), r.enteredNs === null || r.enteredNs > r.leftNs ? 0n : r.leftNs - r.enteredNs + 1n);
    u[dw(at, D.close)] = !r.vitals ? 0 : r.resetBy === 'sent' ? 2 : r.resetBy === 'received' ? 3 : 1;
  }

  fromObject(r: DwellRecord): void {
    this.push(r);
  }

  /** `push` of the DwellRecord the row describes, its socket the kernel record at v/off. */
  fromRecord(v: RecordView, off: number, row: Readonly<DwellRow>): void {
    const st = this.stage;
    const at = st.copy(v, off);
    const u = st.view.u32;
    if (!v.ownerKnown(off)) u[(at >> 2) + I.owner_pid] = 0;
    u[dw(at, D.ownerComm)] = v.ownerKnown(off) ? this.strings.idRaw(v.u8, off + I.owner_comm) : 0;
    this.rowWords(u, at, row);
    u[dw(at, D.close)] = !row.closing ? 0 : row.reset === RstDirection.SENT ? 2 : row.reset === RstDirection.RECEIVED ? 3 : 1;
  }

  /** `push` of the DwellRecord the row describes, its socket a slot of the live table. */
  fromSlot(t: LiveTable, slot: number, row: Readonly<DwellRow>): void {
    const st = this.stage;
    const at = st.add();
    st.zero(at);
    const v = st.view;
    const u = v.u32;
    const q = at >> 2;
    setU64(u, q + I.cookie, t.cookie(slot));
    u[q + I.netns] = t.netnsOf(slot);
    setNumber(u, q + I.cgroup_id, t.cgroupOf(slot));
    const family = t.isInet6(slot) ? 'inet6' : 'inet';
    v.u16[(at >> 1) + I.family] = family === 'inet' ? AF_INET : AF_INET6;
    v.u8.set(this.address(t.address(t.saddrId(slot)), family), at + I.saddr);
    v.u8.set(this.address(t.address(t.daddrId(slot)), family), at + I.daddr);
    v.u16[(at >> 1) + I.sport] = t.sport(slot);
    v.u16[(at >> 1) + I.dport] = t.dport(slot);
    u[q + I.owner_pid] = t.ownerPid(slot) ?? 0;
    u[dw(at, D.ownerComm)] = this.strings.id(t.ownerComm(slot));
    this.rowWords(u, at, row);
  }

  private rowWords(u: Uint32Array, at: number, row: Readonly<DwellRow>): void {
    u[dw(at, D.state)] = row.state;
    u[dw(at, D.timewait)] = row.timewait ? 1 : 0;
    setNumber(u, dw(at, D.leftLo), row.leftNs);
    setNumber(u, dw(at, D.dwellLo), row.dwellNs);
    u[dw(at, D.precision)] = PRECISION[row.precision];
    u[dw(at, D.nextState)] = row.nextState < 0 ? 0 : row.nextState;
    u[dw(at, D.endReason)] = row.timewaitEnd;
    u[dw(at, D.error)] = row.errno > 0 ? errnoValueOf(row.errno) : 0;
    const e = row.enteredNs;
    setNumber(u, dw(at, D.backLo), Number.isNaN(e) || e > row.leftNs ? 0 : row.leftNs - e + 1);
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
    const st = this.stage;
    const w = this.w.startBatch(header, st.n);
    writeColumns(w, st, DWELL_COLUMNS, this.scratch.of(st.n), this.strings);
    this.clear();
    return w.finish();
  }

  clear(): void {
    this.stage.clear();
    this.strings = new CommDictionary();
  }
}

/**
 * How `DwellColumns.push` writes a DwellRecord's socket into the record its row holds (the agent's
 * path copies the kernel's record instead): record field ← value. A record field that dwell
 * records carry takes one row here and one in DWELL_COLUMNS.
 */
const RECORD_FROM_DWELL: readonly [FieldName, (r: DwellRecord) => number | bigint][] = [
  ['cookie', (r) => r.cookie],
  ['netns', (r) => r.netns],
  ['cgroup_id', (r) => r.cgroupId],
  ['family', (r) => (r.family === 'inet' ? AF_INET : AF_INET6)],
  ['sport', (r) => r.sport],
  ['dport', (r) => r.dport],
  ['owner_pid', (r) => r.ownerPid ?? 0],
  ['srtt_us', (r) => r.vitals?.srttUs ?? 0],
  ['total_retrans', (r) => r.vitals?.totalRetrans ?? 0],
  ['bytes_acked', (r) => r.vitals?.bytesAcked ?? 0],
  ['bytes_received', (r) => r.vitals?.bytesReceived ?? 0],
];

/** Writes a value into a record field of the row at `at`, at its generated offset and width (u64: as U64Column.pushBig did). */
function setField(v: RecordView, at: number, name: FieldName, value: number | bigint): void {
  const f = F[name];
  const i = I[name];
  if (f.size === 8) setU64(v.u32, (at >> 2) + i, BigInt(value));
  else if (f.size === 4) v.u32[(at >> 2) + i] = Number(value);
  else if (f.size === 2) v.u16[(at >> 1) + i] = Number(value);
  else v.u8[at + i] = Number(value);
}

/** Packed varints of the u32 word k of every row. */
function packedWord(w: ProtoWriter, field: number, st: Stage, k: number): void {
  packedU32s(w, field, st.view.u32, st.n, k, st.stride >> 2);
}

/** A u64 (bigint) into two u32 words; as U64Column.pushBig did: negative values wrap as 2^64 − x. */
function setU64(u: Uint32Array, i: number, v: bigint): void {
  const n = Number(v);
  if (n <= Number.MAX_SAFE_INTEGER) setNumber(u, i, n);
  else {
    u[i] = Number(v & 0xffffffffn);
    u[i + 1] = Number((v >> 32n) & 0xffffffffn);
  }
}

/** An integer number of at most 2^53 in size into two u32 words (negative ones wrap, as setU64). */
function setNumber(u: Uint32Array, i: number, n: number): void {
  u[i] = n >>> 0;
  u[i + 1] = Math.floor(n / TWO32);
}

/** stateValue of a state name as the wire carries it (UNKNOWN(n) → n; null → 0), cached per name. */
const STATE_WIRE = new Map<string, number>();
function stateValueOf(name: string | null): number {
  if (name === null) return 0;
  let v = STATE_WIRE.get(name);
  if (v === undefined) STATE_WIRE.set(name, (v = stateValue(name)));
  return v;
}
