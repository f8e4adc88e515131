import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeRecords, decodeRingBatch, type TcpEvent } from '../../src/decode/index.js';
import { Tracker, toSsCounts, type DwellRecord } from '../../src/track/index.js';
import { addrText, encodeSummary, pb } from '../../src/publish/wire.js';
import { CLIENT_SOCKET, event, sockFile } from '../helpers/events.js';

/** Recorded kernel records from test/fixtures, decoded. */
const fixture = (name: string): TcpEvent[] => {
  const buf = readFileSync(new URL(`../fixtures/${name}`, import.meta.url));
  const out: TcpEvent[] = [];
  const stats = { records: 0, malformed: 0 };
  (name.endsWith('.iter') ? decodeRecords : decodeRingBatch)(buf, (e) => out.push(e), stats);
  if (stats.malformed) throw new Error(`fixture ${name}: ${stats.malformed} malformed records`);
  return out;
};

const NS = 4026531840;
const MS = 1_000_000n;


/** An event with sensible defaults (times in ms for readability), built by the one factory. */
function ev(over: Partial<TcpEvent> & { atMs?: number; enteredMs?: number | null }): TcpEvent {
  const { atMs = 1000, enteredMs, ...rest } = over;
  return event({
    type: 'transition',
    cookie: 1n,
    ...CLIENT_SOCKET,
    pid: 0,
    comm: 'swapper/0',
    ownerPid: 4242,
    ownerComm: 'app',
    newState: 'ESTABLISHED',
    ...rest,
    tsNs: BigInt(atMs) * MS,
    enteredNs: enteredMs == null ? null : BigInt(enteredMs) * MS,
  });
}

/** A transition old→new at atMs of a socket that entered `old` at enteredMs (null: unknown). */
const tr = (cookie: bigint, old: string, next: string, atMs: number, enteredMs: number | null, over: Partial<TcpEvent> = {}) =>
  ev({ type: 'transition', cookie, oldState: old, newState: next, atMs, enteredMs, ...over });

const ms = (n: number) => BigInt(n) * MS;

/** A timewait sock scheduled at atMs (due 60 s later) in `substate`. */
const twStart = (cookie: bigint, atMs: number, substate: 'TIME_WAIT' | 'FIN_WAIT2', over: Partial<TcpEvent> = {}) =>
  ev({ type: 'timewait_start', cookie, atMs, enteredMs: atMs, substate, newState: 'TIME_WAIT', expiresNs: ms(atMs + 60_000), ...over });

/** The active closer's FIN_WAIT1 → FIN_WAIT2 at fin2Ms, its timewait start at twMs, and its FIN_WAIT2 → CLOSE. */
const handOff = (cookie: bigint, fin1Ms: number, fin2Ms: number, twMs: number, substate: 'TIME_WAIT' | 'FIN_WAIT2') => [
  tr(cookie, 'FIN_WAIT1', 'FIN_WAIT2', fin2Ms, fin1Ms),
  twStart(cookie, twMs, substate),
  tr(cookie, 'FIN_WAIT2', 'CLOSE', twMs, fin2Ms),
];

/** A tracker on a hand-driven clock, collecting its dwell records. */
function make(opts: Partial<ConstructorParameters<typeof Tracker>[0]> = {}) {
  const clock = { nowNs: 0n };
  const records: DwellRecord[] = [];
  const tracker = new Tracker({ clock: () => clock.nowNs, onDwell: (r) => records.push(r), ...opts });
  return { tracker, records, clock };
}

const summary = (r: DwellRecord) => `${r.state}${r.timewait ? '(tw)' : ''}->${r.nextState ?? r.timewaitEnd}`;

describe('dwell records from recorded kernel events', () => {
  it('an IPv4 client-first connection gives one exact record per state left, and the client timewait stays live', () => {
    const { tracker, records } = make();
    const events = fixture('ipv4-client-first.ring');
    tracker.ingest(events);
    const client = records.filter((r) => r.cookie === 645n).map(summary);
    expect(client).toEqual(['SYN_SENT->ESTABLISHED', 'ESTABLISHED->FIN_WAIT1', 'FIN_WAIT1->FIN_WAIT2', 'FIN_WAIT2->TIME_WAIT']);
    const server = records.filter((r) => r.cookie === 646n).map(summary);
    expect(server).toEqual(['SYN_RECV->ESTABLISHED', 'ESTABLISHED->CLOSE_WAIT', 'CLOSE_WAIT->LAST_ACK', 'LAST_ACK->CLOSE']);
    expect(records.filter((r) => r.cookie === 644n).map(summary)).toEqual(['LISTEN->CLOSE']);
    expect(records.every((r) => r.precision === 'exact')).toBe(true);
    // Each dwell is the kernel's own (entry time from socket storage), record for record.
    for (const r of records) {
      const e = events.find((x) => x.type === 'transition' && x.cookie === r.cookie && x.oldState === r.state)!;
      expect(r.dwellNs).toBe(e.dwellNs);
      expect(r.enteredNs).toBe(e.enteredNs);
      expect(r.leftNs).toBe(e.tsNs);
    }
    expect(records.find((r) => r.state === 'SYN_SENT')).toMatchObject({ dwellNs: 235824n, sport: 47800, dport: 9100, ownerPid: 8566, ownerComm: 'node' });
    const snap = tracker.table();
    expect(snap.total).toEqual({ TIME_WAIT: 1 });
    expect(snap.byNetns).toEqual([{ netns: 4026532177, counts: { TIME_WAIT: 1 } }]);
    expect(tracker.stats()).toMatchObject({ events: events.length, unknownSockets: 0, corrections: 0, duplicates: 0, late: 0 });
  });

  it("the timewait's end gives an exact TIME_WAIT record and empties the table", () => {
    const { tracker, records } = make();
    const events = fixture('ipv4-client-first.ring');
    tracker.ingest(events);
    const start = events.find((e) => e.type === 'timewait_start')!;
    const endNs = start.tsNs + 60_000_000_000n;
    tracker.ingest([{ ...start, type: 'timewait_end', tsNs: endNs, enteredNs: start.tsNs, dwellNs: endNs - start.tsNs, reason: 'expired' }]);
    expect(records.at(-1)).toMatchObject({ state: 'TIME_WAIT', timewait: true, dwellNs: 60_000_000_000n, precision: 'exact', timewaitEnd: 'expired', nextState: null, cookie: 645n });
    expect(tracker.table()).toMatchObject({ total: {}, byNetns: [], sockets: 0 });
  });

  it('an IPv6 connection keeps its addresses; a refused connect ends SYN_SENT with ECONNREFUSED', () => {
    const { tracker, records } = make();
    tracker.ingest(fixture('ipv6-client-first.ring'));
    expect(records.find((r) => r.state === 'SYN_SENT')).toMatchObject({ family: 'inet6', saddr: '::1', daddr: '::1', dport: 9101 });
    records.length = 0;
    tracker.ingest(fixture('ipv4-refused.ring'));
    expect(records).toEqual([expect.objectContaining({ state: 'SYN_SENT', nextState: 'CLOSE', error: 'ECONNREFUSED', dwellNs: 351037n, precision: 'exact' })]);
    expect(tracker.table().total).toEqual({ TIME_WAIT: 1 });
  });

  it('an IPv6 socket stays IPv6 in the live table once it is in timewait, and its summary carries 16-byte addresses', () => {
    const { tracker } = make();
    tracker.ingest(fixture('ipv6-client-first.ring'));
    const [tw] = tracker.stuck({ states: ['TIME_WAIT'] });
    expect(tw).toMatchObject({ timewait: true, family: 'inet6', saddr: '::1', daddr: '::1', dport: 9101 });
    const table = tracker.table();
    const bytes = encodeSummary({}, { table, histograms: [], stuck: [tw!], eventsTotal: 0, spoolBytes: 0, spoolMessages: 0 });
    const [wire] = pb.Summary.decode(bytes).stuck;
    expect({ family: wire!.family, saddr: addrText(wire!.saddr), daddr: addrText(wire!.daddr) }).toEqual({ family: 6, saddr: '::1', daddr: '::1' });
  });
});

describe('dwell records from synthetic sequences', () => {
  it("an accept() event makes the acceptor the socket's owner, and the holder walk names the first holder of sockets it has", () => {
    const { tracker, clock } = make();
    const child = { sport: 443, dport: 50000, child: true, ownerPid: 100, ownerComm: 'nginx' };
    tracker.ingest([tr(9n, 'LISTEN', 'SYN_RECV', 1000, null, child), tr(9n, 'SYN_RECV', 'ESTABLISHED', 1001, 1000, child)]);
    clock.nowNs = ms(1500);
    expect(tracker.stuck({ states: ['ESTABLISHED'] })[0]).toMatchObject({ ownerPid: 100 }); // its listener's, until accept()
    tracker.ingest([ev({ type: 'accept', cookie: 9n, atMs: 1002, enteredMs: null, dwellNs: null, oldState: null, newState: 'ESTABLISHED', sport: 443, dport: 50000, ownerPid: 101, ownerComm: 'nginx', pid: 101, comm: 'nginx' })]);
    expect(tracker.stuck({ states: ['ESTABLISHED'] })[0]).toMatchObject({ ownerPid: 101, ownerComm: 'nginx' });
    expect(tracker.stats().accepts).toBe(1);
    // Held by two processes (in pid order): the first is the owner.
    tracker.observeHolders([sockFile({ cookie: 9n, state: 'ESTABLISHED', pid: 200, comm: 'app' }), sockFile({ cookie: 9n, state: 'ESTABLISHED', pid: 201, comm: 'helper' })]);
    expect(tracker.stuck({ states: ['ESTABLISHED'] })[0]).toMatchObject({ ownerPid: 200, ownerComm: 'app' });
  });

  it('a same-state transition (FIN_WAIT1 -> FIN_WAIT1) keeps the entry time: one FIN_WAIT1 record of the whole 610 ms, counted once', () => {
    const { tracker, records, clock } = make();
    tracker.ingest([tr(7n, 'CLOSE', 'SYN_SENT', 100, null), tr(7n, 'SYN_SENT', 'ESTABLISHED', 200, 100), tr(7n, 'ESTABLISHED', 'FIN_WAIT1', 1000, 200)]);
    // shutdown(SHUT_WR) at 1000, close() at 1300 before the FIN is acked: the kernel keeps the entry time.
    tracker.ingest([tr(7n, 'FIN_WAIT1', 'FIN_WAIT1', 1300, 1000, { actorIsOwner: true })]);
    clock.nowNs = ms(1500);
    expect(tracker.stuck({ states: ['FIN_WAIT1'] })[0]).toMatchObject({ ageNs: ms(500), ageIsLowerBound: false });
    tracker.ingest([tr(7n, 'FIN_WAIT1', 'FIN_WAIT2', 1610, 1000)]);
    expect(records.filter((r) => r.state === 'FIN_WAIT1')).toEqual([expect.objectContaining({ dwellNs: ms(610), nextState: 'FIN_WAIT2', precision: 'exact', enteredNs: ms(1000) })]);
    expect(records.map(summary)).toEqual(['SYN_SENT->ESTABLISHED', 'ESTABLISHED->FIN_WAIT1', 'FIN_WAIT1->FIN_WAIT2']);
    const fin1 = tracker.takeHistograms().totals().get('FIN_WAIT1')!;
    expect(fin1.totalCount).toBe(1);
    expect(tracker.stats()).toMatchObject({ sameStateTransitions: 1, corrections: 0, duplicates: 0, late: 0 });
  });

  it('simultaneous close: CLOSING is a state of its own, handed to TIME_WAIT', () => {
    const { tracker, records } = make();
    tracker.ingest([
      tr(7n, 'CLOSE', 'SYN_SENT', 0, null),
      tr(7n, 'SYN_SENT', 'ESTABLISHED', 1, 0),
      tr(7n, 'ESTABLISHED', 'FIN_WAIT1', 100, 1),
      tr(7n, 'FIN_WAIT1', 'CLOSING', 101, 100),
      twStart(7n, 103, 'TIME_WAIT'),
      tr(7n, 'CLOSING', 'CLOSE', 103, 101),
    ]);
    expect(records.map(summary)).toEqual(['SYN_SENT->ESTABLISHED', 'ESTABLISHED->FIN_WAIT1', 'FIN_WAIT1->CLOSING', 'CLOSING->TIME_WAIT']);
    expect(records.at(-1)!.dwellNs).toBe(ms(2));
    expect(tracker.table().total).toEqual({ TIME_WAIT: 1 });
  });

  it('an orphaned FIN_WAIT2 that times out is a FIN_WAIT2 timewait record, not TIME_WAIT', () => {
    const { tracker, records } = make();
    tracker.ingest([
      ...handOff(8n, 5, 10, 11, 'FIN_WAIT2'),
    ]);
    expect(tracker.table().total).toEqual({ FIN_WAIT2: 1 });
    expect(toSsCounts(tracker.table().total)).toEqual({ 'FIN-WAIT-2': 1 });
    tracker.ingest([ev({ type: 'timewait_end', cookie: 8n, atMs: 60_011, enteredMs: 11, substate: 'FIN_WAIT2', newState: 'TIME_WAIT', reason: 'expired', expiresNs: ms(60_011) })]);
    expect(records.map(summary)).toEqual(['FIN_WAIT1->FIN_WAIT2', 'FIN_WAIT2->FIN_WAIT2', 'FIN_WAIT2(tw)->expired']);
    expect(records.at(-1)).toMatchObject({ dwellNs: ms(60_000), precision: 'exact' });
  });

  it('a timewait whose end event never came leaves the table once it is long past due, counted, its phase estimated; a late end then changes nothing', () => {
    const { tracker, records, clock } = make();
    tracker.ingest([
      ...handOff(30n, 800, 900, 1000, 'TIME_WAIT'),
    ]);
    clock.nowNs = ms(1000 + 60_000 + 7_900); // due, plus less than the grace: the timer may still fire
    expect(tracker.table().total).toEqual({ TIME_WAIT: 1 });
    clock.nowNs = ms(1000 + 60_000 + 8_100);
    expect(tracker.table().total).toEqual({});
    expect(tracker.stats().timewaitsOverdue).toBe(1);
    expect(records.at(-1)).toMatchObject({ state: 'TIME_WAIT', timewait: true, enteredNs: ms(1000), leftNs: ms(61_000), precision: 'estimated', timewaitEnd: null });
    const n = records.length;
    const unknown = tracker.stats().unknownSockets;
    tracker.ingest([ev({ type: 'timewait_end', cookie: 30n, atMs: 61_000, enteredMs: 1000, substate: 'TIME_WAIT', newState: 'TIME_WAIT', reason: 'expired', expiresNs: ms(61_000) })]);
    expect(records.length).toBe(n);
    expect(tracker.stats()).toMatchObject({ late: 1, unknownSockets: unknown });
  });

  it("the peer's FIN flipping an orphan to TIME_WAIT splits the phase at the re-armed due time, marked estimated", () => {
    const { tracker, records } = make();
    tracker.ingest([
      twStart(9n, 1000, 'FIN_WAIT2'),
      // Flipped at 3000 (no event); killed at 5000 with the timer re-armed to 3000 + 60 s.
      ev({ type: 'timewait_end', cookie: 9n, atMs: 5000, enteredMs: 1000, substate: 'TIME_WAIT', newState: 'TIME_WAIT', reason: 'killed', expiresNs: ms(63_000) }),
    ]);
    expect(records.map((r) => [r.state, r.enteredNs, r.leftNs, r.precision, r.timewaitEnd])).toEqual([
      ['FIN_WAIT2', ms(1000), ms(3000), 'estimated', null],
      ['TIME_WAIT', ms(3000), ms(5000), 'estimated', 'killed'],
    ]);
    expect(tracker.stats().unknownSockets).toBe(1); // its socket was never seen
  });

  it("with the kernel's flip event the split is exact, and the table shows TIME_WAIT from the flip on, as ss does", () => {
    const { tracker, records } = make();
    tracker.ingest([
      ...handOff(19n, 800, 900, 1000, 'FIN_WAIT2'),
    ]);
    expect(tracker.table().total).toEqual({ FIN_WAIT2: 1 });
    const flip = ev({ type: 'timewait_start', flip: true, cookie: 19n, atMs: 3000, enteredMs: 1000, substate: 'TIME_WAIT', newState: 'TIME_WAIT', expiresNs: ms(63_000) });
    tracker.ingest([flip]);
    expect(tracker.table().total).toEqual({ TIME_WAIT: 1 });
    expect(tracker.stuck({ states: ['TIME_WAIT'] })[0]).toMatchObject({ state: 'TIME_WAIT', timewait: true, ageIsLowerBound: false });
    tracker.ingest([flip]); // a replay changes nothing
    expect(tracker.stats()).toMatchObject({ timewaitFlips: 1, duplicates: 1 });
    tracker.ingest([ev({ type: 'timewait_end', cookie: 19n, atMs: 5000, enteredMs: 1000, substate: 'TIME_WAIT', newState: 'TIME_WAIT', reason: 'killed', expiresNs: ms(63_000) })]);
    expect(records.filter((r) => r.timewait).map((r) => [r.state, r.enteredNs, r.leftNs, r.precision, r.nextState, r.timewaitEnd])).toEqual([
      ['FIN_WAIT2', ms(1000), ms(3000), 'exact', 'TIME_WAIT', null],
      ['TIME_WAIT', ms(3000), ms(5000), 'exact', null, 'killed'],
    ]);
    expect(tracker.table().sockets).toBe(0);
  });

  it("a local peer's FIN (its CLOSE_WAIT→LAST_ACK) flips the orphan's timewait when the kernel re-arms it silently", () => {
    const { tracker, records } = make();
    // Client 10.0.0.1:40000 -> server 10.0.0.2:443, both on this host; the client closed first.
    tracker.ingest([
      twStart(21n, 1000, 'FIN_WAIT2'),
      tr(22n, 'ESTABLISHED', 'CLOSE_WAIT', 1000, 500, { saddr: '10.0.0.2', sport: 443, daddr: '10.0.0.1', dport: 40000, child: true }),
    ]);
    expect(tracker.table().total).toEqual({ FIN_WAIT2: 1, CLOSE_WAIT: 1 });
    // Another connection's peer closing changes nothing here.
    tracker.ingest([tr(23n, 'CLOSE_WAIT', 'LAST_ACK', 1100, 1000, { saddr: '10.0.0.2', sport: 443, daddr: '10.0.0.9', dport: 40000 })]);
    expect(tracker.table().total).toEqual({ FIN_WAIT2: 1, CLOSE_WAIT: 1, LAST_ACK: 1 });
    tracker.ingest([tr(22n, 'CLOSE_WAIT', 'LAST_ACK', 1500, 1000, { saddr: '10.0.0.2', sport: 443, daddr: '10.0.0.1', dport: 40000 })]);
    expect(tracker.table().total).toEqual({ TIME_WAIT: 1, LAST_ACK: 2 });
    const fw2 = records.find((r) => r.timewait && r.state === 'FIN_WAIT2')!;
    expect(fw2).toMatchObject({ cookie: 21n, sport: 40000, dport: 443, enteredNs: ms(1000), leftNs: ms(1500), precision: 'estimated', nextState: 'TIME_WAIT' });
    // The kernel's own flip event, when it comes after, adds nothing; the end is one TIME_WAIT phase from the flip.
    tracker.ingest([
      ev({ type: 'timewait_start', flip: true, cookie: 21n, atMs: 1501, enteredMs: 1000, substate: 'TIME_WAIT', newState: 'TIME_WAIT', expiresNs: ms(61_501) }),
      ev({ type: 'timewait_end', cookie: 21n, atMs: 61_501, enteredMs: 1000, substate: 'TIME_WAIT', newState: 'TIME_WAIT', reason: 'expired', expiresNs: ms(61_501) }),
    ]);
    expect(records.filter((r) => r.timewait).map((r) => [r.state, r.enteredNs, r.leftNs])).toEqual([
      ['FIN_WAIT2', ms(1000), ms(1500)],
      ['TIME_WAIT', ms(1500), ms(61_501)],
    ]);
    expect(tracker.stats().timewaitFlips).toBe(1);
  });

  it('a flip of a timewait the agent never saw start adds it as TIME_WAIT, with the FIN_WAIT2 phase exact from the kernel', () => {
    const { tracker, records } = make();
    tracker.ingest([ev({ type: 'timewait_start', flip: true, cookie: 20n, atMs: 3000, enteredMs: 1000, substate: 'TIME_WAIT', newState: 'TIME_WAIT', expiresNs: ms(63_000) })]);
    expect(tracker.table().total).toEqual({ TIME_WAIT: 1 });
    expect(records.map((r) => [r.state, r.dwellNs, r.precision])).toEqual([['FIN_WAIT2', ms(2000), 'exact']]);
  });

  it('an RST close ends ESTABLISHED straight in CLOSE, with the error', () => {
    const { tracker, records } = make();
    tracker.ingest([tr(10n, 'SYN_RECV', 'ESTABLISHED', 5, 4), tr(10n, 'ESTABLISHED', 'CLOSE', 9, 5, { error: 'ECONNRESET' })]);
    expect(records.at(-1)).toMatchObject({ state: 'ESTABLISHED', nextState: 'CLOSE', error: 'ECONNRESET', dwellNs: ms(4) });
    expect(tracker.table().sockets).toBe(0);
  });

  it('a socket older than the agent gives lower bounds, never exact dwells; a snapshot makes the bound useful', () => {
    const { tracker, records } = make();
    tracker.ingest([tr(11n, 'ESTABLISHED', 'FIN_WAIT1', 2000, null)]);
    expect(records[0]).toMatchObject({ precision: 'lower-bound', dwellNs: 0n, enteredNs: null });
    expect(tracker.stats()).toMatchObject({ unknownSockets: 1, lowerBoundRecords: 1 });

    const seen = make();
    seen.tracker.seed(NS, [ev({ type: 'snapshot', cookie: 12n, atMs: 500, enteredMs: null, newState: 'ESTABLISHED' })]);
    seen.tracker.ingest([tr(12n, 'ESTABLISHED', 'CLOSE_WAIT', 2000, null)]);
    expect(seen.records[0]).toMatchObject({ precision: 'lower-bound', enteredNs: ms(500), dwellNs: ms(1500) });
    // The next state began under our eyes: exact again.
    seen.tracker.ingest([tr(12n, 'CLOSE_WAIT', 'LAST_ACK', 2100, 2000)]);
    expect(seen.records[1]).toMatchObject({ precision: 'exact', dwellNs: ms(100) });
    expect(seen.tracker.stats().unknownSockets).toBe(0);
  });

  it('events lost in the middle: the kernel entry time keeps the next dwell exact, and the table takes the correction', () => {
    const { tracker, records } = make();
    tracker.ingest([tr(13n, 'CLOSE', 'SYN_SENT', 0, null), tr(13n, 'SYN_SENT', 'ESTABLISHED', 1, 0)]);
    // ESTABLISHED→FIN_WAIT1 at 50 was lost (ring full).
    tracker.ingest([tr(13n, 'FIN_WAIT1', 'FIN_WAIT2', 60, 50)]);
    expect(records.at(-1)).toMatchObject({ state: 'FIN_WAIT1', dwellNs: ms(10), precision: 'exact' });
    expect(tracker.table().total).toEqual({ FIN_WAIT2: 1 });
    expect(tracker.stats().corrections).toBe(1);
  });

  it('duplicate and out-of-order events change nothing twice and never make a count negative', () => {
    const { tracker, records } = make();
    const seq = [
      tr(14n, 'CLOSE', 'SYN_SENT', 0, null),
      tr(14n, 'SYN_SENT', 'ESTABLISHED', 1, 0),
      tr(14n, 'ESTABLISHED', 'CLOSE', 9, 1, { error: 'ECONNRESET' }),
    ];
    tracker.ingest(seq);
    const n = records.length;
    tracker.ingest(seq); // the whole batch again
    expect(records.length).toBe(n);
    expect(tracker.table().sockets).toBe(0);
    // A late event for a closed socket does not bring it back.
    tracker.ingest([tr(14n, 'SYN_SENT', 'ESTABLISHED', 1, 0)]);
    expect(tracker.table().sockets).toBe(0);
    // Out of order within a live socket: the newer state stays.
    tracker.ingest([tr(15n, 'CLOSE', 'LISTEN', 0, null), tr(15n, 'LISTEN', 'CLOSE', 100, 0)]);
    tracker.ingest([tr(16n, 'CLOSE', 'SYN_SENT', 10, null), tr(16n, 'ESTABLISHED', 'FIN_WAIT1', 30, 20), tr(16n, 'SYN_SENT', 'ESTABLISHED', 20, 10)]);
    expect(tracker.table().total).toEqual({ FIN_WAIT1: 1 });
    const s = tracker.stats();
    expect(s.duplicates + s.late).toBeGreaterThanOrEqual(4);
    expect(Object.values(tracker.table().total).every((c) => c > 0)).toBe(true);
  });
});

describe('the live table', () => {
  it('is seeded from a recorded snapshot, counting timewait sockets as ss does', () => {
    const { tracker } = make();
    const snap = fixture('snapshot.iter');
    tracker.seed(snap[0]!.netns, snap);
    expect(tracker.table().total).toEqual({ LISTEN: 1, ESTABLISHED: 2, TIME_WAIT: 2 });
    expect(toSsCounts(tracker.table().total)).toEqual({ LISTEN: 1, ESTAB: 2, 'TIME-WAIT': 2 });
  });

  it('heals from a later snapshot: gone sockets removed, wrong states corrected, missing ones added — all counted', () => {
    const { tracker, clock } = make();
    const snap = fixture('snapshot.iter');
    const netns = snap[0]!.netns;
    tracker.seed(netns, snap);
    clock.nowNs = snap.at(-1)!.tsNs + 10_000_000_000n;
    const later = (e: (typeof snap)[number]) => ({ ...e, tsNs: e.tsNs + 5_000_000_000n });
    const est = snap.filter((e) => e.newState === 'ESTABLISHED');
    // Ten seconds on: one TIME_WAIT ended and one ESTABLISHED went to CLOSE_WAIT, both unseen; one new socket.
    const next = [
      later(snap.find((e) => e.newState === 'LISTEN')!),
      later(snap.find((e) => e.newState === 'TIME_WAIT')!),
      later(est[0]!),
      { ...later(est[1]!), newState: 'CLOSE_WAIT', enteredNs: null },
      ev({ type: 'snapshot', cookie: 999n, netns, newState: 'ESTABLISHED', atMs: Number((snap[0]!.tsNs + 5_000_000_000n) / 1_000_000n) }),
    ];
    tracker.seed(netns, next);
    expect(tracker.table().total).toEqual({ LISTEN: 1, ESTABLISHED: 2, CLOSE_WAIT: 1, TIME_WAIT: 1 });
    expect(tracker.stats()).toMatchObject({ healedAdded: 1, healedRemoved: 1, healedCorrected: 1 });
    // An empty snapshot of the namespace empties it.
    tracker.seed(netns, []);
    expect(tracker.table()).toMatchObject({ total: {}, sockets: 0 });
  });

  it("drops a snapshot's request sock when its handshake completes, or after its timeout", () => {
    const { tracker, clock } = make();
    const req = (cookie: bigint, sport: number, dport: number) =>
      ev({ type: 'snapshot', cookie, newState: 'NEW_SYN_RECV', atMs: 100, saddr: '10.0.0.1', sport, daddr: '10.0.0.9', dport, ownerPid: null, ownerComm: null });
    tracker.seed(NS, [req(20n, 443, 50000), req(21n, 443, 50001)]);
    expect(toSsCounts(tracker.table().total)).toEqual({ 'SYN-RECV': 2 });
    tracker.ingest([tr(22n, 'LISTEN', 'SYN_RECV', 200, null, { child: true, sport: 443, daddr: '10.0.0.9', dport: 50000 })]);
    expect(tracker.table().total).toEqual({ NEW_SYN_RECV: 1, SYN_RECV: 1 });
    clock.nowNs = ms(100 + 75_000);
    expect(tracker.table().total).toEqual({ SYN_RECV: 1 });
    expect(tracker.stats().requestSocksExpired).toBe(1);
  });

  it('stays flat under churn: 5 000 connections leave no socket behind', () => {
    const { tracker } = make({ onDwell: undefined });
    for (let i = 0; i < 5_000; i++) {
      const c = BigInt(1000 + i);
      const t = i * 10;
      tracker.ingest([
        tr(c, 'CLOSE', 'SYN_SENT', t, null),
        tr(c, 'SYN_SENT', 'ESTABLISHED', t + 1, t),
        tr(c, 'ESTABLISHED', 'FIN_WAIT1', t + 2, t + 1),
        tr(c, 'FIN_WAIT1', 'FIN_WAIT2', t + 3, t + 2),
        ev({ type: 'timewait_start', cookie: c, atMs: t + 4, enteredMs: t + 4, substate: 'TIME_WAIT', newState: 'TIME_WAIT' }),
        tr(c, 'FIN_WAIT2', 'CLOSE', t + 4, t + 3),
        ev({ type: 'timewait_end', cookie: c, atMs: t + 5, enteredMs: t + 4, substate: 'TIME_WAIT', newState: 'TIME_WAIT', reason: 'killed' }),
      ]);
    }
    expect(tracker.table()).toMatchObject({ sockets: 0, total: {} });
    expect(tracker.stats()).toMatchObject({ dwellRecords: 25_000, unknownSockets: 0, corrections: 0, late: 0, duplicates: 0 });
  });
});

describe('stuck sockets', () => {
  it('lists the oldest sockets per state with their age and owner; unknown starts are lower bounds', () => {
    const { tracker, clock } = make();
    tracker.seed(NS, [ev({ type: 'snapshot', cookie: 30n, atMs: 100, enteredMs: null, newState: 'CLOSE_WAIT', ownerPid: null, ownerComm: null })]);
    tracker.ingest([
      tr(31n, 'ESTABLISHED', 'CLOSE_WAIT', 1000, 10, { ownerPid: 77, ownerComm: 'leaky', dport: 5432 }),
      tr(32n, 'ESTABLISHED', 'CLOSE_WAIT', 3000, 10, { ownerPid: 77, ownerComm: 'leaky' }),
      tr(33n, 'SYN_RECV', 'ESTABLISHED', 500, 400),
    ]);
    clock.nowNs = ms(10_000);
    const stuck = tracker.stuck({ perState: 2, states: ['CLOSE_WAIT'] });
    expect(stuck.map((s) => [s.cookie, s.state, s.ageNs, s.ageIsLowerBound, s.ownerPid])).toEqual([
      [30n, 'CLOSE_WAIT', ms(9_900), true, null],
      [31n, 'CLOSE_WAIT', ms(9_000), false, 77],
    ]);
    expect(stuck[1]).toMatchObject({ ownerComm: 'leaky', daddr: '10.0.0.2', dport: 5432 });
    expect(tracker.stuck().map((s) => [s.state, s.cookie])).toEqual([
      ['ESTABLISHED', 33n],
      ['CLOSE_WAIT', 30n],
      ['CLOSE_WAIT', 31n],
      ['CLOSE_WAIT', 32n],
    ]);
  });
});
