/**
 * The value grammars of flags, shared with the config file (src/cli/config.ts checks a file's
 * values with these, so a setting reads the same on the command line and in the file). Each
 * throws commander's InvalidArgumentError with a message that says what to give.
 */
import { InvalidArgumentError } from 'commander';
import { parseDurationNs } from '../common/durations.js';
import { UsageError } from '../common/errors.js';
import { parsePortText } from '../kernel/filters.js';

/** A repeatable option: each occurrence parsed and appended. */
export const repeatable =
  <T>(parse: (v: string) => T) =>
  (value: string, previous: T[] = []) => [...previous, parse(value)];

export function parsePort(v: string): number {
  const p = parsePortText(v);
  if (typeof p !== 'number') throw new InvalidArgumentError(`${p.problem}.`);
  return p;
}

/** Seconds (a bare number) or a duration with its unit (500ms, 5m), > 0. */
export function parseSeconds(v: string): number {
  const ns = parseDurationNs(v, 's');
  if (!ns) throw new InvalidArgumentError(`'${v}' is not a duration: give seconds > 0, e.g. 10 or 0.5.`);
  return ns / 1e9;
}

/** Seconds, or 0 to turn the thing off. */
export function parseSecondsOrOff(v: string): number {
  const ns = parseDurationNs(v, 's');
  if (ns === null) throw new InvalidArgumentError(`'${v}' is not a duration: give seconds, e.g. 300, or 0 for never.`);
  return ns / 1e9;
}

/** "1h", "30m", "2d", "90s" (ago), or an ISO-8601 time → Unix ms. */
export function parseTime(v: string, flag: string, nowMs = Date.now()): number {
  const ago = parseDurationNs(v, null);
  if (ago !== null) return nowMs - ago / 1e6;
  if (/^\d{4}-\d{2}-\d{2}/.test(v)) {
    const t = Date.parse(v);
    if (Number.isFinite(t)) return t;
  }
  throw new UsageError(`${flag} ${v}: give a time like 2024-05-01T08:00:00Z, or how long ago, e.g. 90s, 30m, 1h, 2d`);
}

/** "90s", "5m" → ms. */
export function parseSpan(v: string, flag: string): number {
  const ns = parseDurationNs(v, null);
  if (ns === null) throw new UsageError(`${flag} ${v}: give a duration like 90s, 5m, 1h`);
  return ns / 1e6;
}

export function parseRingBytes(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 4096 || (n & (n - 1)) !== 0) {
    throw new InvalidArgumentError(`'${v}' is not a ring size: give a power of two of at least 4096 (bytes).`);
  }
  return n;
}

export function parseBytes(v: string): number {
  const m = /^(\d+)([KMG]i?B?)?$/i.exec(v);
  if (!m) throw new InvalidArgumentError(`'${v}' is not a size: give bytes, or e.g. 256MiB.`);
  const unit = (m[2] ?? '').toUpperCase()[0];
  return Number(m[1]) * (unit === 'K' ? 1024 : unit === 'M' ? 1024 ** 2 : unit === 'G' ? 1024 ** 3 : 1);
}

export const positiveInt = (what: string) => (v: string) => {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new InvalidArgumentError(`'${v}' is not ${what}: give a whole number of at least 1.`);
  return Number(v);
};
