/**
 * When the agent publishes a batch: by size, or when its oldest row has waited out the latency
 * budget, whichever comes first. Pure: the clock is injected.
 *
 * Why a budget rather than a fixed interval: a flush every 50 ms sent ~40 messages a second from
 * every host with steady traffic (two kinds), most of them a few rows — a thousand light hosts
 * were 40,000 messages a second for the collector. With a budget, a light host (200 events/s)
 * sends a batch of each kind per budget (500 ms: 4 messages a second), while a busy one still
 * fills batches by size long before the budget (4096 rows at 110k events/s: every 37 ms), so its
 * latency stays what the size gives it. When one kind is due, the other goes with it if it holds
 * anything: one wake-up, both kinds.
 */

export type BatchKind = 'transitions' | 'dwell';
const KINDS: readonly BatchKind[] = ['transitions', 'dwell'];

export class FlushPolicy {
  /** when each kind's oldest unsent row arrived (clock ms), -1 = empty */
  private readonly since: Record<BatchKind, number> = { transitions: -1, dwell: -1 };

  constructor(
    /** the longest a row waits before its batch is published (ms) */
    readonly budgetMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** How often the agent should ask `due`: a tenth of the budget, 10–50 ms. */
  get tickMs(): number {
    return Math.max(10, Math.min(50, Math.round(this.budgetMs / 10)));
  }

  /** The kind's batch now holds `rows`: the first of them starts its wait. */
  note(kind: BatchKind, rows: number): void {
    if (rows > 0 && this.since[kind] < 0) this.since[kind] = this.now();
  }

  /** The kind's batch was published (it is empty). */
  flushed(kind: BatchKind): void {
    this.since[kind] = -1;
  }

  /** The kinds to publish now, given how many rows each holds. */
  due(rows: Record<BatchKind, number>): BatchKind[] {
    const t = this.now();
    const over = KINDS.some((k) => rows[k] > 0 && this.since[k] >= 0 && t - this.since[k] >= this.budgetMs);
    return over ? KINDS.filter((k) => rows[k] > 0) : [];
  }
}
