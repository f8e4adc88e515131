import { describe, expect, it } from 'vitest';
import { Collector, kernelAvailable, TestNetns } from './helpers.js';

describe.skipIf(!kernelAvailable)('a ring too small for a burst', () => {
  it('counts every record it could not hold: received + lost equals what the workload caused', async () => {
    const netns = new TestNetns();
    // 4 KiB holds ~28 records; the reader polls every 10 ms; 300 connections make 3,602 events.
    const col = new Collector({ netns: [netns.ns.inode], ringBytes: 4096 });
    try {
      const n = 300;
      await netns.run('burst', '127.0.0.1', 8201, n);
      // Per connection: 5 client + 5 child transitions + 1 timewait start + the server's accept(); plus the listener's 2.
      const expected = 12 * n + 2;
      await new Promise((r) => setTimeout(r, 100));
      col.drain();
      const k = col.tracer.counters();
      expect(k.lost_ring_full).toBeGreaterThan(0);
      expect(col.stats.malformed).toBe(0);
      expect(col.events.length).toBe(k.events);
      // Exact, but for runs the kernel skipped because one was already running on that CPU
      // (an interrupt's softirq): those it counts host-wide, so they bound the rest from above.
      expect(col.events.length + k.lost_ring_full).toBeLessThanOrEqual(expected);
      expect(col.events.length + k.lost_ring_full + k.skipped_transitions + k.skipped_timer).toBeGreaterThanOrEqual(expected);
      // A transition after a skipped one never claims a dwell it does not know.
      for (const e of col.events.filter((x) => x.gap)) expect(e.dwellNs).toBeNull();
    } finally {
      col.close();
      netns.delete();
    }
  });
});
