/**
 * Per-agent sequence continuity: which message numbers of one agent run (host, boot id, epoch)
 * have arrived, which are missing, and which were declared lost. Pure: no I/O, clock passed in.
 *
 * Agents number messages 1, 2, 3 … within an epoch with no gaps (src/agent/agent.ts), but they
 * reach the collector out of order (a spool re-sent after an outage, several instances pulling
 * from one consumer) and some never come (spool drops, stream discards, an outage longer than the
 * stream keeps). So a run is a contiguous prefix (`upTo`: every seq up to it arrived or was
 * declared lost) plus a few disjoint ranges above it. The lowest hole (upTo + 1) is reported
 * once it has been missing for the grace, **declared lost**, and `upTo` jumps past it: a hole
 * costs one record when it is declared and nothing afterwards (the former design kept every seq
 * above a hole in a list that grew to 65,536 numbers and was rewritten for every message).
 *
 * The exactly-once gate is the store (store.ts: a message is new when its key was not stored);
 * without a store, `mark` is the gate of a single collector instance.
 */

/** Loss counters of the agent (Header.drops), as the largest value seen in this run (they are cumulative per epoch). */
export type DropCounters = Record<string, number>;

/** A hole declared lost: seqs fromSeq..toSeq of one run never arrived within the grace. */
export interface DeclaredHole {
  host: string;
  bootId: string;
  epoch: number;
  fromSeq: number;
  toSeq: number;
  /** when it had been missing since (Unix ms, collector clock) */
  sinceMs: number;
  declaredAtMs: number;
}

/** What `mark` found a seq to be. */
export type MarkResult = 'new' | 'duplicate' | 'late';

/**
 * Past this many disjoint ranges above the prefix (every other message missing, for a long
 * time), the lowest holes are declared lost at once: memory per run stays bounded whatever
 * arrives.
 */
export const MAX_RANGES = 1024;
/** Declared holes remembered per run, so that a late arrival is told from a duplicate. */
const MAX_REMEMBERED_HOLES = 32;
/** Seqs from before a restart remembered per run (no store), see `baseline`. */
const MAX_REMEMBERED_BELOW = 4096;

/** One agent run's continuity. */
export class RunContinuity {
  /** every seq in 1..upTo arrived or was declared lost */
  upTo = 0;
  /** disjoint ranges of arrived seqs above upTo + 1, ascending, flat: lo0, hi0, lo1, hi1, … */
  private ranges: number[] = [];
  /** holes declared lost (the last MAX_REMEMBERED_HOLES), flat lo, hi pairs; late arrivals split them */
  private declared: number[] = [];
  maxSeq = 0;
  /** messages that arrived (once each) */
  messages = 0;
  /** seqs declared lost */
  lost = 0;
  /** seqs that arrived after they had been declared lost (counted in `messages` too) */
  late = 0;
  /** since when (Unix ms) the lowest hole has been missing; null while there is none */
  holeSinceMs: number | null = null;
  drops: DropCounters = {};
  updatedMs = 0;

  constructor(
    readonly host: string,
    readonly bootId: string,
    readonly epoch: number,
  ) {}

  /** seqs below this one arrived before this process knew the run (see `baseline`) */
  private unknownBelow = 0;
  private seenBelow: Set<number> | null = null;

  /**
   * Starts the run at what the store says: every seq up to `upTo` arrived or was declared lost
   * (`lost` of them).
   */
  load(upTo: number, lost: number): void {
    this.upTo = Math.max(this.upTo, upTo);
    this.maxSeq = Math.max(this.maxSeq, upTo);
    this.lost = lost;
    this.fold();
  }

  /**
   * Without a store, a run first seen at seq > 1 (this collector restarted) starts there: what
   * came before was counted by an earlier life of the collector, or is still on its way (the
   * durable consumer redelivers what was never acked). Those earlier seqs are counted once each
   * if they come (up to MAX_REMEMBERED_BELOW of them), never reported as a hole.
   */
  baseline(firstSeq: number): void {
    this.upTo = firstSeq - 1;
    this.unknownBelow = firstSeq;
    this.seenBelow = new Set();
  }

  /** True when seq arrived already (or lies in a declared hole and did not arrive late). */
  has(seq: number): boolean {
    if (seq <= this.upTo) return !this.inDeclared(seq);
    return this.rangeIndex(seq) >= 0;
  }

  /**
   * Records that seq arrived. `known` = 'new' when the caller's gate (the store) already knows
   * it is the first arrival; then a seq at or below the prefix is a late one.
   */
  mark(seq: number, nowMs: number, known?: 'new'): MarkResult {
    if (!(Number.isSafeInteger(seq) && seq >= 1)) return 'duplicate';
    this.updatedMs = nowMs;
    if (seq <= this.upTo) {
      if (seq < this.unknownBelow && this.seenBelow && !this.inDeclared(seq)) {
        if (this.seenBelow.has(seq) || this.seenBelow.size >= MAX_REMEMBERED_BELOW) return 'duplicate';
        this.seenBelow.add(seq);
        this.messages++;
        return 'new';
      }
      const late = this.takeDeclared(seq) || known === 'new';
      if (!late) return 'duplicate';
      this.late++;
      this.messages++;
      return 'late';
    }
    const holeBefore = this.ranges.length > 0 ? this.upTo + 1 : 0;
    if (!this.insert(seq)) return 'duplicate';
    this.messages++;
    if (seq > this.maxSeq) this.maxSeq = seq;
    this.fold();
    const holeAfter = this.ranges.length > 0 ? this.upTo + 1 : 0;
    // The age of the lowest hole: a hole that is filled and replaced by a later one starts
    // afresh, so steady reordering between instances never ages into a reported gap.
    if (holeAfter === 0) this.holeSinceMs = null;
    else if (holeAfter !== holeBefore || this.holeSinceMs === null) this.holeSinceMs = nowMs;
    if (this.ranges.length > 2 * MAX_RANGES) this.declareLowest(nowMs);
    return 'new';
  }

  /** Merges the agent's loss counters (cumulative: the largest value wins). */
  mergeDrops(drops: DropCounters): void {
    for (const [k, v] of Object.entries(drops)) if (v > (this.drops[k] ?? 0)) this.drops[k] = v;
  }

  /** Seqs below the largest one that have not arrived and were not declared lost (yet). */
  pending(): number {
    let arrivedAbove = 0;
    for (let i = 0; i < this.ranges.length; i += 2) arrivedAbove += this.ranges[i + 1]! - this.ranges[i]! + 1;
    return this.maxSeq - this.upTo - arrivedAbove;
  }

  /** Lost for good: declared, less those that came late. */
  missing(): number {
    return this.lost - this.late;
  }

  /**
   * Declares the lowest hole lost when it has been missing for graceMs (and then the next,
   * which starts its own grace now). Returns the holes declared by this call.
   */
  settle(nowMs: number, graceMs: number): DeclaredHole[] {
    const out: DeclaredHole[] = [];
    while (this.ranges.length > 0 && this.holeSinceMs !== null && nowMs - this.holeSinceMs >= graceMs) {
      const since = this.holeSinceMs;
      const h = this.declareLowest(nowMs);
      out.push({ ...h, sinceMs: since });
      this.holeSinceMs = this.ranges.length > 0 ? nowMs : null;
    }
    return out;
  }

  private declareLowest(nowMs: number): DeclaredHole {
    const from = this.upTo + 1;
    const to = this.ranges[0]! - 1;
    this.lost += to - from + 1;
    this.declared.push(from, to);
    if (this.declared.length > 2 * MAX_REMEMBERED_HOLES) this.declared.splice(0, 2);
    this.upTo = this.ranges[1]!;
    this.ranges.splice(0, 2);
    return { host: this.host, bootId: this.bootId, epoch: this.epoch, fromSeq: from, toSeq: to, sinceMs: nowMs, declaredAtMs: nowMs };
  }

  private inDeclared(seq: number): boolean {
    for (let i = 0; i < this.declared.length; i += 2) if (seq >= this.declared[i]! && seq <= this.declared[i + 1]!) return true;
    return false;
  }

  /** Removes seq from the declared holes; true when it was in one. */
  private takeDeclared(seq: number): boolean {
    const d = this.declared;
    for (let i = 0; i < d.length; i += 2) {
      const lo = d[i]!;
      const hi = d[i + 1]!;
      if (seq < lo || seq > hi) continue;
      const parts: number[] = [];
      if (lo < seq) parts.push(lo, seq - 1);
      if (seq < hi) parts.push(seq + 1, hi);
      d.splice(i, 2, ...parts);
      return true;
    }
    return false;
  }

  /** Index (even) of the range holding seq, or -(insertion index) - 1. */
  private rangeIndex(seq: number): number {
    const r = this.ranges;
    let lo = 0;
    let hi = r.length / 2 - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (seq < r[2 * mid]!) hi = mid - 1;
      else if (seq > r[2 * mid + 1]!) lo = mid + 1;
      else return 2 * mid;
    }
    return -2 * lo - 1;
  }

  /** Adds seq (above upTo) to the ranges; false when it was there. */
  private insert(seq: number): boolean {
    const r = this.ranges;
    // The common cases first: the next seq after the last range, or the next after the prefix.
    const n = r.length;
    if (n > 0 && seq === r[n - 1]! + 1) {
      r[n - 1] = seq;
      return true;
    }
    const i = this.rangeIndex(seq);
    if (i >= 0) return false;
    const at = -i - 1; // even: ranges before it end below seq
    const joinsLeft = at >= 2 && r[at - 1]! === seq - 1;
    const joinsRight = at < n && r[at]! === seq + 1;
    if (joinsLeft && joinsRight) r.splice(at - 1, 2);
    else if (joinsLeft) r[at - 1] = seq;
    else if (joinsRight) r[at] = seq;
    else r.splice(at, 0, seq, seq);
    return true;
  }

  /** Folds a range that starts right after the prefix into it. */
  private fold(): void {
    if (this.ranges.length > 0 && this.ranges[0] === this.upTo + 1) {
      this.upTo = this.ranges[1]!;
      this.ranges.splice(0, 2);
    }
  }

  /** Plain data, for status, tests and JSON. */
  toJSON(): RunState {
    return {
      host: this.host,
      bootId: this.bootId,
      epoch: this.epoch,
      upTo: this.upTo,
      ranges: this.ranges.length / 2,
      maxSeq: this.maxSeq,
      messages: this.messages,
      pending: this.pending(),
      lost: this.lost,
      late: this.late,
      holeSinceMs: this.holeSinceMs,
      drops: { ...this.drops },
      updatedMs: this.updatedMs,
    };
  }
}

/** A run's continuity as plain data. */
export interface RunState {
  host: string;
  bootId: string;
  epoch: number;
  upTo: number;
  /** disjoint ranges of arrived seqs above the prefix */
  ranges: number;
  maxSeq: number;
  messages: number;
  /** missing below maxSeq, not declared lost yet */
  pending: number;
  lost: number;
  late: number;
  holeSinceMs: number | null;
  drops: DropCounters;
  updatedMs: number;
}

/** Every agent run's continuity, keyed by (host, boot id, epoch). */
export class Continuity {
  private readonly runs = new Map<string, RunContinuity>();

  /** The run's state, created on first sight. */
  run(host: string, bootId: string, epoch: number): RunContinuity {
    const key = `${host}\t${bootId}\t${epoch}`;
    let r = this.runs.get(key);
    if (!r) this.runs.set(key, (r = new RunContinuity(host, bootId, epoch)));
    return r;
  }

  /** The run's state if this process knows the run. */
  get(host: string, bootId: string, epoch: number): RunContinuity | undefined {
    return this.runs.get(`${host}\t${bootId}\t${epoch}`);
  }

  all(): IterableIterator<RunContinuity> {
    return this.runs.values();
  }

  get size(): number {
    return this.runs.size;
  }

  /** Declares every hole older than the grace; forgets runs complete and idle for idleMs. */
  settle(nowMs: number, graceMs: number, idleMs = 86_400_000): DeclaredHole[] {
    const out: DeclaredHole[] = [];
    for (const [k, r] of this.runs) {
      out.push(...r.settle(nowMs, graceMs));
      if (r.pending() === 0 && nowMs - r.updatedMs > idleMs) this.runs.delete(k);
    }
    return out;
  }

  /** Lost seqs per host (declared, less late arrivals), over all its runs. */
  missingByHost(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.runs.values()) out[r.host] = (out[r.host] ?? 0) + r.missing();
    return out;
  }

  /** Missing seqs not declared yet, per host. */
  pendingByHost(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.runs.values()) out[r.host] = (out[r.host] ?? 0) + r.pending();
    return out;
  }
}
