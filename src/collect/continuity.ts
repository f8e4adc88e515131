/**
 * Per-agent sequence continuity: which message numbers of one agent run (host, boot id, epoch)
 * have been counted. Pure: no I/O.
 *
 * This state is the collector's exactly-once gate. It lives in a JetStream KV bucket (see
 * kv.ts), not in a collector's memory, because JetStream delivers at least once: a message is
 * redelivered when its ack is lost or its collector dies before acking, and the redelivery may
 * go to another instance. Whoever marks a sequence number here first (a compare-and-set on the
 * key) counts the message; everyone else sees it as a duplicate.
 *
 * Agents number messages 1, 2, 3 … within an epoch with no gaps (src/agent.ts), but they reach
 * the collector out of order: a publish window re-sent after an outage, and several collector
 * instances pulling from the same consumer. So the state is a contiguous prefix (`upTo`) plus
 * the numbers seen above it (`above`, sorted); a hole below `maxSeq` is missing until it arrives.
 */

/** Loss counters of the agent (Header.drops), as the largest value seen in this run (they are cumulative per epoch). */
export type DropCounters = Record<string, number>;

/** What the collectors know about one agent run. Plain JSON (it is stored as such). */
export interface SeqState {
  host: string;
  bootId: string;
  epoch: number;
  /** every seq in 1..upTo has been counted */
  upTo: number;
  /** seqs > upTo + 1 that have been counted, ascending */
  above: number[];
  /** the largest seq counted */
  maxSeq: number;
  /** messages counted */
  messages: number;
  /** the lowest missing seq (upTo + 1) while there is a hole below maxSeq, else null */
  holeSeq: number | null;
  /** since when (Unix ms, collector clock) `holeSeq` has been missing */
  holeSinceMs: number | null;
  /** seqs declared lost because `above` outgrew its bound (see MAX_ABOVE) */
  abandoned: number;
  drops: DropCounters;
  /** Unix ms of the last update */
  updatedMs: number;
}

/**
 * Bound on `above`: past it, the lowest holes are declared lost and `upTo` jumps. A message
 * that arrives later than that is taken for a duplicate (and counted as such), which is why the
 * bound is far above anything a reordering window (64 in flight per agent) can produce.
 */
export const MAX_ABOVE = 65_536;

/** A fresh state for an agent run. */
export function newSeqState(host: string, bootId: string, epoch: number): SeqState {
  return { host, bootId, epoch, upTo: 0, above: [], maxSeq: 0, messages: 0, holeSeq: null, holeSinceMs: null, abandoned: 0, drops: {}, updatedMs: 0 };
}

/** The KV key of an agent run. Host tokens are subject tokens ([A-Za-z0-9_-]); boot ids are UUIDs. */
export function seqKey(host: string, bootId: string, epoch: number): string {
  return `seq.${host}.${bootId.replace(/[^A-Za-z0-9_-]/g, '_')}.${epoch}`;
}

/** True when seq has been counted already. */
export function hasSeen(s: SeqState, seq: number): boolean {
  if (seq <= s.upTo) return true;
  return binarySearch(s.above, seq) >= 0;
}

/**
 * Marks seqs as counted. Returns the new state (the input is not changed) and which of the
 * given seqs were new (each once, even if given twice); the rest are duplicates.
 */
export function markSeen(s: SeqState, seqs: readonly number[], drops: DropCounters, nowMs: number): { state: SeqState; fresh: Set<number> } {
  const fresh = new Set<number>();
  const above = [...s.above];
  let { upTo, maxSeq, messages, abandoned } = s;
  for (const seq of seqs) {
    if (!(Number.isSafeInteger(seq) && seq >= 1) || fresh.has(seq)) continue;
    if (seq <= upTo) continue;
    const i = binarySearch(above, seq);
    if (i >= 0) continue;
    above.splice(-i - 1, 0, seq);
    fresh.add(seq);
    messages++;
    if (seq > maxSeq) maxSeq = seq;
  }
  // Fold the contiguous run above upTo into it.
  let k = 0;
  while (k < above.length && above[k] === upTo + 1) {
    upTo++;
    k++;
  }
  above.splice(0, k);
  if (above.length > MAX_ABOVE) {
    const cut = above.length - MAX_ABOVE;
    const newUpTo = above[cut - 1]!;
    abandoned += newUpTo - upTo - cut;
    upTo = newUpTo;
    above.splice(0, cut);
    while (above.length && above[0] === upTo + 1) {
      upTo++;
      above.shift();
    }
  }
  const merged: DropCounters = { ...s.drops };
  for (const [k2, v] of Object.entries(drops)) if (v > (merged[k2] ?? 0)) merged[k2] = v;
  // The age of the lowest hole: a hole that is filled and replaced by a later one starts afresh,
  // so steady reordering between instances never ages into a reported gap.
  const holeSeq = above.length > 0 ? upTo + 1 : null;
  const holeSinceMs = holeSeq === null ? null : holeSeq === s.holeSeq ? (s.holeSinceMs ?? nowMs) : nowMs;
  return {
    state: { ...s, upTo, above, maxSeq, messages, abandoned, drops: merged, holeSeq, holeSinceMs, updatedMs: nowMs },
    fresh,
  };
}

/** Seqs below the largest counted one that have not arrived (yet), plus those abandoned. */
export function missingCount(s: SeqState): number {
  return s.maxSeq - s.upTo - s.above.length + s.abandoned;
}

/**
 * Missing seqs that have been missing for longer than `graceMs` (reordering and redelivery
 * settle well within it): what the collector reports as a gap.
 */
export function gapCount(s: SeqState, nowMs: number, graceMs: number): number {
  const holes = s.maxSeq - s.upTo - s.above.length;
  const settled = s.holeSinceMs !== null && nowMs - s.holeSinceMs >= graceMs ? holes : 0;
  return settled + s.abandoned;
}

function binarySearch(a: readonly number[], v: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const x = a[mid]!;
    if (x === v) return mid;
    if (x < v) lo = mid + 1;
    else hi = mid - 1;
  }
  return -lo - 1;
}
