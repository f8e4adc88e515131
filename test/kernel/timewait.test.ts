import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { bySocket, Collector, kernelAvailable, sequence, eachTestInNamespace, TestNetns } from './helpers.js';

describe.skipIf(!kernelAvailable)('the TIME_WAIT lifecycle', () => {
  let netns: TestNetns;
  let col: Collector;
  eachTestInNamespace((n, c) => ((netns = n), (col = c)));

  it("the active closer's timewait carries its cookie, and deleting the namespace ends it as killed", async () => {
    const w = await netns.run('client-first', '127.0.0.1', 8101);
    await col.waitFor((ev) => ev.some((e) => e.type === 'timewait_start'));
    const start = col.events.find((e) => e.type === 'timewait_start')!;
    const client = bySocket(col.events).get(start.cookie)!;
    expect(sequence(client)[0]).toBe('CLOSE->SYN_SENT');
    expect(start).toMatchObject({ sport: w.clientPort, dport: 8101, substate: 'TIME_WAIT', ownerPid: w.pid, ownerComm: 'node' });

    const deletedAt = process.hrtime.bigint();
    netns.delete();
    const events = await col.waitFor((ev) => ev.some((e) => e.type === 'timewait_end'), 10_000);
    const end = events.find((e) => e.type === 'timewait_end')!;
    expect(end).toMatchObject({ cookie: start.cookie, reason: 'killed', substate: 'TIME_WAIT', sport: w.clientPort, ownerPid: w.pid });
    expect(end.enteredNs).toBe(start.tsNs);
    expect(end.dwellNs).toBe(end.tsNs - start.tsNs);
    // It ended after we deleted the namespace, long before its 60 s were up.
    expect(Number(end.dwellNs) / 1e9).toBeLessThan(30);
    expect(end.tsNs - start.tsNs).toBeGreaterThan(0n);
    void deletedAt;
  });

  it('an orphaned FIN_WAIT2 is a timewait with substate FIN_WAIT2; the peer FIN flips it to TIME_WAIT (a flip, not a new timewait)', async () => {
    // The server holds CLOSE_WAIT for 2.5 s: long enough that the flip re-arms the timer into
    // another timer-wheel bucket (cancel + start), the case the program must not mistake for an end.
    const w = await netns.run('orphan', '127.0.0.1', 8102, 2500);
    await col.waitFor((ev) => ev.some((e) => e.oldState === 'LAST_ACK'));
    const starts = col.events.filter((e) => e.type === 'timewait_start');
    expect(starts).toHaveLength(2);
    expect(starts[0]).toMatchObject({ substate: 'FIN_WAIT2', flip: false, sport: w.clientPort, ownerPid: w.pid });
    // The flip: same cookie, substate TIME_WAIT, entered = the timewait's start, due 60 s after the flip.
    const flip = starts[1]!;
    expect(flip).toMatchObject({ substate: 'TIME_WAIT', flip: true, cookie: starts[0]!.cookie, sport: w.clientPort, enteredNs: starts[0]!.tsNs });
    expect(Number(flip.tsNs - starts[0]!.tsNs) / 1e9).toBeGreaterThan(2.4);
    expect(Number(flip.expiresNs! - flip.tsNs) / 1e9).toBeCloseTo(60, 0);
    expect(col.events.filter((e) => e.type === 'timewait_end')).toHaveLength(0); // re-armed, not ended
    netns.delete();
    const events = await col.waitFor((ev) => ev.some((e) => e.type === 'timewait_end'), 10_000);
    const end = events.find((e) => e.type === 'timewait_end')!;
    expect(end).toMatchObject({ cookie: starts[0]!.cookie, reason: 'killed', substate: 'TIME_WAIT' });
    expect(Number(end.dwellNs) / 1e9).toBeGreaterThan(2.4);
  });
});

describe.skipIf(!kernelAvailable)('sockets that exist before tracing starts', () => {
  it('appear as snapshot events with their states, timewait sockets included, matching ss', async () => {
    const netns = new TestNetns();
    const hold = netns.start('hold', '127.0.0.1', 8103, 2);
    try {
      const w = await hold.ready;
      const col = new Collector({ netns: [netns.ns.inode] });
      try {
        const snap = col.snapshot(netns.ns);
        const states = snap.map((e) => e.newState).sort();
        expect(states).toEqual(['ESTABLISHED', 'ESTABLISHED', 'LISTEN', 'TIME_WAIT', 'TIME_WAIT']);
        // ss, in the same namespace, agrees state by state.
        const ss = execFileSync('ip', ['netns', 'exec', netns.name, 'ss', '-Htan'], { encoding: 'utf8' });
        const ssStates = ss
          .trim()
          .split('\n')
          .map((l) => l.split(/\s+/)[0]!.replace('ESTAB', 'ESTABLISHED').replace('TIME-WAIT', 'TIME_WAIT'))
          .sort();
        expect(states).toEqual(ssStates);
        const tw = snap.filter((e) => e.newState === 'TIME_WAIT');
        expect(tw.every((e) => e.substate === 'TIME_WAIT' && e.expiresNs! > e.tsNs)).toBe(true);
        const est = snap.find((e) => e.newState === 'ESTABLISHED' && e.sport === w.clientPort)!;
        expect(est).toMatchObject({ daddr: '127.0.0.1', dport: 8103, netns: netns.ns.inode });
        expect(est.cookie).not.toBe(0n);
      } finally {
        col.close();
      }
    } finally {
      await hold.stop();
      netns.delete();
    }
  });
});
