/**
 * The agent's hot path (records read in place: RecordView → Tracker.ingestRecord → DwellColumns
 * as rows) against the object path it replaces (decodeEvent → Tracker.ingest → DwellRecord →
 * DwellColumns.push / encodeDwell): for recorded churn and for random record sequences, the
 * same dwell records, wire bytes, counters, live table, stuck sockets, histograms and alerts —
 * RST and accept() events and same-state transitions (FIN_WAIT1 → FIN_WAIT1) included.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeEvent, decodeRingBatch, forEachRingRecord, RecordEvent, RecordView, type TcpEvent } from '../../src/decode/index.js';
import { EVENT_SIZE } from '../../src/kernel/abi.js';
import { DwellColumns, TransitionColumns } from '../../src/publish/columns.js';
import { encodeDwell, encodeTransitions } from '../../src/publish/wire.js';
import { Tracker, type DwellRecord } from '../../src/track/index.js';
import { CLIENT_SOCKET, eventRecord, type EventSpec } from '../helpers/events.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/${name}`, import.meta.url));
const header = { hostId: 'h1', bootId: 'b', agentVersion: '0.1.0', epoch: 3, seq: 7, drops: {}, bootToUnixNs: 0, sentAtBootNs: 5 };

/** Three trackers fed the same records: the object path, the fast path with DwellRecords, the fast path into columns. */
function trio(clockNs: bigint) {
  const slowRecords: DwellRecord[] = [];
  const fastRecords: DwellRecord[] = [];
  const columns = new DwellColumns();
  const clock = () => clockNs;
  // Low enough for the RST storm alert to fire on a few resets, a window wide enough to hold every event.
  const thresholds = { resets: 2, windowNs: 10n ** 15n };
  return {
    slowRecords,
    fastRecords,
    columns,
    slow: new Tracker({ clock, onDwell: (r) => slowRecords.push(r), sysctls: {}, thresholds }),
    fast: new Tracker({ clock, onDwell: (r) => fastRecords.push(r), sysctls: {}, thresholds }),
    rows: new Tracker({ clock, dwellRows: columns, sysctls: {}, thresholds }),
  };
}

type Trio = ReturnType<typeof trio>;

function expectSame(t: Trio): void {
  expect(t.fastRecords).toEqual(t.slowRecords);
  // table() and evaluate() expire overdue timewaits: each query on all three in turn
  const queries = [
    (x: Tracker) => x.stats(),
    (x: Tracker) => x.table(),
    (x: Tracker) => x.stuck({ perState: 10 }),
    (x: Tracker) => x.evaluate(),
    (x: Tracker) => x.takeHistograms().encode(),
    (x: Tracker) => x.stats(),
  ];
  for (const q of queries) {
    const want = q(t.slow);
    expect(q(t.fast)).toEqual(want);
    expect(q(t.rows)).toEqual(want);
  }
  expect(t.fastRecords).toEqual(t.slowRecords);
  if (t.slowRecords.length === 0) {
    expect(t.columns.length).toBe(0);
    return;
  }
  const reference = new DwellColumns();
  for (const r of t.slowRecords) reference.push(r);
  const bytes = Buffer.from(t.columns.encode(header));
  expect(bytes.equals(Buffer.from(encodeDwell(t.slowRecords, header)))).toBe(true);
  expect(bytes.equals(Buffer.from(reference.encode(header)))).toBe(true);
}

/** Records framed as a ring batch from bpf-ts-loader ([u32 length][u32 0][record]). */
function ringOf(recs: readonly Buffer[]): Buffer {
  const framed = Buffer.alloc(recs.length * (8 + EVENT_SIZE));
  recs.forEach((rec, i) => {
    framed.writeUInt32LE(EVENT_SIZE, i * (8 + EVENT_SIZE));
    rec.copy(framed, i * (8 + EVENT_SIZE) + 8);
  });
  return framed;
}

/** Feeds one record to the object path (decoded) and to both fast paths (in place). */
function feed(t: Trio, view: RecordView, rec: Buffer): void {
  const e = decodeEvent(rec, 0);
  if (!e) return;
  t.slow.ingest([e]);
  const stats = { records: 0, malformed: 0 };
  forEachRingRecord(ringOf([rec]), view, stats, (v, off) => {
    t.fast.ingestRecord(v, off);
    t.rows.ingestRecord(v, off);
  });
  expect(stats).toEqual({ records: 1, malformed: 0 }); // every record decodeEvent takes, the fast path takes
}

/** A few records of each kind 14 added (RSTs both ways and without a socket, accept()s with and without an owner), decodable. */
const NEW_KINDS: readonly Buffer[] = [
  eventRecord({ type: 'reset', tsNs: 10n, cookie: 7n, ...CLIENT_SOCKET, newState: 'ESTABLISHED', reason: 'sent', ownerPid: 100, ownerComm: 'client', comm: 'client' }),
  eventRecord({ type: 'reset', tsNs: 11n, cookie: 8n, ...CLIENT_SOCKET, family: 'inet6', saddr: '::1', daddr: '::1', newState: 'SYN_SENT', reason: 'received', comm: 'swapper/1' }),
  eventRecord({ type: 'reset', tsNs: 12n, cookie: 0n, ...CLIENT_SOCKET, newState: 'UNKNOWN(0)', reason: 'sent' }),
  eventRecord({ type: 'accept', tsNs: 13n, cookie: 9n, ...CLIENT_SOCKET, newState: 'ESTABLISHED', ownerPid: 201, ownerComm: 'nginx', pid: 202, comm: 'nginx' }),
  eventRecord({ type: 'accept', tsNs: 14n, cookie: 10n, ...CLIENT_SOCKET, newState: 'CLOSE_WAIT', enteredNs: 2n }),
];

describe('Tracker.ingestRecord: the object path, without the objects', () => {
  it('random connection lifecycles as the kernel orders them (client first, orphans and flips, resets, accept(), lingering closes), with events lost and repeated', () => {
    const NS = 4026531840;
    const conn = fc.record({
      orphan: fc.boolean(),
      flip: fc.constantFrom('none', 'event', 'peer'),
      rst: fc.boolean(),
      accept: fc.constantFrom('none', 'established', 'close_wait'),
      linger: fc.boolean(),
      end: fc.constantFrom('expired', 'killed', 'none'),
      v6: fc.boolean(),
      gapMs: fc.integer({ min: 0, max: 70_000 }),
      drop: fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 14, minLength: 14 }),
    });
    fc.assert(
      fc.property(fc.array(conn, { minLength: 1, maxLength: 12 }), fc.integer({ min: 0, max: 200 }), (conns, seedAt) => {
        const t = trio(400_000_000_000n);
        const view = new RecordView();
        const recs: { ts: bigint; rec: Buffer }[] = [];
        let start = 100_000_000_000n;
        conns.forEach((c, i) => {
          start += BigInt(c.gapMs) * 1_000_000n;
          const port = 40000 + i;
          const fam = c.v6 ? { family: 'inet6' as const, saddr: '::1', daddr: '::1' } : { family: 'inet' as const, saddr: '127.0.0.1', daddr: '127.0.0.2' };
          const cli = { cookie: BigInt(2 * i + 1), netns: NS, cgroupId: 3n, ...fam, sport: port, dport: 8080, ownerPid: 100, ownerComm: 'client' };
          const srv = { cookie: BigInt(2 * i + 2), netns: NS, cgroupId: 3n, ...fam, saddr: fam.daddr, daddr: fam.saddr, sport: 8080, dport: port, ownerPid: 200, ownerComm: 'server' };
          const entered = new Map<bigint, bigint>();
          let k = 0;
          const put = (at: bigint, spec: Omit<EventSpec, 'tsNs'>) => {
            const drop = c.drop[k++ % c.drop.length]!;
            const known = spec.cookie !== undefined ? entered.get(spec.cookie) : undefined;
            const full: EventSpec = { enteredNs: known ?? null, ...spec, tsNs: at };
            if (spec.type === 'transition' && spec.cookie !== undefined) entered.set(spec.cookie, at);
            if (drop === 0) return; // lost
            recs.push({ ts: at, rec: eventRecord(full) });
            if (drop === 1) recs.push({ ts: at, rec: eventRecord(full) }); // delivered twice
          };
          const ms = (n: number) => start + BigInt(n) * 1_000_000n;
          put(ms(0), { type: 'transition', ...cli, sport: 0, oldState: 'CLOSE', newState: 'SYN_SENT', actorIsOwner: true });
          put(ms(1), { type: 'transition', ...srv, oldState: 'LISTEN', newState: 'SYN_RECV', child: true, enteredNs: null });
          put(ms(1), { type: 'transition', ...cli, oldState: 'SYN_SENT', newState: 'ESTABLISHED' });
          put(ms(1), { type: 'transition', ...srv, oldState: 'SYN_RECV', newState: 'ESTABLISHED', child: true });
          // accept() hands the server's socket to a worker (its owner from then on), early or once it is in CLOSE_WAIT
          const worker = { ...srv, ownerPid: 300 + i, ownerComm: 'worker', pid: 300 + i, comm: 'worker' };
          if (c.accept === 'established') put(ms(2), { type: 'accept', ...worker, newState: 'ESTABLISHED' });
          if (c.rst) {
            put(ms(5), { type: 'reset', ...cli, newState: 'ESTABLISHED', reason: 'sent' });
            put(ms(5), { type: 'reset', ...srv, newState: 'ESTABLISHED', reason: 'received' });
            put(ms(5), { type: 'transition', ...cli, oldState: 'ESTABLISHED', newState: 'CLOSE', error: 'ECONNRESET' });
            put(ms(5), { type: 'transition', ...srv, oldState: 'ESTABLISHED', newState: 'CLOSE', error: 'ECONNRESET' });
            return;
          }
          put(ms(10), { type: 'transition', ...cli, oldState: 'ESTABLISHED', newState: 'FIN_WAIT1', actorIsOwner: true });
          put(ms(10), { type: 'transition', ...srv, oldState: 'ESTABLISHED', newState: 'CLOSE_WAIT' });
          if (c.accept === 'close_wait') put(ms(10), { type: 'accept', ...worker, newState: 'CLOSE_WAIT' });
          if (c.linger) {
            // shutdown(SHUT_WR) then close() before the FIN is acked: FIN_WAIT1 -> FIN_WAIT1, the entry time kept (as the kernel keeps it)
            const at = ms(10);
            const drop = c.drop[k++ % c.drop.length]!;
            const full: EventSpec = { type: 'transition', ...cli, oldState: 'FIN_WAIT1', newState: 'FIN_WAIT1', enteredNs: at, tsNs: ms(10) + 300_000n, actorIsOwner: true };
            if (drop !== 0) recs.push({ ts: full.tsNs, rec: eventRecord(full) });
            if (drop === 1) recs.push({ ts: full.tsNs, rec: eventRecord(full) });
          }
          put(ms(10) + (c.linger ? 600_000n : 0n), { type: 'transition', ...cli, oldState: 'FIN_WAIT1', newState: 'FIN_WAIT2' });
          const sub = c.orphan ? 'FIN_WAIT2' : 'TIME_WAIT';
          put(ms(11), { type: 'timewait_start', ...cli, newState: 'TIME_WAIT', substate: sub, enteredNs: ms(11), expiresNs: ms(11 + 60_000) });
          put(ms(11), { type: 'transition', ...cli, oldState: 'FIN_WAIT2', newState: 'CLOSE' });
          let due = ms(11 + 60_000);
          if (c.orphan && c.flip !== 'none') {
            put(ms(20), { type: 'transition', ...srv, oldState: 'CLOSE_WAIT', newState: 'LAST_ACK', actorIsOwner: true });
            due = ms(20 + 60_000);
            if (c.flip === 'event') put(ms(20), { type: 'timewait_start', ...cli, newState: 'TIME_WAIT', substate: 'TIME_WAIT', flip: true, enteredNs: ms(11), expiresNs: due });
            put(ms(21), { type: 'transition', ...srv, oldState: 'LAST_ACK', newState: 'CLOSE' });
          } else {
            put(ms(20), { type: 'transition', ...srv, oldState: 'CLOSE_WAIT', newState: 'LAST_ACK', actorIsOwner: true });
            put(ms(21), { type: 'transition', ...srv, oldState: 'LAST_ACK', newState: 'CLOSE' });
          }
          if (c.end !== 'none') {
            const at = c.end === 'expired' ? due : ms(30);
            put(at, { type: 'timewait_end', ...cli, newState: 'TIME_WAIT', substate: c.orphan && c.flip !== 'none' ? 'TIME_WAIT' : sub, reason: c.end, enteredNs: ms(11), expiresNs: due });
          }
        });
        recs.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
        recs.forEach(({ rec }, i) => {
          if (i === seedAt) for (const tr of [t.slow, t.fast, t.rows]) tr.seed(NS, []);
          feed(t, view, rec);
        });
        expectSame(t);
      }),
      { numRuns: Number(process.env.FAST_PATH_RUNS ?? 300) },
    );
  });

  it('recorded churn (3,000 records from the middle of a run) and the recorded fixtures', () => {
    for (const name of ['churn-client-first.ring', 'ipv4-client-first.ring', 'ipv6-client-first.ring', 'ipv4-refused.ring']) {
      const batch = fixture(name);
      const t = trio(10n ** 15n);
      const events: TcpEvent[] = [];
      const stats = { records: 0, malformed: 0 };
      decodeRingBatch(batch, (e) => events.push(e), stats);
      t.slow.ingest(events);
      const view = new RecordView();
      const fastStats = { records: 0, malformed: 0 };
      forEachRingRecord(batch, view, fastStats, (v, off) => {
        t.fast.ingestRecord(v, off);
        t.rows.ingestRecord(v, off);
      });
      expect(fastStats).toEqual(stats);
      expect(t.slowRecords.length).toBeGreaterThan(0);
      expectSame(t);
    }
  });

  it('the TransitionBatch from records in place is the one protobufjs writes for the decoded events', () => {
    const batch = fixture('churn-client-first.ring');
    const events: TcpEvent[] = [];
    decodeRingBatch(batch, (e) => events.push(e), { records: 0, malformed: 0 });
    const cols = new TransitionColumns();
    forEachRingRecord(batch, new RecordView(), { records: 0, malformed: 0 }, (v, off) => cols.appendView(v, off));
    expect(Buffer.from(cols.encode(header, 9n)).equals(Buffer.from(encodeTransitions(events, header, 9n)))).toBe(true);
    // RSTs (their direction in tw_reason) and accept()s among transitions
    const mixed = ringOf([NEW_KINDS[0]!, batch.subarray(8, 8 + EVENT_SIZE), ...NEW_KINDS.slice(1)]);
    const mixedEvents: TcpEvent[] = [];
    decodeRingBatch(mixed, (e) => mixedEvents.push(e), { records: 0, malformed: 0 });
    expect(mixedEvents.map((e) => e.type)).toEqual(['reset', 'transition', 'reset', 'reset', 'accept', 'accept']);
    forEachRingRecord(mixed, new RecordView(), { records: 0, malformed: 0 }, (v, off) => cols.appendView(v, off));
    expect(Buffer.from(cols.encode(header, 9n)).equals(Buffer.from(encodeTransitions(mixedEvents, header, 9n)))).toBe(true);
  });

  it('a RecordEvent reads every field as decodeEvent does', () => {
    const flyweight = new RecordEvent();
    for (const batch of [fixture('churn-client-first.ring'), ringOf(NEW_KINDS)]) {
      const keys = Object.keys(decodeEvent(batch, 8)!) as (keyof TcpEvent)[];
      const stats = { records: 0, malformed: 0 };
      forEachRingRecord(batch, new RecordView(), stats, (v, off) => {
        const e = decodeEvent(batch, off)!;
        const f = flyweight.at(v, off);
        for (const k of keys) expect(f[k]).toEqual(e[k]);
      });
      expect(stats.malformed).toBe(0);
    }
  });

  it('random record sequences over a few sockets: every branch, seeds in between, values past 2^53', () => {
    const NS = 4026531840;
    const client = { saddr: '10.0.0.1', sport: 40000, daddr: '10.0.0.2', dport: 443 };
    const server = { saddr: '10.0.0.2', sport: 443, daddr: '10.0.0.1', dport: 40000 };
    const v6 = { family: 'inet6' as const, saddr: '::1', sport: 40001, daddr: '::ffff:10.0.0.2', dport: 443 };
    const states = ['CLOSE', 'LISTEN', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT1', 'FIN_WAIT2', 'CLOSE_WAIT', 'LAST_ACK', 'CLOSING', 'TIME_WAIT', 'NEW_SYN_RECV', 'UNKNOWN(20)', 'UNKNOWN(40)'];
    const BIG = 2n ** 53n + 7n;
    const step = fc.record({
      seed: fc.integer({ min: 0, max: 30 }),
      type: fc.constantFrom('transition', 'transition', 'transition', 'timewait_start', 'timewait_end', 'snapshot', 'reset', 'accept'),
      cookie: fc.constantFrom(0n, 1n, 2n, 3n, 4n, 5n, BIG),
      dt: fc.constantFrom(-3n, 0n, 1n, 1000n, 1_000_000n, 70_000_000_000n),
      bigTime: fc.integer({ min: 0, max: 40 }),
      entered: fc.constantFrom(null, 0n, 1n, 500n, 10_000_000n),
      expires: fc.constantFrom(null, 'sixty', 'later', 'small'),
      oldState: fc.constantFrom(...states),
      newState: fc.constantFrom(...states),
      same: fc.integer({ min: 0, max: 3 }), // 0: a same-state transition (newState = oldState)
      substate: fc.constantFrom(null, 'TIME_WAIT', 'FIN_WAIT2', 'UNKNOWN(40)'),
      who: fc.constantFrom(client, server, v6),
      netns: fc.constantFrom(NS, NS, NS + 1),
      cgroupId: fc.constantFrom(0n, 1n, 77n),
      owner: fc.constantFrom(null, 4242, 0),
      ownerComm: fc.constantFrom('app', 'nginx', ''),
      error: fc.constantFrom(null, null, 'ECONNREFUSED', 'ETIMEDOUT'),
      reason: fc.constantFrom(null, 'expired', 'killed', 'sent', 'received'),
      child: fc.boolean(),
      flip: fc.boolean(),
      gap: fc.boolean(),
      actor: fc.boolean(),
      // a close's vital signs (bytes past 2^53 too: the object path) and the RSTs before it
      vitals: fc.option(
        fc.record({
          srttUs: fc.constantFrom(0, 1, 43, 2 ** 32 - 1),
          totalRetrans: fc.constantFrom(0, 3, 2 ** 31),
          bytesAcked: fc.constantFrom(0, 1, 10_485_762, 2 ** 40, 2 ** 60),
          bytesReceived: fc.constantFrom(0, 123_458, 2 ** 53 - 1),
        }),
        { nil: null },
      ),
      resetBy: fc.constantFrom(null, null, 'sent' as const, 'received' as const),
    });
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 60 }), (steps) => {
        const t = trio(200_000_000_000n);
        const view = new RecordView();
        let ts = 100_000_000_000n;
        for (const s of steps) {
          ts += s.dt;
          if (ts < 0n) ts = 0n;
          const tsNs = s.bigTime === 0 ? ts + BIG : ts;
          const spec: EventSpec = {
            type: s.type as TcpEvent['type'],
            tsNs,
            cookie: s.cookie,
            enteredNs: s.entered === null ? null : s.entered === 0n ? null : tsNs > s.entered ? tsNs - s.entered : null,
            expiresNs: s.expires === null ? null : s.expires === 'sixty' ? tsNs + 60_000_000_000n : s.expires === 'later' ? tsNs + 75_000_000_000n : 5_000_000_000n,
            netns: s.netns,
            cgroupId: s.cgroupId,
            family: 'inet',
            ...s.who,
            ownerPid: s.owner,
            ownerComm: s.owner === null ? null : s.ownerComm,
            comm: 'swapper/0',
            oldState: s.type === 'transition' ? s.oldState : null,
            newState: s.type === 'timewait_start' || s.type === 'timewait_end' ? 'TIME_WAIT' : s.type === 'transition' && s.same === 0 ? s.oldState : s.newState,
            substate: s.substate,
            reason: s.reason,
            error: s.error,
            child: s.child,
            flip: s.flip,
            gap: s.gap,
            actorIsOwner: s.actor,
            resetBy: s.resetBy,
          };
          // only a connection's close carries vital signs
          if (spec.type === 'transition' && spec.newState === 'CLOSE' && spec.oldState !== 'LISTEN') spec.vitals = s.vitals;
          const rec = eventRecord(spec);
          const e = decodeEvent(rec, 0);
          if (!e) continue;
          if (s.seed === 0) {
            // a snapshot of the namespace (this record, when a snapshot of it), seeded into all three
            const snap = e.type === 'snapshot' ? [e] : [];
            for (const tr of [t.slow, t.fast, t.rows]) tr.seed(e.netns, snap);
            continue;
          }
          feed(t, view, rec);
        }
        expectSame(t);
      }),
      { numRuns: Number(process.env.FAST_PATH_RUNS ?? 400) },
    );
  });
});
