/**
 * Dwell-time distributions: HDR histograms (hdr-histogram-js, its pure-JS implementation) per
 * state, by network namespace, by cgroup and by listening port.
 *
 * Why HDR: two histograms built with the same settings merge by adding their bucket counts, so a
 * fleet-wide merge is exactly the histogram of all the values (no sketch-of-sketches error);
 * every value is kept within a bounded relative error (2 significant digits: < 1 %) from 1 µs
 * to days; and the compressed V2 encoding (the one HdrHistogram's Java, Go, Rust and C ports
 * read too) of a typical dwell histogram is well under 1 KiB. WASM records ~5× faster but its
 * memory must be freed by hand (destroy()) and never shrinks; the JS one is garbage-collected.
 */
import * as hdr from 'hdr-histogram-js';
type Histogram = hdr.Histogram;
import { stateName, stateValue } from './states.js';

/** Values are recorded in microseconds: dwell times below 1 µs are noise on the event path. */
export const HISTOGRAM_UNIT = 'us';
/** Decimal digits of precision; every histogram of a fleet must use the same for exact merges. */
export const SIGNIFICANT_DIGITS = 2;

/** Which breakdown a histogram belongs to. `listen_port`: accepted sockets, by their listener's port. */
export type HistogramDimension = 'netns' | 'cgroup' | 'listen_port';

/** What one histogram describes. */
export interface HistogramKey {
  state: string;
  timewait: boolean;
  dimension: HistogramDimension;
  /** the namespace inode, cgroup id or port, in decimal */
  key: string;
}

/** One histogram in transport form (plain data; `hdr` is HdrHistogram's compressed V2 encoding, base64). */
export interface EncodedHistogram extends HistogramKey {
  unit: typeof HISTOGRAM_UNIT;
  significantDigits: number;
  totalCount: number;
  hdr: string;
}

const DIMENSIONS: readonly HistogramDimension[] = ['netns', 'cgroup', 'listen_port'];

/** What JsHistogram.recordSingleValue does (hdr-histogram-js), in parts, so the bucket index is found once. */
interface JsInternals {
  countsArrayIndex(value: number): number;
  countsArrayLength: number;
  incrementCountAtIndex(index: number): void;
  updateMinAndMax(value: number): void;
  incrementTotalCount(): void;
}
const probe = hdr.build({ bitBucketSize: 32, numberOfSignificantValueDigits: 2, autoResize: true, useWebAssembly: false }) as unknown as Partial<JsInternals>;
/** The parts exist in this hdr-histogram-js (else every value goes through recordValue, as before). */
const FAST_RECORD = ['countsArrayIndex', 'incrementCountAtIndex', 'updateMinAndMax', 'incrementTotalCount'].every((m) => typeof (probe as Record<string, unknown>)[m] === 'function') && typeof probe.countsArrayLength === 'number';

/** recordValue(us), its bucket index already known (−1: not known). */
function recordAt(h: Histogram, us: number, index: number): void {
  const j = h as unknown as JsInternals;
  if (index < 0 || index >= j.countsArrayLength) {
    h.recordValue(us); // past the counts array: recordValue resizes it
    return;
  }
  j.incrementCountAtIndex(index);
  j.updateMinAndMax(us);
  j.incrementTotalCount();
}
/** Label index: the state value, plus this for the timewait phase (TIME_WAIT, FIN_WAIT2 held by a timewait sock). */
const TW_OFFSET = 32;
const LABELS = 2 * TW_OFFSET;

const newHistogram = (): Histogram =>
  hdr.build({ bitBucketSize: 32, numberOfSignificantValueDigits: SIGNIFICANT_DIGITS, autoResize: true, useWebAssembly: false });

/**
 * A set of dwell histograms. The tracker fills one per interval (see `Tracker.takeHistograms`);
 * a collector merges intervals and hosts with `merge`, exactly.
 */
export class HistogramSet {
  private readonly dims = new Map<HistogramDimension, Map<number, (Histogram | undefined)[]>>(DIMENSIONS.map((d) => [d, new Map()]));
  private count = 0;
  /** records not kept in a breakdown because `maxHistograms` was reached */
  dropped = 0;

  /** @param maxHistograms cap on the number of histograms (each is ~10–20 KiB in memory) */
  constructor(readonly maxHistograms = 4096) {}

  /** Number of histograms held. */
  get size(): number {
    return this.count;
  }

  private readonly byNetns = this.dims.get('netns')!;
  private readonly byCgroup = this.dims.get('cgroup')!;
  private readonly byPort = this.dims.get('listen_port')!;

  private slot(byKey: Map<number, (Histogram | undefined)[]>, key: number, label: number): Histogram | undefined {
    let labels = byKey.get(key);
    let h = labels?.[label];
    if (h) return h;
    if (this.count >= this.maxHistograms) {
      this.dropped++;
      return undefined;
    }
    if (!labels) byKey.set(key, (labels = new Array<Histogram | undefined>(LABELS)));
    labels[label] = h = newHistogram();
    this.count++;
    return h;
  }

  /**
   * Records one dwell. `state` is the kernel state value; listenPort is null for sockets that
   * were not accepted from a listener.
   */
  record(state: number, timewait: boolean, dwellNs: bigint, netns: number, cgroupId: bigint, listenPort: number | null): void {
    this.recordNs(state, timewait, Number(dwellNs), netns, Number(cgroupId), listenPort ?? -1);
  }

  /** `record` with plain numbers (the agent's path): cgroup as a number, listenPort −1 for none. */
  recordNs(state: number, timewait: boolean, dwellNs: number, netns: number, cgroupId: number, listenPort: number): void {
    const us = Math.round(dwellNs / 1000);
    if (!(us >= 0)) return;
    const label = state + (timewait ? TW_OFFSET : 0);
    const a = this.slot(this.byNetns, netns, label);
    const b = this.slot(this.byCgroup, cgroupId, label);
    const c = listenPort >= 0 ? this.slot(this.byPort, listenPort, label) : undefined;
    // All histograms share their settings, so a value falls in the same bucket of each: find it
    // once (hdr's index computation was a third of recording, times three).
    const first = a ?? b ?? c;
    if (!first) return;
    const index = FAST_RECORD ? (first as unknown as JsInternals).countsArrayIndex(us) : -1;
    if (a) recordAt(a, us, index);
    if (b) recordAt(b, us, index);
    if (c) recordAt(c, us, index);
  }

  /** Every histogram with its key. The histograms are live: copy before changing them. */
  *entries(): IterableIterator<{ key: HistogramKey; histogram: Histogram }> {
    for (const [dimension, byKey] of this.dims) {
      for (const [k, labels] of byKey) {
        for (let label = 0; label < labels.length; label++) {
          const h = labels[label];
          if (!h) continue;
          const timewait = label >= TW_OFFSET;
          yield { key: { state: stateName(timewait ? label - TW_OFFSET : label), timewait, dimension, key: String(k) }, histogram: h };
        }
      }
    }
  }

  /** Host-wide distribution per state (the netns breakdown summed), keyed "STATE" or "STATE/timewait". */
  totals(): Map<string, Histogram> {
    const out = new Map<string, Histogram>();
    for (const { key, histogram } of this.entries()) {
      if (key.dimension !== 'netns') continue;
      const name = key.timewait ? `${key.state}/timewait` : key.state;
      let t = out.get(name);
      if (!t) out.set(name, (t = newHistogram()));
      t.add(histogram);
    }
    return out;
  }

  /** Transport form: one entry per histogram, HdrHistogram's compressed encoding in base64. */
  encode(): EncodedHistogram[] {
    const out: EncodedHistogram[] = [];
    for (const { key, histogram } of this.entries()) {
      out.push({
        ...key,
        unit: HISTOGRAM_UNIT,
        significantDigits: SIGNIFICANT_DIGITS,
        totalCount: histogram.totalCount,
        hdr: hdr.encodeIntoCompressedBase64(histogram),
      });
    }
    return out;
  }

  /** Adds encoded histograms (from another interval or host) into this set. Exact for equal settings. */
  mergeEncoded(list: readonly EncodedHistogram[]): void {
    for (const e of list) {
      if (e.significantDigits !== SIGNIFICANT_DIGITS || e.unit !== HISTOGRAM_UNIT) {
        throw new Error(`cannot merge a histogram of ${e.significantDigits} digits in ${e.unit} into ${SIGNIFICANT_DIGITS} digits in ${HISTOGRAM_UNIT}`);
      }
      const label = stateLabel(e.state, e.timewait);
      const h = this.slot(this.dims.get(e.dimension)!, Number(e.key), label);
      h?.add(hdr.decodeFromCompressedBase64(e.hdr, 32, false));
    }
  }

  /** Adds another set into this one. */
  merge(other: HistogramSet): void {
    this.mergeEncoded(other.encode());
  }

  /** The histogram for one key, if any value was recorded. */
  get(key: HistogramKey): Histogram | undefined {
    return this.dims.get(key.dimension)?.get(Number(key.key))?.[stateLabel(key.state, key.timewait)];
  }

  /** A set holding the given encoded histograms. */
  static decode(list: readonly EncodedHistogram[], maxHistograms?: number): HistogramSet {
    const set = new HistogramSet(maxHistograms);
    set.mergeEncoded(list);
    return set;
  }
}

function stateLabel(state: string, timewait: boolean): number {
  const value = stateValue(state);
  if (value === 0 || value >= TW_OFFSET) throw new Error(`unknown state ${state} in an encoded histogram`);
  return value + (timewait ? TW_OFFSET : 0);
}
