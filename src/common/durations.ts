/**
 * Durations as people write them, one grammar for every flag, config field and request that
 * takes one: a number, decimals allowed, with a unit — 300ms, 1.5s, 5m, 2h, 1d (ns, us, µs, ms,
 * s, m or min, h, d). Each caller says what a bare number means, and words its own error.
 */

const UNIT_NS: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9, m: 60e9, min: 60e9, h: 3600e9, d: 86_400e9 };
export type DurationUnit = 'ns' | 'ms' | 's';
const DURATION = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|min|m|h|d)?$/;

/**
 * The duration in ns (a number: exact to the ns up to 2^53 ns, about 104 days), or null when
 * the text is not a duration. A bare number is in `bareUnit`; with null a unit is required.
 */
export function parseDurationNs(text: string, bareUnit: DurationUnit | null): number | null {
  const m = DURATION.exec(text.trim());
  if (!m) return null;
  const unit = m[2] ?? bareUnit;
  if (unit === null) return null;
  return Math.round(Number(m[1]) * UNIT_NS[unit]!);
}
