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
import type { Family } from '../decode/index.js';
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

export class LiveTable {
  private readonly slots = new Map<CookieKey, number>();
  private capacity = 0;
  private used = 0; // high-water mark of slot indices
  private freeSlots = new Int32Array(0);
  private freeCount = 0;

  // One row per slot.
  private cookies = new BigUint64Array(0);
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
    this.cookies = g(this.cookies, (n) => new BigUint64Array(n));
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
    return this.slots.get(key) ?? -1;
  }

  private count(netns: number, state: number, delta: number): void {
    let c = this.perNetns.get(netns);
    if (!c) this.perNetns.set(netns, (c = new Int32Array(STATE_SLOTS + 1)));
    c[state]! += delta;
    this.total[state]! += delta;
    // The extra last element is the namespace's total: an empty namespace is forgotten.
    if ((c[STATE_SLOTS]! += delta) === 0) this.perNetns.delete(netns);
  }

  /** Adds a socket; the caller has checked it is not in the table. */
  add(key: CookieKey, cookie: bigint, state: number, flags: number, enteredNs: number, src: SlotSource): number {
    let slot: number;
    if (this.freeCount > 0) slot = this.freeSlots[--this.freeCount]!;
    else {
      if (this.used === this.capacity) this.grow(this.capacity * 2);
      slot = this.used++;
    }
    this.slots.set(key, slot);
    this.cookies[slot] = cookie;
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

  /** Moves a socket to another state. */
  move(slot: number, state: number, flags: number, enteredNs: number): void {
    const netns = this.netns[slot]!;
    this.count(netns, this.states[slot]!, -1);
    this.states[slot] = state;
    this.flags[slot] = flags;
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

  private setOwner(slot: number, pid: number | null, comm: string | null): void {
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
    for (const [key, slot] of this.slots) fn(slot, key);
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
      cookie: this.cookies[slot]!,
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
