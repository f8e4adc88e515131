/**
 * The agent's hot path into kernel records: fields read in place, at the generated offsets,
 * through typed-array views of the batch — no TcpEvent, no BigInt, no string per record.
 * decodeEvent (records.ts) stays the reference and the way in for the CLI, tests and
 * snapshots; test/unit/view.test.ts checks that both read every record alike.
 *
 * 64-bit fields come as plain numbers, exact below 2^53 (boot-time ns: 104 days of uptime;
 * cookies and cgroup ids in practice always). `fits53` says whether every 64-bit field of a
 * record is below that, and a caller that needs exact values takes the object path when not.
 *
 * A new field of struct tcpdwell_event is read with `u32(off, I.field)` / `u16(...)` /
 * `u8(...)` / `u64(off, I.field)`: `I` below is derived from the generated EVENT_FIELDS, so the
 * field needs no code here.
 */
import { EVENT_FIELDS as F, EVENT_SIZE, EventFlags, EventType, RstDirection, TwReason } from '../kernel/abi.js';
import type { DecodeStats, EventKind, ResetBy, TcpEvent, Vitals } from './event.js';
import { AF_INET, AF_INET6, errnoName, stateName } from './names.js';
import { address, comm, KIND, resetBy, RING_HEADER_BYTES, TCP_CLOSE, TCP_LISTEN } from './records.js';

type FieldName = keyof typeof F;

/**
 * Each field's index in the view of its own width (offset / size), from the generated layout:
 * `u32[(off >> 2) + I.pid]` is the pid of the record at `off` (off is a multiple of 8).
 */
export const I = Object.fromEntries(Object.entries(F).map(([name, f]) => [name, f.kind === 'bytes' ? f.offset : f.offset / Math.min(f.size, 4)])) as Record<FieldName, number>;
for (const [name, f] of Object.entries(F)) {
  if (f.kind !== 'bytes' && f.offset % Math.min(f.size, 4) !== 0) throw new Error(`src/decode/view.ts: field ${name} is not aligned to its size; the views cannot read it`);
}
if (EVENT_SIZE % 8 !== 0) throw new Error('src/decode/view.ts: EVENT_SIZE is not a multiple of 8');

const TWO32 = 4294967296;
/** hi words below this keep a u64 below 2^53 */
const HI53 = 0x200000;

/** Typed-array views of one batch of records. Re-pointed per batch; nothing per record. */
export class RecordView {
  buf: Buffer = Buffer.alloc(0);
  u8: Uint8Array = new Uint8Array(0);
  u16: Uint16Array = new Uint16Array(0);
  u32: Uint32Array = new Uint32Array(0);
  i32: Int32Array = new Int32Array(0);

  /**
   * Views `buf` (a ring batch or iterator output). A buffer that does not start 8-byte aligned
   * (a pooled Buffer, a test's subarray) is copied first, so offsets into it stay the same;
   * the loader's batches and the ring's own pages always are.
   */
  of(buf: Buffer): this {
    if (buf === this.buf) return this;
    let b = buf;
    if (b.byteOffset % 8 !== 0) {
      b = Buffer.allocUnsafeSlow(buf.length);
      buf.copy(b);
    }
    this.buf = buf;
    const n = b.byteLength;
    this.u8 = new Uint8Array(b.buffer, b.byteOffset, n);
    this.u16 = new Uint16Array(b.buffer, b.byteOffset, n >> 1);
    this.u32 = new Uint32Array(b.buffer, b.byteOffset, n >> 2);
    this.i32 = new Int32Array(b.buffer, b.byteOffset, n >> 2);
    return this;
  }

  u8at(off: number, i: number): number {
    return this.u8[off + i]!;
  }
  u16at(off: number, i: number): number {
    return this.u16[(off >> 1) + i]!;
  }
  u32at(off: number, i: number): number {
    return this.u32[(off >> 2) + i]!;
  }
  lo(off: number, i: number): number {
    return this.u32[(off >> 2) + i]!;
  }
  hi(off: number, i: number): number {
    return this.u32[(off >> 2) + i + 1]!;
  }
  /** A u64 field as a number: exact while below 2^53 (see fits53). */
  u64(off: number, i: number): number {
    const at = (off >> 2) + i;
    return this.u32[at + 1]! * TWO32 + this.u32[at]!;
  }

  type(off: number): number {
    return this.u8[off + I.type]!;
  }
  flags(off: number): number {
    return this.u8[off + I.flags]!;
  }
  ts(off: number): number {
    return this.u64(off, I.ts_ns);
  }
  cookie(off: number): number {
    return this.u64(off, I.cookie);
  }
  netns(off: number): number {
    return this.u32[(off >> 2) + I.netns]!;
  }
  cgroup(off: number): number {
    return this.u64(off, I.cgroup_id);
  }
  sport(off: number): number {
    return this.u16[(off >> 1) + I.sport]!;
  }
  dport(off: number): number {
    return this.u16[(off >> 1) + I.dport]!;
  }
  family(off: number): number {
    return this.u16[(off >> 1) + I.family]!;
  }
  oldState(off: number): number {
    return this.u8[off + I.old_state]!;
  }
  newState(off: number): number {
    return this.u8[off + I.new_state]!;
  }
  substate(off: number): number {
    return this.u8[off + I.substate]!;
  }
  errno(off: number): number {
    return this.i32[(off >> 2) + I.error]!;
  }
  /** entered_ns when the flags say it is known and it is not 0 (what decodeEvent calls enteredNs), else -1 */
  entered(off: number): number {
    if (!(this.u8[off + I.flags]! & EventFlags.ENTERED_KNOWN)) return -1;
    const v = this.u64(off, I.entered_ns);
    return v !== 0 ? v : -1;
  }
  /** expires_ns, 0 when none */
  expires(off: number): number {
    return this.u64(off, I.expires_ns);
  }
  ownerKnown(off: number): boolean {
    return (this.u8[off + I.flags]! & EventFlags.OWNER_KNOWN) !== 0;
  }
  ownerPid(off: number): number {
    return this.u32[(off >> 2) + I.owner_pid]!;
  }
  /** The local address as decodeEvent writes it (cached text: no string per record on a hit). */
  saddr(off: number): string {
    return address(this.buf, off + I.saddr, this.family(off));
  }
  daddr(off: number): string {
    return address(this.buf, off + I.daddr, this.family(off));
  }
  /** owner_comm as decodeEvent writes it (cached) */
  ownerComm(off: number): string {
    return comm(this.buf, off + I.owner_comm);
  }
  comm(off: number): string {
    return comm(this.buf, off + I.comm);
  }

  /** A transition to CLOSE (not a listener's): the record carries the connection's vital signs. */
  closing(off: number): boolean {
    return this.u8[off + I.type]! === EventType.TRANSITION && this.u8[off + I.new_state]! === TCP_CLOSE && this.u8[off + I.old_state]! !== TCP_LISTEN;
  }
  srtt(off: number): number {
    return this.u32[(off >> 2) + I.srtt_us]!;
  }
  retrans(off: number): number {
    return this.u32[(off >> 2) + I.total_retrans]!;
  }
  bytesAcked(off: number): number {
    return this.u64(off, I.bytes_acked);
  }
  bytesReceived(off: number): number {
    return this.u64(off, I.bytes_received);
  }

  /** Every 64-bit field of the record is below 2^53, so the number accessors are exact. */
  fits53(off: number): boolean {
    const u = this.u32;
    const w = off >> 2;
    return (
      u[w + I.ts_ns + 1]! < HI53 &&
      u[w + I.cookie + 1]! < HI53 &&
      u[w + I.entered_ns + 1]! < HI53 &&
      u[w + I.expires_ns + 1]! < HI53 &&
      u[w + I.cgroup_id + 1]! < HI53 &&
      u[w + I.bytes_acked + 1]! < HI53 &&
      u[w + I.bytes_received + 1]! < HI53
    );
  }

  /** The record decodes (what decodeEvent accepts): a known type and family. */
  valid(off: number): boolean {
    const t = this.u8[off + I.type]!;
    const f = this.u16[(off >> 1) + I.family]!;
    return KIND[t] !== undefined && (f === AF_INET || f === AF_INET6);
  }
}

/**
 * Walks a ring batch from bpf-ts-loader ([u32 length][u32 0][record][pad to 8] entries) and
 * calls onRecord(view, offset) for each record that decodes, exactly as decodeRingBatch frames,
 * accepts and counts them (a record of the wrong length or that does not decode is counted in
 * stats.malformed and skipped; a truncated batch stops there, counted as one).
 */
export function forEachRingRecord(batch: Buffer, view: RecordView, stats: DecodeStats, onRecord: (v: RecordView, off: number) => void): void {
  const v = view.of(batch);
  const u32 = v.u32;
  const end = batch.length;
  let off = 0;
  while (off < end) {
    if (end - off < RING_HEADER_BYTES) {
      stats.malformed++;
      return;
    }
    const len = off % 4 === 0 ? u32[off >> 2]! : batch.readUInt32LE(off);
    const body = off + RING_HEADER_BYTES;
    if (len === 0 || body + len > end) {
      stats.malformed++;
      return;
    }
    stats.records++;
    if (len === EVENT_SIZE && v.valid(body)) onRecord(v, body);
    else stats.malformed++;
    off = body + ((len + 7) & ~7);
  }
}


const big = (lo: number, hi: number): bigint => (hi < HI53 ? BigInt(hi * TWO32 + lo) : (BigInt(hi) << 32n) | BigInt(lo));

/**
 * One record seen as a TcpEvent without decoding it: each field is read when asked for (the
 * same values as decodeEvent's). For code that takes TcpEvents but reads few fields of each
 * (the detectors): one instance, re-pointed per record with `at`, never kept.
 */
export class RecordEvent implements TcpEvent {
  private v: RecordView = new RecordView();
  private off = 0;

  at(v: RecordView, off: number): this {
    this.v = v;
    this.off = off;
    return this;
  }

  get type(): EventKind {
    return KIND[this.v.type(this.off)]!;
  }
  get tsNs(): bigint {
    return big(this.v.lo(this.off, I.ts_ns), this.v.hi(this.off, I.ts_ns));
  }
  get cookie(): bigint {
    return big(this.v.lo(this.off, I.cookie), this.v.hi(this.off, I.cookie));
  }
  get enteredNs(): bigint | null {
    const { v, off } = this;
    if (!(v.flags(off) & EventFlags.ENTERED_KNOWN)) return null;
    const e = big(v.lo(off, I.entered_ns), v.hi(off, I.entered_ns));
    return e !== 0n ? e : null;
  }
  get dwellNs(): bigint | null {
    const e = this.enteredNs;
    const t = this.type;
    return e !== null && t !== 'timewait_start' && t !== 'snapshot' ? this.tsNs - e : null;
  }
  get expiresNs(): bigint | null {
    const e = big(this.v.lo(this.off, I.expires_ns), this.v.hi(this.off, I.expires_ns));
    return e !== 0n ? e : null;
  }
  get netns(): number {
    return this.v.netns(this.off);
  }
  get cgroupId(): bigint {
    return big(this.v.lo(this.off, I.cgroup_id), this.v.hi(this.off, I.cgroup_id));
  }
  get family(): 'inet' | 'inet6' {
    return this.v.family(this.off) === AF_INET ? 'inet' : 'inet6';
  }
  get saddr(): string {
    return this.v.saddr(this.off);
  }
  get sport(): number {
    return this.v.sport(this.off);
  }
  get daddr(): string {
    return this.v.daddr(this.off);
  }
  get dport(): number {
    return this.v.dport(this.off);
  }
  get pid(): number {
    return this.v.u32at(this.off, I.pid);
  }
  get comm(): string {
    return this.v.comm(this.off);
  }
  get ownerPid(): number | null {
    return this.v.ownerKnown(this.off) ? this.v.ownerPid(this.off) : null;
  }
  get ownerComm(): string | null {
    return this.v.ownerKnown(this.off) ? this.v.ownerComm(this.off) : null;
  }
  get oldState(): string | null {
    return this.v.type(this.off) === EventType.TRANSITION ? stateName(this.v.oldState(this.off)) : null;
  }
  get newState(): string {
    return stateName(this.v.newState(this.off));
  }
  get substate(): string | null {
    const t = this.v.type(this.off);
    const s = this.v.substate(this.off);
    return t === EventType.TIMEWAIT_START || t === EventType.TIMEWAIT_END || s !== 0 ? stateName(s) : null;
  }
  get reason(): TcpEvent['reason'] {
    const t = this.v.type(this.off);
    const r = this.v.u8at(this.off, I.reason);
    if (t === EventType.TIMEWAIT_END) return r === TwReason.EXPIRED ? 'expired' : r === TwReason.KILLED ? 'killed' : null;
    if (t === EventType.RESET) return r === RstDirection.SENT ? 'sent' : r === RstDirection.RECEIVED ? 'received' : null;
    return null;
  }
  get error(): string | null {
    const e = this.v.errno(this.off);
    return e > 0 ? errnoName(e) : null;
  }
  get actorIsOwner(): boolean {
    return (this.v.flags(this.off) & EventFlags.PROCESS_CTX) !== 0;
  }
  get child(): boolean {
    return (this.v.flags(this.off) & EventFlags.CHILD) !== 0;
  }
  get gap(): boolean {
    return (this.v.flags(this.off) & EventFlags.GAP) !== 0;
  }
  get flip(): boolean {
    return this.v.type(this.off) === EventType.TIMEWAIT_START && (this.v.flags(this.off) & EventFlags.FLIP) !== 0;
  }
  get vitals(): Vitals | null {
    const { v, off } = this;
    if (!v.closing(off)) return null;
    return { srttUs: v.srtt(off), totalRetrans: v.retrans(off), bytesAcked: v.bytesAcked(off), bytesReceived: v.bytesReceived(off) };
  }
  get resetBy(): ResetBy | null {
    return this.v.closing(this.off) ? resetBy(this.v.flags(this.off)) : null;
  }
}
