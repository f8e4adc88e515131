/** The kernel's clock: boot-time nanoseconds (what the kernel program stamps), and its offset to wall-clock time. */
import { clockBoottimeNs } from 'bpf-ts-loader';

export { clockBoottimeNs };

/**
 * Offset from CLOCK_BOOTTIME to the Unix epoch, in ns, sampled now. Boot time counts
 * suspend, so one offset holds for every event of this run (until the wall clock is stepped).
 */
export function bootToEpochOffsetNs(): bigint {
  const before = clockBoottimeNs();
  const wall = BigInt(Date.now()) * 1_000_000n;
  const after = clockBoottimeNs();
  return wall - (before + after) / 2n;
}
