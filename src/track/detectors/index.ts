/**
 * The detector registry: the classic questions of reading `netstat` output, answered with
 * numbers. Each detector is one file (see detector.ts for what it declares); everything else —
 * the names, the thresholds with their defaults and checks, the explanations `explain` and the
 * alerts carry — derives from this list. Adding a detector is one file, one line here and a test.
 */
import { UsageError } from '../../common/errors.js';
import { parseDurationNs } from '../../common/durations.js';
import type { SysctlReaders } from '../../kernel/sysctl.js';
import type { TcpEvent } from '../../decode/index.js';
import type { LiveTable } from '../live-table.js';
import type { ListenerPoll } from '../types.js';
import type { DetectorRun, DetectorSpec, Finding, StateName, Threshold, ThresholdValues } from './detector.js';
import { closeWaitLeak } from './close-wait-leak.js';
import { synPressure } from './syn-pressure.js';
import { connectFailures, isConnectFailure } from './connect-failures.js';
import { timeWaitPressure } from './time-wait-pressure.js';
import { rstStorm } from './rst-storm.js';

/** Every detector, in the order their alerts are listed. */
export const DETECTORS = [closeWaitLeak, synPressure, connectFailures, timeWaitPressure, rstStorm] as const;

export type DetectorName = (typeof DETECTORS)[number]['name'];

type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never;
type ThresholdsOf<D> = D extends { thresholds: infer T } ? ThresholdValues<T> : never;

/** Thresholds for every detector. Durations in ns (bigint), counts, rates and fractions as numbers. */
export type DetectorThresholds = { [K in keyof UnionToIntersection<ThresholdsOf<(typeof DETECTORS)[number]>>]: UnionToIntersection<ThresholdsOf<(typeof DETECTORS)[number]>>[K] };

/** Each threshold's declaration (default, kind, what it is), by name. */
export const THRESHOLDS: Readonly<Record<keyof DetectorThresholds, Threshold>> = Object.assign({}, ...DETECTORS.map((d) => d.thresholds));

export const DEFAULT_THRESHOLDS: Readonly<DetectorThresholds> = Object.fromEntries(
  Object.entries(THRESHOLDS).map(([name, t]) => [name, t.default]),
) as unknown as DetectorThresholds;

/** What each detector's condition means and what to look at (shared with `tcpdwell explain`). */
export const EXPLAIN = Object.fromEntries(DETECTORS.map((d) => [d.name, d.explanation])) as Record<DetectorName, string>;

/** The state each detector is about first, so `top` can point at `tcpdwell explain STATE`. */
export const DETECTOR_STATE = Object.fromEntries(DETECTORS.map((d) => [d.name, d.states[0]])) as Record<DetectorName, StateName>;

/** The detectors that watch a state, in registry order. */
export const detectorsOf = (state: StateName): DetectorName[] => DETECTORS.filter((d) => (d.states as readonly string[]).includes(state)).map((d) => d.name);

/** A detector's finding, current as of `atNs`. */
export interface Alert extends Omit<Finding, 'detector'> {
  detector: DetectorName;
  /** what the state means and what to look at */
  explanation: string;
  /** boot-time ns of the first evaluation at which this key fired without a break */
  sinceNs: bigint;
  atNs: bigint;
}

const known = () => Object.keys(THRESHOLDS).join(', ');
const specOf = (name: string): Threshold => {
  const t = (THRESHOLDS as Record<string, Threshold>)[name];
  if (!t) throw new UsageError(`unknown threshold ${name}; known: ${known()}`);
  return t;
};

/** Thresholds merged over the defaults and checked; a bad value is a UsageError (exit code 2). */
export function resolveThresholds(over: Partial<DetectorThresholds> = {}): DetectorThresholds {
  const t = { ...DEFAULT_THRESHOLDS, ...over };
  for (const [name, value] of Object.entries(t) as [string, unknown][]) {
    const spec = specOf(name);
    if (spec.kind === 'duration') {
      if (typeof value !== 'bigint' || value <= 0n) throw new UsageError(`threshold ${name}: ${String(value)} must be a positive duration in ns (a bigint)`);
      continue;
    }
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new UsageError(`threshold ${name}: ${String(value)} must be a positive number`);
    if (spec.kind === 'fraction' && value > 1) throw new UsageError(`threshold ${name}: ${value} must be a fraction in (0, 1]`);
    if (spec.kind === 'count' && !Number.isInteger(value)) throw new UsageError(`threshold ${name}: ${value} must be a whole number`);
  }
  return t;
}

/**
 * One threshold from text or JSON: durations ("300ms", "60s", "5m", or ns as a bare number) for
 * the duration thresholds, numbers for the others. Throws UsageError naming what is expected.
 */
export function parseThresholdValue(name: string, value: unknown): bigint | number {
  if (specOf(name).kind === 'duration') {
    const ns = parseDurationNs(String(value), 'ns');
    if (!ns) throw new UsageError(`threshold ${name} is a duration, e.g. 300ms, 60s or 5m`);
    return BigInt(ns);
  }
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`threshold ${name} must be a positive number`);
  return n;
}

/** Every detector at work in one Tracker: fed transitions, run over the table, alerts out. */
export class Detectors {
  private readonly runs: DetectorRun[];
  private readonly onTransition: DetectorRun[];
  private readonly onSocket: DetectorRun[];
  private readonly firing = new Map<string, bigint>();
  fired = 0;

  constructor(
    private t: DetectorThresholds,
    sysctls: SysctlReaders,
    maxKeys: number,
  ) {
    const ctx = { thresholds: () => this.t, sysctls, maxKeys };
    this.runs = DETECTORS.map((d) => (d as unknown as DetectorSpec).create(ctx as never));
    this.onTransition = this.runs.filter((r) => r.transition);
    this.onSocket = this.runs.filter((r) => r.socket);
  }

  /** New thresholds from the next event on; what is firing stays firing until it is not. */
  setThresholds(t: DetectorThresholds): void {
    this.t = t;
    for (const r of this.runs) r.reconfigure?.();
  }

  /** A transition the tracker applied (wasTimewait: its socket was held by a timewait sock). */
  transition(e: TcpEvent, oldV: number, newV: number, wasTimewait: boolean): void {
    for (let i = 0; i < this.onTransition.length; i++) this.onTransition[i]!.transition!(e, oldV, newV, wasTimewait);
  }

  /** An RST sent or received. */
  reset(e: TcpEvent): void {
    for (const r of this.runs) r.reset?.(e);
  }

  /** The kernel's view of the listeners and SYN counters, polled. */
  listeners(poll: ListenerPoll): void {
    for (const r of this.runs) r.listeners?.(poll);
  }

  /** Events for keys the detectors did not track because a cap was reached. */
  get dropped(): number {
    let n = 0;
    for (const r of this.runs) n += r.dropped?.() ?? 0;
    return n;
  }

  /** One pass over the table, then every detector's findings as alerts. */
  evaluate(table: LiveTable, nowNs: bigint): Alert[] {
    for (const r of this.runs) r.begin?.(nowNs);
    const scanners = this.onSocket;
    if (scanners.length) {
      table.scan((slot, state) => {
        const flags = table.flagsOf(slot);
        for (let i = 0; i < scanners.length; i++) scanners[i]!.socket!(table, slot, state, flags);
      });
    }
    const findings: Finding[] = [];
    for (const r of this.runs) r.evaluate(table, nowNs, findings);
    const alerts: Alert[] = [];
    const seen = new Set<string>();
    for (const f of findings) {
      seen.add(f.key);
      let since = this.firing.get(f.key);
      if (since === undefined) {
        this.firing.set(f.key, (since = nowNs));
        this.fired++;
      }
      const detector = f.detector as DetectorName;
      alerts.push({ ...f, detector, explanation: EXPLAIN[detector], sinceNs: since, atNs: nowNs });
    }
    for (const k of this.firing.keys()) if (!seen.has(k)) this.firing.delete(k);
    return alerts;
  }
}

export { isConnectFailure, type StateName };
