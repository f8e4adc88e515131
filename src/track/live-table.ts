/**
 * The live socket table: one compact slot per socket the kernel has now, keyed by socket cookie.
 *
 * Built for a million live sockets: a slot is a row across typed arrays (≈52 bytes) instead of
 * an object per socket (≈300 bytes with its strings), addresses and comms are interned with
 * reference counts (a host has few local addresses and program names), and freed slots are
 * reused, so memory follows the peak number of live sockets and stays flat under churn.
 * Counts per state and namespace are kept incrementally; nothing here ever goes negative,
 * since a count is only decremented for a slot that holds it.
 */
import { AF_INET6, RECORD_INDEX as RI, type Family, type RecordView } from '../decode/index.js';
import type { SocketIdentity } from './types.js';
import { STATE_SLOTS, stateName } from './states.js';

/** Slot flags (one byte per slot). */
export const SlotFlag = {
  /** held by a timewait sock; the state is its substate */
  TIMEWAIT: 1,
  /** the entry time is exact (kernel-stamped); otherwise it is when we first knew the state */
  ENTERED_EXACT: 2,
  /** the timewait began in substate FIN_WAIT2 (an orphan) */
  TW_FROM_FIN_WAIT2: 4,
  /** cloned from a listener: sport is the listening port */
  ACCEPTED: 8,
  /** a request sock (NEW_SYN_RECV) from a snapshot: no event will ever end it */
  REQUEST: 16,
  INET6: 32,
  /** a timewait that flipped from FIN_WAIT2 to TIME_WAIT: entered is the flip, its FIN_WAIT2 phase is out */
  FLIPPED: 64,
} as const;

/** Strings shared by many slots, freed when the last slot lets go. Index 0 is "none". */
class Interner {
  private readonly index = new Map<string, number>();
  private readonly values: (string | undefined)[] = [undefined];
  private readonly refs: number[] = [0];
  private readonly free: number[] = [];

  acquire(s: string): number {
    let i = this.index.get(s);
    if (i === undefined) {
      i = this.free.pop() ?? this.values.length;
      this.values[i] = s;
      this.refs[i] = 0;
      this.index.set(s, i);
    }
    this.refs[i]!++;
    return i;
  }

  release(i: number): void {
    if (i === 0) return;
    if (--this.refs[i]! === 0) {
      this.index.delete(this.values[i]!);
      this.values[i] = undefined;
      this.free.push(i);
    }
  }

  get(i: number): string | null {
    return i === 0 ? null : (this.values[i] ?? null);
  }

  get size(): number {
    return this.index.size;
  }
}

/** What a slot is created or refreshed from (a decoded event has all of it). */
export type SlotSource = Omit<SocketIdentity, 'cookie'>;

/** Cookies are a global 64-bit counter that starts at 1, so in practice they fit a double exactly. */
export type CookieKey = number | bigint;
export const cookieKey = (cookie: bigint): CookieKey => (cookie <= 9007199254740991n ? Number(cookie) : cookie);

const INITIAL_CAPACITY = 1024;
const TWO32 = 4294967296;

/**
 * Cookie → slot, open addressing with linear probing over typed arrays: no Map entry (and no
 * boxed number for a cookie past 2^31) per socket. Cookies past 2^53 (bigint keys; not seen in
 * practice, the kernel counts cookies from 1) go to a Map beside it. Deletion shifts the
 * following entries back, so no tombstones build up under churn.
 */
class CookieIndex {
  private keys = new Float64Array(0);
  private vals = new Int32Array(0);
  private mask = 0;
  private shift = 0;
  private count = 0;
  private readonly big = new Map<CookieKey, number>();

  constructor() {
    this.rehash(2 * INITIAL_CAPACITY);
  }

  get size(): number {
    return this.count + this.big.size;
  }

  private home(k: number): number {
    const lo = k >>> 0;
    const hi = (k / TWO32) | 0;
    return (Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) >>> this.shift) & this.mask;
  }

  private rehash(cap: number): void {
    const oldKeys = this.keys;
    const oldVals = this.vals;
    this.keys = new Float64Array(cap);
    this.vals = new Int32Array(cap);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
    this.count = 0;
    for (let i = 0; i < oldKeys.length; i++) if (oldKeys[i] !== 0) this.set(oldKeys[i]!, oldVals[i]!);
  }

  get(key: CookieKey): number {
    if (typeof key !== 'number' || key === 0) return this.big.get(key) ?? -1;
    const keys = this.keys;
    for (let i = this.home(key); ; i = (i + 1) & this.mask) {
      const k = keys[i]!;
      if (k === key) return this.vals[i]!;
      if (k === 0) return -1;
    }
  }

  set(key: CookieKey, slot: number): void {
    if (typeof key !== 'number' || key === 0) {
      this.big.set(key, slot);
      return;
    }
    if (2 * (this.count + 1) > this.keys.length) this.rehash(2 * this.keys.length);
    const keys = this.keys;
    for (let i = this.home(key); ; i = (i + 1) & this.mask) {
      const k = keys[i]!;
      if (k === key || k === 0) {
        if (k === 0) this.count++;
        keys[i] = key;
        this.vals[i] = slot;
        return;
      }
    }
  }

  delete(key: CookieKey): void {
    if (typeof key !== 'number' || key === 0) {
      this.big.delete(key);
      return;
    }
    const keys = this.keys;
    const mask = this.mask;
    let i = this.home(key);
    for (; ; i = (i + 1) & mask) {
      const k = keys[i]!;
      if (k === key) break;
      if (k === 0) return;
    }
    // Backward-shift: move up every later entry of the run that may sit in the freed place.
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const k = keys[j]!;
      if (k === 0) break;
      const h = this.home(k);
      // k may move to i when its home is not cyclically within (i, j]
      if (i <= j ? h <= i || h > j : h <= i && h > j) {
        keys[i] = k;
        this.vals[i] = this.vals[j]!;
        i = j;
      }
    }
    keys[i] = 0;
    this.count--;
  }

  /** Every entry, collected first: the callback may delete. */
  entries(): [CookieKey, number][] {
    const out: [CookieKey, number][] = [];
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] !== 0) out.push([this.keys[i]!, this.vals[i]!]);
    for (const e of this.big) out.push(e);
    return out;
  }
}

export class LiveTable {
  private readonly slots = new CookieIndex();
  private capacity = 0;
  private used = 0; // high-water mark of slot indices
  private freeSlots = new Int32Array(0);
  private freeCount = 0;

  // One row per slot.
  private cookieLo = new Uint32Array(0);
  private cookieHi = new Uint32Array(0);
  private states = new Uint8Array(0);
  private flags = new Uint8Array(0);
  private netns = new Uint32Array(0);
  private enteredNs = new Float64Array(0);
  private cgroups = new Float64Array(0);
  private ownerPids = new Uint32Array(0);
  private comms = new Uint32Array(0);
  private saddrs = new Uint32Array(0);
  private daddrs = new Uint32Array(0);
  private sports = new Uint16Array(0);
  private dports = new Uint16Array(0);

  private readonly addrs = new Interner();
  private readonly commNames = new Interner();
  readonly total = new Int32Array(STATE_SLOTS);
  readonly perNetns = new Map<number, Int32Array>();

  constructor() {
    this.grow(INITIAL_CAPACITY);
  }

  get size(): number {
    return this.slots.size;
  }

  private grow(to: number): void {
    const g = <T extends { length: number; set(a: ArrayLike<number | bigint>): void }>(old: T, make: (n: number) => T): T => {
      const a = make(to);
      a.set(old as unknown as ArrayLike<number>);
      return a;
    };
    this.cookieLo = g(this.cookieLo, (n) => new Uint32Array(n));
    this.cookieHi = g(this.cookieHi, (n) => new Uint32Array(n));
    this.states = g(this.states, (n) => new Uint8Array(n));
    this.flags = g(this.flags, (n) => new Uint8Array(n));
    this.netns = g(this.netns, (n) => new Uint32Array(n));
    this.enteredNs = g(this.enteredNs, (n) => new Float64Array(n));
    this.cgroups = g(this.cgroups, (n) => new Float64Array(n));
    this.ownerPids = g(this.ownerPids, (n) => new Uint32Array(n));
    this.comms = g(this.comms, (n) => new Uint32Array(n));
    this.saddrs = g(this.saddrs, (n) => new Uint32Array(n));
    this.daddrs = g(this.daddrs, (n) => new Uint32Array(n));
    this.sports = g(this.sports, (n) => new Uint16Array(n));
    this.dports = g(this.dports, (n) => new Uint16Array(n));
    this.freeSlots = g(this.freeSlots, (n) => new Int32Array(n));
    this.capacity = to;
  }

  /** The slot of a socket, or -1. */
  find(key: CookieKey): number {
    return this.slots.get(key);
  }

  private count(netns: number, state: number, delta: number): void {
    let c = this.perNetns.get(netns);
    if (!c) this.perNetns.set(netns, (c = new Int32Array(STATE_SLOTS + 1)));
    c[state]! += delta;
    this.total[state]! += delta;
    // The extra last element is the namespace's total: an empty namespace is forgotten.
    if ((c[STATE_SLOTS]! += delta) === 0) this.perNetns.delete(netns);
  }

  private newSlot(key: CookieKey): number {
    let slot: number;
    if (this.freeCount > 0) slot = this.freeSlots[--this.freeCount]!;
    else {
      if (this.used === this.capacity) this.grow(this.capacity * 2);
      slot = this.used++;
    }
    this.slots.set(key, slot);
    return slot;
  }

  /** Adds a socket; the caller has checked it is not in the table. */
  add(key: CookieKey, cookie: bigint, state: number, flags: number, enteredNs: number, src: SlotSource): number {
    const slot = this.newSlot(key);
    this.cookieLo[slot] = Number(cookie & 0xffffffffn);
    this.cookieHi[slot] = Number((cookie >> 32n) & 0xffffffffn);
    this.states[slot] = state;
    this.flags[slot] = flags | (src.family === 'inet6' ? SlotFlag.INET6 : 0);
    this.netns[slot] = src.netns;
    this.enteredNs[slot] = enteredNs;
    this.cgroups[slot] = Number(src.cgroupId);
    this.ownerPids[slot] = 0;
    this.comms[slot] = 0;
    this.saddrs[slot] = this.addrs.acquire(src.saddr);
    this.daddrs[slot] = this.addrs.acquire(src.daddr);
    this.sports[slot] = src.sport;
    this.dports[slot] = src.dport;
    this.setOwner(slot, src.ownerPid, src.ownerComm);
    this.count(src.netns, state, 1);
    return slot;
  }

  /** `add` from the kernel record at v/off (the agent's path: the same slot as add(decodeEvent(record))). */
  addRecord(key: CookieKey, v: RecordView, off: number, state: number, flags: number, enteredNs: number): number {
    const slot = this.newSlot(key);
    const netns = v.netns(off);
    this.cookieLo[slot] = v.lo(off, RI.cookie);
    this.cookieHi[slot] = v.hi(off, RI.cookie);
    this.states[slot] = state;
    this.flags[slot] = flags | (v.family(off) === AF_INET6 ? SlotFlag.INET6 : 0);
    this.netns[slot] = netns;
    this.enteredNs[slot] = enteredNs;
    this.cgroups[slot] = v.cgroup(off);
    this.ownerPids[slot] = 0;
    this.comms[slot] = 0;
    this.saddrs[slot] = this.addrs.acquire(v.saddr(off));
    this.daddrs[slot] = this.addrs.acquire(v.daddr(off));
    this.sports[slot] = v.sport(off);
    this.dports[slot] = v.dport(off);
    if (v.ownerKnown(off)) this.setOwner(slot, v.ownerPid(off), v.ownerComm(off));
    this.count(netns, state, 1);
    return slot;
  }

  /** Moves a socket to another state, with new flags (its family, which never changes, is kept). */
  move(slot: number, state: number, flags: number, enteredNs: number): void {
    const netns = this.netns[slot]!;
    this.count(netns, this.states[slot]!, -1);
    this.states[slot] = state;
    // The family is the socket's for good: callers pass the state's flags, which lack it
    // (keeping it here fixed IPv6 sockets coming out as inet once in timewait; found by the fast-path test).
    this.flags[slot] = flags | (this.flags[slot]! & SlotFlag.INET6);
    this.enteredNs[slot] = enteredNs;
    this.count(netns, state, 1);
  }

  /**
   * Refreshes what may change over a socket's life: its source port (0 before connect binds
   * it), owner and cgroup. Addresses too: a socket's first transition (CLOSE→SYN_SENT) may
   * not have its local address yet.
   */
  refresh(slot: number, src: SlotSource): void {
    if (src.cgroupId !== 0n) this.cgroups[slot] = Number(src.cgroupId);
    // Addresses are fixed once the socket is bound (sport 0 means not yet: CLOSE→SYN_SENT).
    if (this.sports[slot] !== 0 || src.sport === 0) {
      this.setOwner(slot, src.ownerPid, src.ownerComm);
      return;
    }
    this.sports[slot] = src.sport;
    if (this.addrs.get(this.saddrs[slot]!) !== src.saddr) {
      this.addrs.release(this.saddrs[slot]!);
      this.saddrs[slot] = this.addrs.acquire(src.saddr);
    }
    if (this.addrs.get(this.daddrs[slot]!) !== src.daddr) {
      this.addrs.release(this.daddrs[slot]!);
      this.daddrs[slot] = this.addrs.acquire(src.daddr);
    }
    this.dports[slot] = src.dport;
    this.setOwner(slot, src.ownerPid, src.ownerComm);
  }

  /** `refresh` from the kernel record at v/off. */
  refreshRecord(slot: number, v: RecordView, off: number): void {
    const cgroup = v.cgroup(off);
    if (cgroup !== 0) this.cgroups[slot] = cgroup;
    const sport = v.sport(off);
    if (this.sports[slot] === 0 && sport !== 0) {
      this.sports[slot] = sport;
      const saddr = v.saddr(off);
      if (this.addrs.get(this.saddrs[slot]!) !== saddr) {
        this.addrs.release(this.saddrs[slot]!);
        this.saddrs[slot] = this.addrs.acquire(saddr);
      }
      const daddr = v.daddr(off);
      if (this.addrs.get(this.daddrs[slot]!) !== daddr) {
        this.addrs.release(this.daddrs[slot]!);
        this.daddrs[slot] = this.addrs.acquire(daddr);
      }
      this.dports[slot] = v.dport(off);
    }
    if (v.ownerKnown(off)) this.setOwner(slot, v.ownerPid(off), v.ownerComm(off));
  }

  /** The socket's owner (a process and its name); null leaves it as it is. */
  setOwner(slot: number, pid: number | null, comm: string | null): void {
    if (pid === null || (pid === this.ownerPids[slot] && comm === this.commNames.get(this.comms[slot]!))) return;
    this.ownerPids[slot] = pid;
    const c = comm ? this.commNames.acquire(comm) : 0;
    this.commNames.release(this.comms[slot]!);
    this.comms[slot] = c;
  }

  remove(key: CookieKey, slot: number): void {
    this.slots.delete(key);
    this.count(this.netns[slot]!, this.states[slot]!, -1);
    this.addrs.release(this.saddrs[slot]!);
    this.addrs.release(this.daddrs[slot]!);
    this.commNames.release(this.comms[slot]!);
    this.saddrs[slot] = this.daddrs[slot] = this.comms[slot] = 0;
    this.states[slot] = 0;
    this.freeSlots[this.freeCount++] = slot;
  }

  cookie(slot: number): bigint {
    const lo = this.cookieLo[slot]!;
    const hi = this.cookieHi[slot]!;
    return hi < 0x200000 ? BigInt(hi * TWO32 + lo) : (BigInt(hi) << 32n) | BigInt(lo);
  }
  /** The cookie as a number (exact below 2^53: what cookieKey gives for it then). */
  cookieNumber(slot: number): number {
    return this.cookieHi[slot]! * TWO32 + this.cookieLo[slot]!;
  }
  commId(slot: number): number {
    return this.comms[slot]!;
  }
  isInet6(slot: number): boolean {
    return (this.flags[slot]! & SlotFlag.INET6) !== 0;
  }

  state(slot: number): number {
    return this.states[slot]!;
  }
  flagsOf(slot: number): number {
    return this.flags[slot]!;
  }
  entered(slot: number): number {
    return this.enteredNs[slot]!;
  }
  /** The socket's cgroup v2 id (ids stay far below 2^53: inode numbers). */
  cgroupOf(slot: number): number {
    return this.cgroups[slot]!;
  }
  netnsOf(slot: number): number {
    return this.netns[slot]!;
  }
  sport(slot: number): number {
    return this.sports[slot]!;
  }
  dport(slot: number): number {
    return this.dports[slot]!;
  }
  saddrId(slot: number): number {
    return this.saddrs[slot]!;
  }
  daddrId(slot: number): number {
    return this.daddrs[slot]!;
  }
  ownerPid(slot: number): number | null {
    return this.ownerPids[slot] || null;
  }
  ownerComm(slot: number): string | null {
    return this.commNames.get(this.comms[slot]!);
  }
  address(id: number): string {
    return this.addrs.get(id) ?? '';
  }

  /** Calls fn for every live slot (a linear pass over the arrays: ~ms per 100k sockets). */
  forEach(fn: (slot: number, key: CookieKey) => void): void {
    for (const [key, slot] of this.slots.entries()) fn(slot, key);
  }

  /** Every live slot with its state; cheaper than forEach when only a few states matter. */
  scan(fn: (slot: number, state: number) => void): void {
    const states = this.states;
    for (let slot = 0; slot < this.used; slot++) {
      const st = states[slot]!;
      if (st !== 0) fn(slot, st);
    }
  }

  /** The identity of the socket in a slot, as plain data. */
  identity(slot: number) {
    return {
      cookie: this.cookie(slot),
      netns: this.netns[slot]!,
      cgroupId: BigInt(this.cgroups[slot]!),
      family: (this.flags[slot]! & SlotFlag.INET6 ? 'inet6' : 'inet') as Family,
      saddr: this.address(this.saddrs[slot]!),
      sport: this.sports[slot]!,
      daddr: this.address(this.daddrs[slot]!),
      dport: this.dports[slot]!,
      ownerPid: this.ownerPid(slot),
      ownerComm: this.ownerComm(slot),
    };
  }

  /** Counts as a name → count record, zeros left out. */
  static named(counts: Int32Array): Record<string, number> {
    const out: Record<string, number> = {};
    for (let state = 1; state < STATE_SLOTS; state++) {
      const n = counts[state]!;
      if (n !== 0) out[stateName(state)] = n;
    }
    return out;
  }

  /** Interned strings held (for the memory measurement). */
  get internedStrings(): number {
    return this.addrs.size + this.commNames.size;
  }
}
