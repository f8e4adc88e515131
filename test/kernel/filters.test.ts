import { describe, expect, it } from 'vitest';
import { Collector, kernelAvailable, TestNetns } from './helpers.js';

/** Runs two connections (IPv4 on port A, IPv6 on port B) under a tracer with `opts`. */
async function traceTwo(opts: { ports?: number[]; family?: 'inet' | 'inet6' }, a: number, b: number) {
  const netns = new TestNetns();
  const col = new Collector({ netns: [netns.ns.inode], ...opts });
  try {
    await netns.run('client-first', '127.0.0.1', a);
    await netns.run('client-first', '::1', b);
    await new Promise((r) => setTimeout(r, 50));
    col.drain();
    return { events: [...col.events], counters: col.tracer.counters() };
  } finally {
    col.close();
    netns.delete();
  }
}

describe.skipIf(!kernelAvailable)('filters set at start reach the kernel program', () => {
  it('--port keeps only sockets with that port at either end, and counts the rest as filtered', async () => {
    const { events, counters } = await traceTwo({ ports: [8401] }, 8401, 8402);
    // The IPv4 connection only: 10 transitions, 1 timewait start, the listener's 2, the server's accept().
    expect(events.length).toBe(14);
    expect(events.filter((e) => e.type === 'accept')).toHaveLength(1); // the accept program honours the filter too
    expect(events.every((e) => e.sport === 8401 || e.dport === 8401)).toBe(true);
    expect(events.some((e) => e.sport === 8402 || e.dport === 8402)).toBe(false);
    expect(counters.filtered).toBeGreaterThan(0);
  });

  it('--family 6 keeps only IPv6 sockets', async () => {
    const { events } = await traceTwo({ family: 'inet6' }, 8403, 8404);
    expect(events.length).toBeGreaterThan(0);
    expect(events.every((e) => e.family === 'inet6' && (e.dport === 8404 || e.sport === 8404))).toBe(true);
  });
});
