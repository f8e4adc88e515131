import { describe, expect, it } from 'vitest';
import { FlushPolicy } from '../../src/agent/batching.js';

describe('the agent flushes by size or latency budget', () => {
  it('holds a light batch until its oldest row has waited the budget, then sends both kinds', () => {
    let now = 1000;
    const p = new FlushPolicy(500, () => now);
    p.note('transitions', 3);
    now += 200;
    p.note('dwell', 1);
    p.note('transitions', 7); // later rows do not restart the wait
    expect(p.due({ transitions: 7, dwell: 1 })).toEqual([]);
    now += 299;
    expect(p.due({ transitions: 7, dwell: 1 })).toEqual([]);
    now += 1;
    expect(p.due({ transitions: 7, dwell: 1 })).toEqual(['transitions', 'dwell']);
    p.flushed('transitions');
    p.flushed('dwell');
    expect(p.due({ transitions: 0, dwell: 0 })).toEqual([]);
  });

  it('a light host (200 events/s, one tick each 10 ms) sends at most 5 messages a second', () => {
    let now = 0;
    const p = new FlushPolicy(500, () => now);
    const rows = { transitions: 0, dwell: 0 };
    let messages = 0;
    for (; now < 10_000; now += 10) {
      rows.transitions += 2; // 200 events/s
      rows.dwell += 2;
      p.note('transitions', rows.transitions);
      p.note('dwell', rows.dwell);
      for (const k of p.due(rows)) {
        messages++;
        rows[k] = 0;
        p.flushed(k);
      }
    }
    // + one summary each 10 s
    expect((messages + 1) / 10).toBeLessThanOrEqual(5);
    expect(messages).toBeGreaterThan(0);
  });

  it('checks ten times per budget, between 10 and 50 ms', () => {
    expect(new FlushPolicy(500).tickMs).toBe(50);
    expect(new FlushPolicy(50).tickMs).toBe(10);
    expect(new FlushPolicy(200).tickMs).toBe(20);
  });
});
