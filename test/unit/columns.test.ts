/**
 * The agent's columnar encoders (src/publish/columns.ts) against the protobufjs reference
 * (encodeTransitions / encodeDwell in wire.ts): the same bytes, for recorded kernel records and
 * for random ones, including 64-bit values past 2^53, unknown errnos and odd comm bytes.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeEvent, decodeRecords, decodeRingBatch, type TcpEvent } from '../../src/decode/index.js';
import { EVENT_FIELDS as F, EVENT_SIZE } from '../../src/kernel/abi.js';
import { DwellColumns, TransitionColumns } from '../../src/publish/columns.js';
import { decodeDwell, decodeTransitions, encodeDwell, encodeTransitions } from '../../src/publish/wire.js';
import { Tracker } from '../../src/track/index.js';
import type { DwellRecord } from '../../src/track/types.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/${name}`, import.meta.url));
const header = { hostId: 'h1', bootId: 'b', agentVersion: '0.1.0', epoch: 3, seq: 7, drops: { ringFull: 2 }, bootToUnixNs: 1_700_000_000_000_000_000, sentAtBootNs: 5 };
const RUNS = { numRuns: 300 };

/** Recorded events with where each record sits, as the agent gets them. */
function recorded(): { events: TcpEvent[]; rows: [Buffer, number][] } {
  const events: TcpEvent[] = [];
  const rows: [Buffer, number][] = [];
  const stats = { records: 0, malformed: 0 };
  const take = (e: TcpEvent, buf: Buffer, off: number) => {
    events.push(e);
    rows.push([buf, off]);
  };
  for (const f of ['ipv4-client-first.ring', 'ipv6-client-first.ring', 'ipv4-refused.ring']) decodeRingBatch(fixture(f), take, stats);
  decodeRecords(fixture('snapshot.iter'), take, stats);
  expect(stats.malformed).toBe(0);
  return { events, rows };
}

describe('TransitionColumns: the same TransitionBatch bytes as protobufjs, without TcpEvents', () => {
  it('recorded IPv4, IPv6, refused and snapshot records', () => {
    const { events, rows } = recorded();
    const cols = new TransitionColumns();
    for (const [buf, off] of rows) cols.appendRecord(buf, off);
    const fast = cols.encode(header, 100n);
    expect(Buffer.from(fast).equals(Buffer.from(encodeTransitions(events, header, 100n)))).toBe(true);
    expect(decodeTransitions(fast).events).toEqual(events);
    expect(cols.length).toBe(0); // cleared for the next batch
  });

  it('is reusable: a second batch after encode is encoded on its own', () => {
    const { events, rows } = recorded();
    const cols = new TransitionColumns();
    for (const [buf, off] of rows) cols.appendRecord(buf, off);
    cols.encode(header, 1n);
    for (const [buf, off] of rows.slice(3, 9)) cols.appendRecord(buf, off);
    expect(Buffer.from(cols.encode(header, 7n)).equals(Buffer.from(encodeTransitions(events.slice(3, 9), header, 7n)))).toBe(true);
  });

  it('random records that decode, with 64-bit values anywhere in range', () => {
    const base = recorded().rows[1]!;
    const template = Buffer.from(base[0].subarray(base[1], base[1] + EVENT_SIZE));
    const u64 = fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.bigInt({ min: 0n, max: 2n ** 40n }), fc.constant(0n));
    const record = fc.record({
      type: fc.integer({ min: 1, max: 4 }),
      family: fc.constantFrom(2, 10),
      ts: u64,
      entered: u64,
      expires: u64,
      cookie: u64,
      cgroup: u64,
      netns: fc.nat(),
      error: fc.integer({ min: -5, max: 5000 }),
      flags: fc.integer({ min: 0, max: 255 }),
      states: fc.uint8Array({ minLength: 4, maxLength: 4 }),
      addrs: fc.uint8Array({ minLength: 32, maxLength: 32 }),
      comm: fc.uint8Array({ minLength: 16, maxLength: 16 }),
      ownerComm: fc.constantFrom(Buffer.from('node\0garbage\0\0\0\0'), Buffer.from('node\0\0\0\0\0\0\0\0\0\0\0\0'), Buffer.alloc(16), Buffer.from('caf\xe9-\xff\0\0\0\0\0\0\0\0\0\0', 'latin1')),
      ports: fc.uint8Array({ minLength: 4, maxLength: 4 }),
    });
    fc.assert(
      fc.property(fc.array(record, { minLength: 1, maxLength: 20 }), (recs) => {
        const buf = Buffer.alloc(recs.length * EVENT_SIZE);
        recs.forEach((r, i) => {
          const o = i * EVENT_SIZE;
          template.copy(buf, o);
          buf.writeUInt8(r.type, o + F.type.offset);
          buf.writeUInt16LE(r.family, o + F.family.offset);
          buf.writeBigUInt64LE(r.ts, o + F.ts_ns.offset);
          buf.writeBigUInt64LE(r.entered, o + F.entered_ns.offset);
          buf.writeBigUInt64LE(r.expires, o + F.expires_ns.offset);
          buf.writeBigUInt64LE(r.cookie, o + F.cookie.offset);
          buf.writeBigUInt64LE(r.cgroup, o + F.cgroup_id.offset);
          buf.writeUInt32LE(r.netns, o + F.netns.offset);
          buf.writeInt32LE(r.error, o + F.error.offset);
          buf.writeUInt8(r.flags, o + F.flags.offset);
          buf.set(r.states, o + F.old_state.offset); // old, new, substate, reason
          buf.set(r.addrs.subarray(0, 16), o + F.saddr.offset);
          buf.set(r.addrs.subarray(16), o + F.daddr.offset);
          buf.set(r.comm, o + F.comm.offset);
          buf.set(r.ownerComm, o + F.owner_comm.offset);
          buf.set(r.ports, o + F.sport.offset);
        });
        const events: TcpEvent[] = [];
        const cols = new TransitionColumns();
        for (let i = 0; i < recs.length; i++) {
          const e = decodeEvent(buf, i * EVENT_SIZE);
          if (!e) return;
          events.push(e);
          cols.appendRecord(buf, i * EVENT_SIZE);
        }
        const fast = Buffer.from(cols.encode(header, 2n ** 60n + 3n));
        expect(fast.toString('hex')).toBe(Buffer.from(encodeTransitions(events, header, 2n ** 60n + 3n)).toString('hex'));
      }),
      RUNS,
    );
  });
});

describe('DwellColumns: the same DwellBatch bytes as protobufjs', () => {
  it("the tracker's records of recorded events", () => {
    const records: DwellRecord[] = [];
    const t = new Tracker({ clock: () => 10n ** 12n, onDwell: (r) => records.push(r), sysctls: {} });
    t.ingest(recorded().events);
    expect(records.length).toBeGreaterThan(5);
    const cols = new DwellColumns();
    for (const r of records) cols.push(r);
    const fast = cols.encode(header);
    expect(Buffer.from(fast).equals(Buffer.from(encodeDwell(records, header)))).toBe(true);
    expect(decodeDwell(fast).records.length).toBe(records.length);
  });

  it('random records, 64-bit values past 2^53 and IPv6 included', () => {
    const big = fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.bigInt({ min: 0n, max: 2n ** 40n }));
    const record = fc.record({
      cookie: big,
      netns: fc.nat(),
      cgroupId: big,
      family: fc.constantFrom('inet' as const, 'inet6' as const),
      v4: fc.ipV4(),
      v6: fc.constantFrom('::1', '2001:db8::1', '::ffff:10.0.0.1', 'fe80::1:2:3:4', '::'),
      sport: fc.integer({ min: 0, max: 65535 }),
      dport: fc.integer({ min: 0, max: 65535 }),
      ownerPid: fc.option(fc.nat(), { nil: null }),
      ownerComm: fc.option(fc.constantFrom('node', 'nginx', 'caf\xe9'), { nil: null }),
      state: fc.constantFrom('ESTABLISHED', 'TIME_WAIT', 'FIN_WAIT2', 'CLOSE_WAIT', 'UNKNOWN(42)'),
      timewait: fc.boolean(),
      dwellNs: big,
      enteredNs: fc.option(big, { nil: null }),
      leftNs: big,
      precision: fc.constantFrom('exact' as const, 'lower-bound' as const, 'estimated' as const, 'upper-bound' as const),
      nextState: fc.option(fc.constantFrom('CLOSE', 'TIME_WAIT', 'LAST_ACK'), { nil: null }),
      timewaitEnd: fc.constantFrom('expired' as const, 'killed' as const, null),
      error: fc.option(fc.constantFrom('ECONNREFUSED', 'ETIMEDOUT', 'ECONNRESET'), { nil: null }),
      // a close's row: its vital signs (bytes up to 2^53) and who reset it
      vitals: fc.option(
        fc.record({ srttUs: fc.nat({ max: 2 ** 32 - 1 }), totalRetrans: fc.nat({ max: 2 ** 32 - 1 }), bytesAcked: fc.maxSafeNat(), bytesReceived: fc.maxSafeNat() }),
        { nil: null },
      ),
      resetBy: fc.constantFrom('sent' as const, 'received' as const, null),
    });
    fc.assert(
      fc.property(fc.array(record, { minLength: 1, maxLength: 20 }), (rs) => {
        const records: DwellRecord[] = rs.map(({ v4, v6, ...r }) => ({ ...r, resetBy: r.vitals ? r.resetBy : null, saddr: r.family === 'inet' ? v4 : v6, daddr: r.family === 'inet' ? v4 : v6 }));
        const cols = new DwellColumns();
        for (const r of records) cols.push(r);
        const fast = cols.encode(header);
        expect(Buffer.from(fast).toString('hex')).toBe(Buffer.from(encodeDwell(records, header)).toString('hex'));
        // and the closes' vital signs come back where they were
        expect(decodeDwell(fast).records.map((r) => [r.vitals, r.resetBy])).toEqual(records.map((r) => [r.vitals, r.resetBy]));
      }),
      RUNS,
    );
  });
});
