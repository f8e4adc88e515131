/**
 * Container attribution on the agent: the cgroup ids in its records resolved on this host
 * (src/kernel/cgroups.ts) and shipped beside them, because the collector, `query` and `tail`
 * run elsewhere and cannot look them up: a dictionary in each DwellBatch (the rows' cgroups) and
 * each Summary (the stuck sockets' and the "cgroup" distributions'), the owner's cgroup in each
 * Alert, and live sockets per container for the metrics (a bounded label set).
 */
import { CgroupResolver, cgroupLabel, type CgroupInfo } from '../kernel/cgroups.js';
import type { Alert, EncodedHistogram, StuckSocket } from '../track/index.js';

/** Series of tcpdwell_container_sockets: the containers with the most sockets; the rest as "other". */
export const MAX_CONTAINER_SERIES = 50;

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

export interface ContainerSockets {
  container: string;
  runtime: string;
  podUid: string;
  counts: Record<string, number>;
}

export class ContainerNames {
  /** as numbers where they fit 53 bits (always, in practice: the agent's rows carry them so) */
  private readonly dwellIds = new Set<number | bigint>();
  /** an alert's cgroup, from when it fired: the owner may be gone by the time it resolves */
  private readonly alertCgroups = new Map<string, CgroupInfo | null>();

  constructor(readonly resolver = new CgroupResolver()) {}

  /** A dwell record's cgroup, for the next batch's dictionary (no allocation for a known id). */
  noteDwell(cgroupId: bigint | number): void {
    if (typeof cgroupId === 'bigint' && cgroupId <= MAX_SAFE) cgroupId = Number(cgroupId);
    if (cgroupId !== 0 && cgroupId !== 0n) this.dwellIds.add(cgroupId);
  }

  private resolveAll(ids: Iterable<bigint | number>): CgroupInfo[] {
    const out: CgroupInfo[] = [];
    for (const id of ids) {
      const c = this.resolver.resolve(BigInt(id));
      if (c) out.push(c);
    }
    return out;
  }

  /** The dictionary of the dwell rows noted since the last call. */
  takeDwell(): CgroupInfo[] {
    const out = this.resolveAll(this.dwellIds);
    this.dwellIds.clear();
    return out;
  }

  /** The dictionary of a summary: its stuck sockets' cgroups and its "cgroup" distributions'. */
  forSummary(stuck: readonly StuckSocket[], histograms: readonly EncodedHistogram[]): CgroupInfo[] {
    const ids = new Set<bigint>();
    for (const s of stuck) if (s.cgroupId !== 0n) ids.add(s.cgroupId);
    for (const h of histograms) if (h.dimension === 'cgroup' && h.key !== '0') ids.add(BigInt(h.key));
    return this.resolveAll(ids);
  }

  /** The cgroup of an alert's owner process (kept from firing to resolved). */
  forAlert(a: Alert, severity: 'firing' | 'resolved'): CgroupInfo | null {
    let c = this.alertCgroups.get(a.key);
    if (c === undefined) c = a.ownerPid ? this.resolver.ofPid(a.ownerPid) : null;
    if (severity === 'firing') this.alertCgroups.set(a.key, c);
    else this.alertCgroups.delete(a.key);
    return c;
  }

  /**
   * Live sockets per container from the tracker's per-cgroup counts: the MAX_CONTAINER_SERIES
   * cgroups with the most sockets by their label (short container id, unit or path), the rest
   * summed as container "other" — the label set stays bounded however many containers come and go.
   */
  sockets(byCgroup: Map<number, Record<string, number>>, max = MAX_CONTAINER_SERIES): ContainerSockets[] {
    const rows = [...byCgroup].map(([id, counts]) => {
      const c = id ? this.resolver.resolve(BigInt(id)) : null;
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      return { c, counts, total };
    });
    rows.sort((a, b) => b.total - a.total);
    const out = new Map<string, ContainerSockets>();
    const add = (key: string, row: Omit<ContainerSockets, 'counts'>, counts: Record<string, number>) => {
      let r = out.get(key);
      if (!r) out.set(key, (r = { ...row, counts: {} }));
      for (const [state, n] of Object.entries(counts)) r.counts[state] = (r.counts[state] ?? 0) + n;
    };
    for (const [i, { c, counts }] of rows.entries()) {
      if (i >= max) add('other', { container: 'other', runtime: '', podUid: '' }, counts);
      else if (!c) add('unknown', { container: 'unknown', runtime: '', podUid: '' }, counts);
      else add(cgroupLabel(c), { container: cgroupLabel(c), runtime: c.runtime, podUid: c.podUid }, counts);
    }
    return [...out.values()];
  }
}
