/**
 * What a detector is: one file behind this interface (see index.ts, the registry). It declares
 * its name, the states it is about, what it observes, its explanation and its thresholds with
 * defaults, and it makes a run per Tracker that watches transitions and/or the live table and
 * evaluates to findings. Pure, like the tracker: no I/O; sysctls come through readers.
 */
import type { TcpEvent } from '../../decode/index.js';
import type { TcpState } from '../../kernel/abi.js';
import type { SysctlReaders } from '../../kernel/sysctl.js';
import type { ListenerPoll } from '../types.js';
import type { LiveTable } from '../live-table.js';
import { SlidingCounter } from '../windows.js';

export type StateName = keyof typeof TcpState;

/** How a threshold is checked and parsed: durations are ns (bigint); the rest are numbers. */
export type ThresholdKind = 'duration' | 'count' | 'rate' | 'fraction';

export interface Threshold<V extends bigint | number = bigint | number> {
  readonly default: V;
  readonly kind: ThresholdKind;
  /** what it is, one line */
  readonly help: string;
}

/** A duration threshold in ns; given as 300ms, 60s, 5m (or ns) on the command line and in requests. */
export const duration = (defaultNs: bigint, help: string): Threshold<bigint> => ({ default: defaultNs, kind: 'duration', help });
/** A whole number of things. */
export const count = (n: number, help: string): Threshold<number> => ({ default: n, kind: 'count', help });
/** A positive rate (decimals allowed). */
export const rate = (n: number, help: string): Threshold<number> => ({ default: n, kind: 'rate', help });
/** A fraction in (0, 1]. */
export const fraction = (n: number, help: string): Threshold<number> => ({ default: n, kind: 'fraction', help });

/** Shared by the detectors that count events over a sliding window. */
export const WINDOW = { windowNs: duration(60_000_000_000n, 'window for the SYN_RECV rate, connect failures and resets (default 60 s)') };

/** The values of a set of threshold declarations. */
export type ThresholdValues<T> = { [K in keyof T]: T[K] extends Threshold<infer V> ? V : never };

/** A detector's finding; the registry turns it into an Alert (explanation, since, at). */
export interface Finding {
  detector: string;
  /** stable while the condition lasts (e.g. `close_wait_leak/4026531840/1234`): publishers dedupe on it */
  key: string;
  netns: number;
  /** one line: what is wrong, with the numbers */
  summary: string;
  /** the measured value and the threshold it crossed (units in `labels.unit`) */
  value: number;
  threshold: number;
  ownerPid: number | null;
  ownerComm: string | null;
  /** detector-specific details (destination, reason, listening port, ...) */
  labels: Record<string, string>;
}

/** What a run is given: its thresholds (current, they change at run time), sysctls, key caps. */
export interface DetectorContext<V> {
  thresholds(): Readonly<V>;
  readonly sysctls: SysctlReaders;
  /** cap on keys per windowed counter (destinations, listeners) */
  readonly maxKeys: number;
}

/** A detector at work in one Tracker. */
export interface DetectorRun {
  /** every transition the tracker applied (oldV/newV are kernel state values; wasTimewait: held by a timewait sock) */
  transition?(e: TcpEvent, oldV: number, newV: number, wasTimewait: boolean): void;
  /** every RST sent or received (a `reset` event) */
  reset?(e: TcpEvent): void;
  /** what the kernel said about its listeners' queues and SYN counters (polled before evaluations) */
  listeners?(poll: ListenerPoll): void;
  /** an evaluation begins: the pass over the live table follows */
  begin?(nowNs: bigint): void;
  /** every live socket, in the one pass over the table an evaluation makes */
  socket?(table: LiveTable, slot: number, state: number, flags: number): void;
  /** after that pass: what fires now */
  evaluate(table: LiveTable, nowNs: bigint, out: Finding[]): void;
  /** the thresholds changed */
  reconfigure?(): void;
  /** events for keys not tracked because a cap was reached */
  dropped?(): number;
}

export interface DetectorSpec<N extends string = string, T extends Record<string, Threshold> = Record<string, Threshold>> {
  readonly name: N;
  /** the states it is about; `top` points `explain` at the first */
  readonly states: readonly [StateName, ...StateName[]];
  /** what it looks at, in a phrase */
  readonly observes: string;
  /** what the condition means and what to look at (published with every alert, shown by explain) */
  readonly explanation: string;
  readonly thresholds: T;
  create(ctx: DetectorContext<ThresholdValues<T>>): DetectorRun;
}

/** Declares a detector (identity: it only fixes the types). */
export const defineDetector = <N extends string, T extends Record<string, Threshold>>(spec: DetectorSpec<N, T>): DetectorSpec<N, T> => spec;

/** A sliding-window counter that starts afresh when the window threshold changes. */
export class WindowedCounts<K> {
  private counter: SlidingCounter<K>;
  private windowNs: bigint;

  constructor(private readonly ctx: DetectorContext<{ windowNs: bigint }>) {
    this.windowNs = ctx.thresholds().windowNs;
    this.counter = new SlidingCounter(this.windowNs, ctx.maxKeys);
  }

  add(key: K, tsNs: bigint, n = 1): void {
    this.counter.add(key, tsNs, n);
  }

  sums(nowNs: bigint): Map<K, number> {
    return this.counter.sums(nowNs);
  }

  get windowS(): number {
    return this.counter.windowS;
  }

  get dropped(): number {
    return this.counter.dropped;
  }

  /** A new window starts the counts afresh. */
  reconfigure(): void {
    const w = this.ctx.thresholds().windowNs;
    if (w === this.windowNs) return;
    this.windowNs = w;
    this.counter = new SlidingCounter(w, this.ctx.maxKeys);
  }
}

/** A finding whose owner is unknown unless given (the fields in the order alerts carry them). */
export function finding(f: Omit<Finding, 'ownerPid' | 'ownerComm'> & Partial<Pick<Finding, 'ownerPid' | 'ownerComm'>>): Finding {
  return { detector: f.detector, key: f.key, netns: f.netns, summary: f.summary, value: f.value, threshold: f.threshold, ownerPid: f.ownerPid ?? null, ownerComm: f.ownerComm ?? null, labels: f.labels };
}

/** A detector that counts transitions per key over the sliding window, and fires on the counts. */
export interface CountingSpec<N extends string, T extends Record<string, Threshold>, K> extends Omit<DetectorSpec<N, T & typeof WINDOW>, 'create'> {
  /** the key a transition counts under, or null when it does not count */
  counts(e: TcpEvent, oldV: number, newV: number, wasTimewait: boolean): K | null;
  /** what fires for a key counted n times within the window (of windowS seconds) */
  fires(key: K, n: number, t: Readonly<ThresholdValues<T & typeof WINDOW>>, windowS: number): Finding | null;
}

export function countingDetector<N extends string, T extends Record<string, Threshold>, K>(spec: CountingSpec<N, T, K>): DetectorSpec<N, T & typeof WINDOW> {
  const { counts, fires, ...rest } = spec;
  return defineDetector({
    ...rest,
    create(ctx) {
      const c = new WindowedCounts<K>(ctx as unknown as DetectorContext<{ windowNs: bigint }>);
      return {
        transition(e, oldV, newV, wasTimewait) {
          const k = counts(e, oldV, newV, wasTimewait);
          if (k !== null) c.add(k, e.tsNs);
        },
        evaluate(_table, nowNs, out) {
          const t = ctx.thresholds();
          for (const [k, n] of c.sums(nowNs)) {
            const f = fires(k, n, t, c.windowS);
            if (f) out.push(f);
          }
        },
        reconfigure: () => c.reconfigure(),
        dropped: () => c.dropped,
      };
    },
  });
}

/** Seconds for a message: one decimal below 10 s. */
export const seconds = (ns: number) => `${(ns / 1e9).toFixed(ns < 10e9 ? 1 : 0)} s`;
