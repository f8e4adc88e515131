/**
 * Alert publishing: the detectors say what fires at each evaluation; the fleet hears of each
 * alert twice — once when it starts firing and once when it is resolved.
 */
import type { Alert } from '../track/index.js';

export class AlertTransitions {
  /** alerts firing, by key */
  private readonly firing = new Map<string, Alert>();

  /**
   * Compares what fires now with what fired before: `publish` gets each new alert as
   * 'firing' and each one gone as 'resolved' (stamped `resolvedAtNs`).
   */
  update(now: readonly Alert[], resolvedAtNs: bigint, publish: (a: Alert, severity: 'firing' | 'resolved') => void): void {
    const current = new Map(now.map((a) => [a.key, a]));
    for (const [key, a] of current) {
      if (this.firing.has(key)) continue;
      this.firing.set(key, a);
      publish(a, 'firing');
    }
    for (const [key, a] of this.firing) {
      if (current.has(key)) continue;
      this.firing.delete(key);
      publish({ ...a, atNs: resolvedAtNs }, 'resolved');
    }
  }

  get size(): number {
    return this.firing.size;
  }

  /** Alerts firing now, per detector. */
  byDetector(): Map<string, number> {
    const out = new Map<string, number>();
    for (const a of this.firing.values()) out.set(a.detector, (out.get(a.detector) ?? 0) + 1);
    return out;
  }
}
