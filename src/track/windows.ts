/** Counting events per key over a sliding time window, in bounded memory. Pure. */

/** Sub-buckets per window: the window slides in steps of window/BUCKETS. */
const BUCKETS = 6;

/**
 * Per-key event counts over the last `windowNs`, in BUCKETS steps (so a sum covers between
 * (BUCKETS−1)/BUCKETS and all of the window). At most `maxKeys` keys; events for further keys
 * are counted in `dropped`, never silently.
 */
export class SlidingCounter<K> {
  private readonly keys = new Map<K, { epochs: Float64Array; counts: Float64Array }>();
  private readonly bucketNs: number;
  dropped = 0;

  constructor(
    windowNs: bigint,
    private readonly maxKeys = 10_000,
  ) {
    this.bucketNs = Math.max(1, Number(windowNs) / BUCKETS);
  }

  add(key: K, tsNs: bigint, n = 1): void {
    let k = this.keys.get(key);
    if (!k) {
      if (this.keys.size >= this.maxKeys) {
        this.dropped += n;
        return;
      }
      this.keys.set(key, (k = { epochs: new Float64Array(BUCKETS).fill(-1), counts: new Float64Array(BUCKETS) }));
    }
    const epoch = Math.floor(Number(tsNs) / this.bucketNs);
    const i = epoch % BUCKETS;
    if (k.epochs[i] !== epoch) {
      // An event older than what this bucket now holds belongs to a window long gone.
      if (k.epochs[i]! > epoch) return;
      k.epochs[i] = epoch;
      k.counts[i] = 0;
    }
    k.counts[i]! += n;
  }

  /** Events for a key within the window ending at nowNs. */
  sum(key: K, nowNs: bigint): number {
    const k = this.keys.get(key);
    return k ? this.sumOf(k, Math.floor(Number(nowNs) / this.bucketNs)) : 0;
  }

  private sumOf(k: { epochs: Float64Array; counts: Float64Array }, now: number): number {
    let s = 0;
    for (let i = 0; i < BUCKETS; i++) {
      const e = k.epochs[i]!;
      if (e > now - BUCKETS && e <= now) s += k.counts[i]!;
    }
    return s;
  }

  /** Every key with its count in the window ending at nowNs; keys with nothing left are forgotten. */
  sums(nowNs: bigint): Map<K, number> {
    const now = Math.floor(Number(nowNs) / this.bucketNs);
    const out = new Map<K, number>();
    for (const [key, k] of this.keys) {
      const s = this.sumOf(k, now);
      if (s > 0) out.set(key, s);
      else if (k.epochs.every((e) => e <= now - BUCKETS)) this.keys.delete(key);
    }
    return out;
  }

  /** The window length this counter covers, in seconds (for rates). */
  get windowS(): number {
    return (this.bucketNs * BUCKETS) / 1e9;
  }
}
