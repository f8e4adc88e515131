import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeRingBatch, type TcpEvent } from '../../src/decode/index.js';
import { HistogramSet, Tracker } from '../../src/track/index.js';

function fixture(name: string): TcpEvent[] {
  const out: TcpEvent[] = [];
  decodeRingBatch(readFileSync(new URL(`../fixtures/${name}`, import.meta.url)), (e) => out.push(e), { records: 0, malformed: 0 });
  return out;
}

/** The recorded connection replayed n times as new sockets, each dwell scaled by 1 + i/n. */
function replay(events: TcpEvent[], n: number, cookieBase: bigint): TcpEvent[] {
  const out: TcpEvent[] = [];
  const t0 = events[0]!.tsNs;
  for (let i = 0; i < n; i++) {
    const shift = BigInt(i) * 1_000_000_000n;
    const scale = (t: bigint) => t0 + shift + ((t - t0) * BigInt(n + i)) / BigInt(n);
    for (const e of events) {
      const tsNs = scale(e.tsNs);
      const enteredNs = e.enteredNs === null ? null : scale(e.enteredNs);
      out.push({ ...e, cookie: e.cookie + cookieBase + BigInt(i) * 10n, tsNs, enteredNs, dwellNs: enteredNs === null ? null : tsNs - enteredNs });
    }
  }
  return out;
}

const hostRun = (events: TcpEvent[]) => {
  const t = new Tracker({ clock: () => 0n });
  t.ingest(events);
  return t.takeHistograms();
};

describe('dwell histograms', () => {
  it('hold every exact dwell of the recorded connection by state, namespace, cgroup and listening port', () => {
    const events = fixture('ipv4-client-first.ring');
    const set = hostRun(events);
    const keys = [...set.entries()].map(({ key, histogram }) => `${key.dimension}:${key.key}:${key.state}=${histogram.totalCount}`).sort();
    expect(keys).toEqual(
      [
        ...['CLOSE_WAIT', 'ESTABLISHED', 'FIN_WAIT1', 'FIN_WAIT2', 'LAST_ACK', 'LISTEN', 'SYN_RECV', 'SYN_SENT'].flatMap((s) => [
          `netns:4026532177:${s}=${s === 'ESTABLISHED' ? 2 : 1}`,
          `cgroup:1:${s}=${s === 'ESTABLISHED' ? 2 : 1}`,
        ]),
        // The accepted socket's states, by its listener's port.
        ...['CLOSE_WAIT', 'ESTABLISHED', 'LAST_ACK', 'SYN_RECV'].map((s) => `listen_port:9100:${s}=1`),
      ].sort(),
    );
    const synSent = set.get({ state: 'SYN_SENT', timewait: false, dimension: 'netns', key: '4026532177' })!;
    // 235 824 ns recorded in µs, within the 2-digit precision.
    expect(Math.abs(synSent.getValueAtPercentile(50) - 236) / 236).toBeLessThan(0.01);
  });

  it('merge across hosts exactly: two encoded halves equal the histogram of the whole', () => {
    const events = fixture('ipv4-client-first.ring');
    const all = replay(events, 40, 0n);
    const half = all.length / 2;
    const a = hostRun(all.slice(0, half));
    const b = hostRun(all.slice(half));
    const whole = hostRun(all);
    const wire = [...a.encode(), ...b.encode()];
    // The transport form is small: base64 of the compressed V2 encoding.
    expect(Math.max(...wire.map((e) => e.hdr.length))).toBeLessThan(400);
    const merged = HistogramSet.decode(wire);
    for (const { key, histogram } of whole.entries()) {
      const m = merged.get(key)!;
      expect(m.totalCount).toBe(histogram.totalCount);
      for (const p of [0, 25, 50, 90, 99, 100]) expect(m.getValueAtPercentile(p)).toBe(histogram.getValueAtPercentile(p));
      // The encoding keeps buckets, not the raw maximum: equal within the bucket's width.
      expect(Math.abs(m.maxValue - histogram.maxValue) / histogram.maxValue).toBeLessThan(0.01);
    }
    expect(merged.size).toBe(whole.size);
    const totals = merged.totals();
    expect(totals.get('ESTABLISHED')!.totalCount).toBe(80);
  });

  it('start afresh at each interval, and never grow past their cap (dropped records are counted)', () => {
    const t = new Tracker({ clock: () => 0n, maxHistograms: 3 });
    t.ingest(fixture('ipv4-client-first.ring'));
    const first = t.takeHistograms();
    expect(first.size).toBe(3);
    expect(t.stats().histogramsDropped).toBeGreaterThan(0);
    expect(t.takeHistograms().size).toBe(0);
  });
});
