import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeRingBatch, type TcpEvent } from '../../src/decode/index.js';
import { UsageError } from '../../src/common/errors.js';
import { Tracker, resolveThresholds, type TrackerOptions } from '../../src/track/index.js';
import type { NetstatCounters } from '../../src/kernel/netstat.js';
import { event, sockFile, type SockFileSpec } from '../helpers/events.js';

const NS = 4026531840;
const ms = (n: number) => BigInt(n) * 1_000_000n;

/** A transition of a socket that entered `old` at enteredMs. */
function tr(cookie: bigint, old: string, next: string, atMs: number, enteredMs: number, over: Partial<TcpEvent> = {}): TcpEvent {
  return event({
    type: 'transition',
    tsNs: ms(atMs),
    cookie,
    enteredNs: ms(enteredMs),
    netns: NS,
    cgroupId: 1n,
    family: 'inet',
    saddr: '10.0.0.1',
    sport: 8080,
    daddr: '10.0.0.2',
    dport: 51000,
    pid: 0,
    comm: 'swapper/1',
    ownerPid: 77,
    ownerComm: 'leaky',
    oldState: old,
    newState: next,
    ...over,
  });
}

function make(opts: Partial<TrackerOptions> = {}) {
  const clock = { nowNs: 0n };
  const tracker = new Tracker({ clock: () => clock.nowNs, ...opts });
  return { tracker, clock };
}

describe('the CLOSE_WAIT leak detector', () => {
  it('fires for an owner whose sockets stay in CLOSE_WAIT past the age threshold, and explains what to look at', () => {
    const { tracker, clock } = make({ thresholds: { closeWaitAgeNs: ms(60_000) } });
    tracker.ingest([
      tr(1n, 'ESTABLISHED', 'CLOSE_WAIT', 1000, 10),
      tr(2n, 'ESTABLISHED', 'CLOSE_WAIT', 2000, 10),
      tr(3n, 'ESTABLISHED', 'CLOSE_WAIT', 2000, 10, { ownerPid: 88, ownerComm: 'fine' }),
      tr(3n, 'CLOSE_WAIT', 'LAST_ACK', 2500, 2000, { ownerPid: 88, ownerComm: 'fine' }),
    ]);
    clock.nowNs = ms(30_000);
    expect(tracker.evaluate()).toEqual([]);
    clock.nowNs = ms(61_500);
    const [a, ...rest] = tracker.evaluate();
    expect(rest).toEqual([]);
    expect(a).toMatchObject({ detector: 'close_wait_leak', netns: NS, ownerPid: 77, ownerComm: 'leaky', value: 1, threshold: 1, sinceNs: ms(61_500) });
    expect(a!.summary).toContain('leaky (pid 77) holds 2 sockets in CLOSE_WAIT');
    expect(a!.summary).toContain('10.0.0.1:8080 ← 10.0.0.2:51000');
    expect(a!.explanation).toContain('close()');
    clock.nowNs = ms(70_000);
    const again = tracker.evaluate();
    expect(again[0]).toMatchObject({ key: a!.key, value: 2, sinceNs: ms(61_500), atNs: ms(70_000) });
    expect(tracker.stats().alertsFired).toBe(1);
    // The application closes them: the alert goes away.
    tracker.ingest([tr(1n, 'CLOSE_WAIT', 'LAST_ACK', 70_001, 1000), tr(2n, 'CLOSE_WAIT', 'LAST_ACK', 70_001, 2000)]);
    expect(tracker.evaluate()).toEqual([]);
  });

  it('fires for a growing count before any socket is old', () => {
    const { tracker, clock } = make({ thresholds: { closeWaitGrowthEvaluations: 2, closeWaitGrowthMinCount: 3 } });
    let cookie = 10n;
    const grow = (n: number, atMs: number) => tracker.ingest(Array.from({ length: n }, () => tr(cookie++, 'ESTABLISHED', 'CLOSE_WAIT', atMs, 0)));
    grow(1, 100);
    clock.nowNs = ms(1000);
    expect(tracker.evaluate()).toEqual([]); // first sight counts as growth 1
    grow(2, 1100);
    clock.nowNs = ms(2000);
    const [a] = tracker.evaluate();
    expect(a).toMatchObject({ detector: 'close_wait_leak', value: 3, threshold: 3, ownerPid: 77 });
    expect(a!.summary).toContain('growing for 2 evaluations in a row');
  });
});

describe('the connect failure detector', () => {
  it('counts refused connects by destination and reason within its window', () => {
    const buf = readFileSync(new URL('../fixtures/ipv4-refused.ring', import.meta.url));
    const refused: TcpEvent[] = [];
    decodeRingBatch(buf, (e) => refused.push(e), { records: 0, malformed: 0 });
    const { tracker, clock } = make({ thresholds: { connectFailures: 3, windowNs: ms(10_000) } });
    for (let i = 0n; i < 3n; i++) tracker.ingest(refused.map((e) => ({ ...e, cookie: e.cookie + 100n * i })));
    tracker.ingest([tr(500n, 'SYN_SENT', 'CLOSE', 1000, 0, { error: 'ETIMEDOUT', daddr: '192.0.2.1', dport: 443 })]);
    clock.nowNs = refused[1]!.tsNs + ms(1);
    const alerts = tracker.evaluate();
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({
      detector: 'connect_failures',
      value: 3,
      netns: refused[0]!.netns,
      labels: { destination: '127.0.0.1:9102', reason: 'ECONNREFUSED', unit: 'failed connects' },
    });
    expect(alerts[0]!.explanation).toContain('ECONNREFUSED');
    clock.nowNs += ms(11_000);
    expect(tracker.evaluate()).toEqual([]);
  });
});

describe('the TIME_WAIT pressure detector', () => {
  const tw = (cookie: bigint, sport: number, dport: number, atMs: number) => ({
    ...tr(cookie, 'FIN_WAIT2', 'CLOSE', atMs, atMs),
    type: 'timewait_start' as const,
    oldState: null,
    newState: 'TIME_WAIT',
    substate: 'TIME_WAIT',
    sport,
    dport,
    expiresNs: ms(atMs + 60_000),
  });

  it('compares TIME_WAIT to one destination with the ephemeral port range, and the namespace total with tcp_max_tw_buckets', () => {
    const { tracker, clock } = make({
      sysctls: { portRange: (ns) => (ns === NS ? { low: 60000, high: 60009 } : null), maxTwBuckets: () => 8 },
    });
    const events = Array.from({ length: 6 }, (_, i) => tw(BigInt(i + 1), 60000 + i, 5432, 100 + i));
    events.push(tw(50n, 8080, 40000, 100)); // the server side of another connection: not an ephemeral port
    tracker.ingest(events);
    clock.nowNs = ms(200);
    const alerts = tracker.evaluate();
    expect(alerts.map((a) => a.key).sort()).toEqual([`time_wait_pressure/${NS}/10.0.0.1/10.0.0.2:5432`, `time_wait_pressure/${NS}/buckets`]);
    const ports = alerts.find((a) => a.labels.destination)!;
    expect(ports).toMatchObject({ value: 0.6, threshold: 0.5, labels: { sockets: '6', portRange: '60000-60009', local: '10.0.0.1' } });
    expect(ports.summary).toContain('60 % of the ephemeral port range');
  });
});

describe('the SYN pressure and reset detectors', () => {
  it('fire on the handshake rate of a listening port, on half-open connections in a snapshot, and on RSTs', () => {
    const { tracker, clock } = make({ thresholds: { synRecvPerSecond: 1, requestSocksPerListener: 2, resets: 3, windowNs: ms(10_000) } });
    const hs = Array.from({ length: 20 }, (_, i) => tr(BigInt(100 + i), 'LISTEN', 'SYN_RECV', 1000 + i, 0, { child: true, enteredNs: null, sport: 443, dport: 50000 + i }));
    const rst = Array.from({ length: 3 }, (_, i) => tr(BigInt(100 + i), 'SYN_RECV', 'CLOSE', 2000 + i, 1000 + i, { error: 'ECONNRESET', sport: 443, dport: 50000 + i }));
    rst.push(...rst.map((e, i) => event({ ...e, type: 'reset', tsNs: e.tsNs - 1n, reason: 'received', newState: 'SYN_RECV', oldState: null, enteredNs: null, dwellNs: null, cookie: BigInt(100 + i) })));
    tracker.ingest([...hs, ...rst]);
    const req = (cookie: bigint, dport: number): TcpEvent => ({ ...tr(cookie, 'LISTEN', 'LISTEN', 2500, 0), type: 'snapshot', oldState: null, newState: 'NEW_SYN_RECV', sport: 9000, dport, ownerPid: null, ownerComm: null });
    tracker.seed(NS, [req(900n, 1), req(901n, 2)]);
    clock.nowNs = ms(3000);
    const alerts = tracker.evaluate();
    const byKey = Object.fromEntries(alerts.map((a) => [a.key, a]));
    expect(Object.keys(byKey).sort()).toEqual([`rst_storm/${NS}`, `syn_pressure/${NS}/443`, `syn_pressure/${NS}/9000`]);
    expect(byKey[`syn_pressure/${NS}/443`]!.labels).toMatchObject({ listenPort: '443', unit: 'handshakes/s' });
    expect(byKey[`syn_pressure/${NS}/9000`]).toMatchObject({ value: 2, labels: { halfOpen: '2', unit: 'request socks' } });
    expect(byKey[`rst_storm/${NS}`]).toMatchObject({ value: 3 });
  });
});

describe('SYN pressure from polled listeners and netstat counters', () => {
  const netstat = (over: Partial<NetstatCounters> = {}): NetstatCounters => ({
    ListenOverflows: 0,
    ListenDrops: 0,
    TCPReqQFullDrop: 0,
    TCPReqQFullDoCookies: 0,
    SyncookiesSent: 0,
    SyncookiesRecv: 0,
    SyncookiesFailed: 0,
    ...over,
  });
  const poll = (tracker: Tracker, atMs: number, listeners: SockFileSpec[], counters: Partial<NetstatCounters> = {}) =>
    tracker.observeListeners({ atNs: ms(atMs), listeners: listeners.map((l) => sockFile({ netns: NS, ...l })), netstat: new Map([[NS, netstat(counters)]]) });

  it('counts drops from the second poll on (the first is a baseline), a listener new since the last poll from zero, and names the lowest-pid holder', () => {
    const { tracker, clock } = make({ thresholds: { listenerDrops: 5 } });
    const master = { cookie: 7n, sport: 80, pid: 100, comm: 'nginx' };
    const worker = { ...master, pid: 101 };
    poll(tracker, 1000, [{ ...master, listener: { drops: 1000 } }, { ...worker, listener: { drops: 1000 } }]);
    clock.nowNs = ms(1000);
    expect(tracker.evaluate()).toEqual([]); // an hour of drops before the agent: not this window's
    poll(tracker, 2000, [{ ...master, listener: { drops: 1004, acceptQueue: 129, acceptQueueMax: 128 } }, { ...worker, listener: { drops: 1004, acceptQueue: 129, acceptQueueMax: 128 } }], { ListenOverflows: 4 });
    clock.nowNs = ms(2000);
    expect(tracker.evaluate()).toEqual([]); // 4 < 5; counted once, not once per holder
    poll(tracker, 3000, [
      { ...master, listener: { drops: 1006, acceptQueue: 129, acceptQueueMax: 128 } },
      { ...worker, listener: { drops: 1006, acceptQueue: 129, acceptQueueMax: 128 } },
      { cookie: 8n, sport: 8080, pid: 200, comm: 'app', listener: { drops: 7 } },
    ], { ListenOverflows: 6 });
    clock.nowNs = ms(3000);
    const byKey = Object.fromEntries(tracker.evaluate().map((a) => [a.key, a]));
    expect(byKey[`syn_pressure/${NS}/80`]).toMatchObject({ value: 6, threshold: 5, ownerPid: 100, ownerComm: 'nginx', labels: { acceptQueue: '129/128', drops: '6', listenOverflows: '6' } });
    expect(byKey[`syn_pressure/${NS}/80`]!.summary).toBe(`listening port 80 in netns ${NS} dropped 6 SYNs or handshakes within 60 s: its accept queue is full (129 waiting, room for 128): nginx (pid 100) does not accept fast enough`);
    expect(byKey[`syn_pressure/${NS}/8080`]).toMatchObject({ value: 7, ownerComm: 'app' }); // new since the last poll: all 7 are recent
    // Out of the window, the drops no longer count.
    clock.nowNs = ms(70_000);
    poll(tracker, 70_000, [{ ...master, listener: { drops: 1006 } }]);
    expect(tracker.evaluate()).toEqual([]);
  });

  it('fires on a full SYN queue at any size, and for SYN cookies only the namespace counts (tcp_syncookies=2)', () => {
    const { tracker, clock } = make();
    poll(tracker, 1000, [{ cookie: 7n, sport: 80, listener: { requestSocks: 9, acceptQueueMax: 8, synackRetrans: 0 } }]);
    poll(tracker, 2000, [{ cookie: 7n, sport: 80, listener: { requestSocks: 9, acceptQueueMax: 8, synackRetrans: 9 } }], { SyncookiesSent: 3, TCPReqQFullDoCookies: 3 });
    clock.nowNs = ms(2000);
    const [a, ...rest] = tracker.evaluate();
    expect(rest).toEqual([]); // the namespace's cookies are explained by the listener's alert
    expect(a).toMatchObject({ key: `syn_pressure/${NS}/80`, value: 9, threshold: 8, labels: { unit: 'request socks', synackRetransmits: '9', syncookiesSent: '3', reqQFullDoCookies: '3' } });
    expect(tracker.table().total).toEqual({ NEW_SYN_RECV: 9 });

    const other = make({ thresholds: { synQueueOverflows: 20 } });
    poll(other.tracker, 1000, [{ cookie: 7n, sport: 80 }]);
    poll(other.tracker, 2000, [{ cookie: 7n, sport: 80 }], { SyncookiesSent: 25 });
    other.clock.nowNs = ms(2000);
    expect(other.tracker.evaluate()).toEqual([
      expect.objectContaining({ key: `syn_pressure/${NS}`, value: 25, threshold: 20, summary: `netns ${NS} answered 25 SYNs with cookies and dropped 0 for a full SYN queue within 60 s` }),
    ]);
  });
});

describe('the RST storm detector', () => {
  const rst = (atMs: number, reason: 'sent' | 'received', i: number, over: Partial<TcpEvent> = {}) => {
    // The sender's view: local 10.0.0.1:8080, remote 10.0.0.2:(51000+i); the receiver's is reversed.
    const ends = reason === 'sent' ? { saddr: '10.0.0.1', sport: 8080, daddr: '10.0.0.2', dport: 51000 + i } : { saddr: '10.0.0.2', sport: 51000 + i, daddr: '10.0.0.1', dport: 8080 };
    return event({ type: 'reset', tsNs: ms(atMs), cookie: BigInt(1000 + i), netns: NS, family: 'inet', reason, newState: 'ESTABLISHED', ...ends, ...over });
  };

  it('counts RSTs, not socket ends: 15 between two sockets of one namespace are 15, aborts without an RST are none', () => {
    const { tracker, clock } = make({ thresholds: { resets: 15 } });
    const events: TcpEvent[] = [];
    for (let i = 0; i < 15; i++) {
      // SO_LINGER 0 on loopback: the client's RST leaves and arrives (either order in the ring), and both ends close.
      const pair = [rst(1000 + i, 'sent', i), rst(1000 + i, 'received', i)];
      events.push(...(i % 2 ? pair.reverse() : pair));
      events.push(tr(BigInt(1000 + i), 'ESTABLISHED', 'CLOSE', 1000 + i, 500), tr(BigInt(2000 + i), 'ESTABLISHED', 'CLOSE', 1000 + i, 500, { error: 'ECONNRESET' }));
    }
    // A TCP_USER_TIMEOUT death: ESTABLISHED straight to CLOSE with ETIMEDOUT, and no RST at all.
    events.push(tr(3000n, 'ESTABLISHED', 'CLOSE', 1500, 500, { error: 'ETIMEDOUT' }));
    tracker.ingest(events);
    clock.nowNs = ms(2000);
    const [a, ...rest] = tracker.evaluate();
    expect(rest).toEqual([]);
    expect(a).toMatchObject({ key: `rst_storm/${NS}`, value: 15, labels: { sent: '15', received: '15', pairs: '15' } });
    expect(a!.summary).toBe(`15 RSTs in netns ${NS} within 60 s: 15 sent, 15 received (15 of them between two sockets of this namespace, so both)`);
    expect(tracker.stats().resets).toBe(30);
  });

  it('counts each way on its own when the other end is elsewhere, and only within the window', () => {
    const { tracker, clock } = make({ thresholds: { resets: 4 } });
    tracker.ingest([rst(1000, 'sent', 1), rst(1001, 'sent', 2), rst(1002, 'received', 3, { saddr: '10.0.0.3' }), rst(1003, 'received', 4, { saddr: '10.0.0.3' })]);
    clock.nowNs = ms(2000);
    expect(tracker.evaluate()[0]).toMatchObject({ value: 4, labels: { sent: '2', received: '2', pairs: '0' } });
    clock.nowNs = ms(70_000);
    expect(tracker.evaluate()).toEqual([]);
  });
});

describe('thresholds', () => {
  it.each([
    [{ closeWaitAgeNs: -1n }, /closeWaitAgeNs: -1 must be a positive duration/],
    [{ closeWaitAgeNs: 5 as unknown as bigint }, /closeWaitAgeNs: 5 must be a positive duration in ns/],
    [{ timeWaitPortFraction: 1.5 }, /timeWaitPortFraction: 1.5 must be a fraction/],
    [{ connectFailures: 0 }, /connectFailures: 0 must be a positive number/],
    [{ resets: 2.5 }, /resets: 2.5 must be a whole number/],
    [{ closeWaitAge: 5 } as object, /unknown threshold closeWaitAge; known: closeWaitAgeNs/],
  ])('reject %o with a usage error (exit code 2)', (bad, message) => {
    expect(() => new Tracker({ clock: () => 0n, thresholds: bad })).toThrow(message);
    try {
      resolveThresholds(bad);
    } catch (err) {
      expect(err).toBeInstanceOf(UsageError);
      expect((err as UsageError).exitCode).toBe(2);
    }
  });
});
