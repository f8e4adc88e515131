import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { clockBoottimeNs } from 'bpf-ts-loader';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { toSsCounts, Tracker, type DwellRecord } from '../../src/track/index.js';
import { Collector, kernelAvailable, ssCounts, TestNetns } from './helpers.js';

describe.skipIf(!kernelAvailable)('the live table and detectors against the kernel', () => {
  let netns: TestNetns;
  let col: Collector | undefined;
  const stops: (() => Promise<void>)[] = [];

  beforeEach(() => {
    netns = new TestNetns();
  });

  afterEach(async () => {
    col?.close();
    await Promise.all(stops.splice(0).map((s) => s()));
    netns?.delete();
  });

  it('equals ss -tan at a quiet moment, seeded from the snapshot and kept by events; a held CLOSE_WAIT is a leak of the right pid', async () => {
    // Sockets from before the agent: they reach the table through the snapshot only.
    const before = netns.start('mix', '127.0.0.1', 8201, '2,2,1');
    stops.push(before.stop);
    await before.ready;

    col = new Collector({ netns: [netns.ns.inode] });
    const records: DwellRecord[] = [];
    const tracker = new Tracker({
      clock: clockBoottimeNs,
      onDwell: (r) => records.push(r),
      thresholds: { closeWaitAgeNs: 300_000_000n, connectFailures: 2 },
    });
    tracker.seed(netns.ns.inode, col.snapshot(netns.ns));
    let fed = 0;
    const feed = () => {
      const events = col!.drain();
      tracker.ingest(events.slice(fed));
      fed = events.length;
    };

    // Sockets made while tracing: they reach the table through events.
    const after = netns.start('mix', '127.0.0.1', 8202, '3,4,2');
    stops.push(after.stop);
    const w = await after.ready;
    await netns.run('refused', '127.0.0.1', 8203);
    await netns.run('refused', '127.0.0.1', 8203);

    // A quiet moment: nothing new from the kernel for 200 ms.
    for (let last = -1; last !== col.drain().length; await sleep(200)) last = col.events.length;
    feed();
    const mine = tracker.table().byNetns.find((n) => n.netns === netns.ns.inode)!;
    const ss = ssCounts(netns);
    expect(toSsCounts(mine.counts)).toEqual(ss);
    expect(ss).toEqual({ LISTEN: 2, ESTAB: 10, 'TIME-WAIT': 6, 'CLOSE-WAIT': 3, 'FIN-WAIT-2': 3 });
    expect(tracker.stats()).toMatchObject({ corrections: 0, duplicates: 0, late: 0, unknownSockets: 0 });
    expect(records.filter((r) => r.precision === 'exact').length).toBeGreaterThan(20);

    // The CLOSE_WAIT sockets of the second server age past 300 ms: a leak, by its pid.
    await sleep(350);
    feed();
    const alerts = tracker.evaluate();
    const leak = alerts.find((a) => a.detector === 'close_wait_leak' && a.ownerPid === w.pid)!;
    expect(leak).toMatchObject({ netns: netns.ns.inode, ownerComm: 'node', labels: { sockets: '2' } });
    expect(leak.summary).toContain(`node (pid ${w.pid}) holds 2 sockets in CLOSE_WAIT`);
    const stuck = tracker.stuck({ states: ['CLOSE_WAIT'] });
    expect(stuck.filter((s) => s.ownerPid === w.pid && s.sport === 8202)).toHaveLength(2);
    expect(stuck.every((s) => s.ageNs >= 300_000_000n)).toBe(true);
    // The refused connects, counted by reason and destination.
    expect(alerts.find((a) => a.detector === 'connect_failures')).toMatchObject({
      value: 2,
      labels: { destination: '127.0.0.1:8203', reason: 'ECONNREFUSED' },
    });
  });

  it('keeps IPv6 sockets IPv6 through timewait (both substates), as ss -tan -6 lists them', async () => {
    col = new Collector({ netns: [netns.ns.inode] });
    const tracker = new Tracker({ clock: clockBoottimeNs });
    tracker.seed(netns.ns.inode, col.snapshot(netns.ns));
    // A timewait in TIME_WAIT (client-first close) and one in FIN_WAIT2 (the orphan whose peer holds CLOSE_WAIT).
    await netns.run('client-first', '::1', 8211);
    const orphan = netns.start('orphan', '::1', 8212, 3000);
    stops.push(orphan.stop);
    await col.waitFor((ev) => ev.filter((e) => e.type === 'timewait_start').length >= 2);
    tracker.ingest(col.drain());
    const tw = tracker.stuck({ states: ['TIME_WAIT', 'FIN_WAIT2'] }).filter((s) => s.timewait);
    expect(tw.map((s) => s.state).sort()).toEqual(['FIN_WAIT2', 'TIME_WAIT']);
    for (const s of tw) expect(s).toMatchObject({ family: 'inet6', saddr: '::1', daddr: '::1' });
    const ss6 = execFileSync('ip', ['netns', 'exec', netns.name, 'ss', '-Htan6', 'state', 'time-wait'], { encoding: 'utf8' });
    expect(ss6.trim().split('\n').filter(Boolean)).toHaveLength(1);
  });
});
