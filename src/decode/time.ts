/** Boot-time stamps as wall-clock text, given the offset to the Unix epoch (kernel/clock.ts). Pure. */

/** "HH:MM:SS.mmmmmm" local time of a boot-time stamp. */
export function wallClock(offsetNs: bigint): (bootNs: bigint) => string {
  return (bootNs) => {
    const epochNs = bootNs + offsetNs;
    const d = new Date(Number(epochNs / 1_000_000n));
    const us = Number((epochNs / 1000n) % 1_000_000n);
    const p = (n: number, w = 2) => String(n).padStart(w, '0');
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(us, 6)}`;
  };
}

/** ISO-8601 UTC time of a boot-time stamp, to the microsecond. */
export function isoTime(bootNs: bigint, offsetNs: bigint): string {
  const epochNs = bootNs + offsetNs;
  const iso = new Date(Number(epochNs / 1_000_000n)).toISOString();
  const us = String(Number((epochNs / 1000n) % 1000n)).padStart(3, '0');
  return iso.replace('Z', `${us}Z`);
}
