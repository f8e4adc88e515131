/**
 * Hostile input, property-based (fast-check): random and mutated kernel batches, protobuf
 * messages and spool files never crash the readers or hang them, and every bad input is either
 * counted (decode.ts: stats.malformed) or rejected with a plain Error that says what is wrong —
 * never a TypeError or an out-of-range read from deep inside.
 */
import { readFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeEvent, decodeRecords, decodeRingBatch, type DecodeStats, type TcpEvent } from '../../src/decode/index.js';
import { EVENT_SIZE } from '../../src/kernel/abi.js';
import { decodeDwell, decodeTransitions, encodeDwell, encodeTransitions, pb } from '../../src/publish/wire.js';
import { renderMessage } from '../../src/cli/commands/tail.js';
import { decodeSpoolFile, encodeSpoolFile } from '../../src/publish/spool.js';
import type { DwellRecord } from '../../src/track/types.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/${name}`, import.meta.url));
const RUNS = { numRuns: Number(process.env.FUZZ_RUNS ?? 300) };

/** A real ring batch (recorded from the kernel) to mutate, and its events. */
const realBatch = Buffer.concat([fixture('ipv4-client-first.ring'), fixture('ipv6-client-first.ring')]);
const realEvents: TcpEvent[] = [];
decodeRingBatch(realBatch, (e) => realEvents.push(e), { records: 0, malformed: 0 });

/** Bit flips, byte overwrites, truncation and extension of a valid input. */
const mutated = (valid: Uint8Array) =>
  fc
    .tuple(
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 12 }),
      fc.option(fc.nat(), { nil: undefined }),
      fc.uint8Array({ maxLength: 64 }),
    )
    .map(([edits, cut, tail]) => {
      const b = Buffer.from(valid);
      for (const [at, v] of edits) if (b.length) b[at % b.length] = v;
      const cutAt = cut === undefined ? b.length : cut % (b.length + 1);
      return Buffer.concat([b.subarray(0, cutAt), tail]);
    });

/** Runs fn; passes if it returns, or throws an Error that is not a TypeError/internal RangeError. */
function returnsOrRejectsCleanly(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(TypeError);
    expect((err as NodeJS.ErrnoException).code, (err as Error).message).not.toBe('ERR_OUT_OF_RANGE');
    expect((err as Error).message).toMatch(/^malformed /);
  }
}

describe('decode.ts under hostile input', () => {
  it('decodeRingBatch: random bytes never throw, and whatever is not an event is counted', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
        const stats: DecodeStats = { records: 0, malformed: 0 };
        let events = 0;
        decodeRingBatch(Buffer.from(bytes), () => events++, stats);
        expect(events).toBeLessThanOrEqual(stats.records);
        expect(stats.records - events + (stats.malformed - (stats.records - events))).toBeGreaterThanOrEqual(0);
        if (bytes.length > 0 && events === 0) expect(stats.malformed).toBeGreaterThan(0);
      }),
      RUNS,
    );
  });

  it('decodeRingBatch: a mutated real batch never throws; every record is an event or counted malformed', () => {
    fc.assert(
      fc.property(mutated(realBatch), (batch) => {
        const stats: DecodeStats = { records: 0, malformed: 0 };
        let events = 0;
        decodeRingBatch(batch, () => events++, stats);
        expect(events + stats.malformed).toBeGreaterThanOrEqual(stats.records);
      }),
      RUNS,
    );
  });

  it('decodeRingBatch: a length field near 2^32 neither hangs nor reads out of bounds', () => {
    const b = Buffer.alloc(16);
    b.writeUInt32LE(0xfffffff9, 0);
    const stats = { records: 0, malformed: 0 };
    decodeRingBatch(b, () => {}, stats);
    expect(stats.malformed).toBe(1);
  });

  it('decodeRecords: any length decodes whole records and counts a ragged tail', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: EVENT_SIZE * 4 + 7 }), (bytes) => {
        const stats = { records: 0, malformed: 0 };
        let events = 0;
        decodeRecords(Buffer.from(bytes), () => events++, stats);
        expect(stats.records).toBe(Math.floor(bytes.length / EVENT_SIZE));
        expect(events + stats.malformed).toBe(stats.records + (bytes.length % EVENT_SIZE ? 1 : 0));
      }),
      RUNS,
    );
  });

  it('decodeEvent: any record of the right size is an event or null; a short one is null, not a RangeError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: EVENT_SIZE, maxLength: EVENT_SIZE }), (bytes) => {
        const e = decodeEvent(Buffer.from(bytes), 0);
        if (e) expect(['transition', 'timewait_start', 'timewait_end', 'snapshot']).toContain(e.type);
      }),
      RUNS,
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: EVENT_SIZE - 1 }), fc.nat({ max: 200 }), (bytes, offset) => {
        expect(decodeEvent(Buffer.from(bytes), offset)).toBeNull();
      }),
      RUNS,
    );
  });
});

const header = { hostId: 'h', bootId: 'b', agentVersion: '0', epoch: 1, seq: 1, drops: {}, bootToUnixNs: 1_700_000_000_000_000_000, sentAtBootNs: 1 };
const validTransitions = encodeTransitions(realEvents, header, 1n);
const dwellRecord: DwellRecord = {
  cookie: 7n, netns: 4026531840, cgroupId: 1n, family: 'inet', saddr: '127.0.0.1', sport: 80, daddr: '127.0.0.1', dport: 5000,
  ownerPid: 10, ownerComm: 'node', state: 'ESTABLISHED', timewait: false, dwellNs: 1000n, enteredNs: 1000n, leftNs: 2000n,
  precision: 'exact', nextState: 'FIN_WAIT1', timewaitEnd: null, error: null,
} as DwellRecord;
const validDwell = encodeDwell([dwellRecord, { ...dwellRecord, cookie: 8n }], header);

describe('protobuf readers under hostile input', () => {
  it('decodeTransitions and decodeDwell: random bytes return or reject with a clear Error', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        returnsOrRejectsCleanly(() => decodeTransitions(bytes));
        returnsOrRejectsCleanly(() => decodeDwell(bytes));
      }),
      RUNS,
    );
  });

  it('decodeTransitions and decodeDwell: mutated valid messages return or reject with a clear Error', () => {
    fc.assert(fc.property(mutated(validTransitions), (b) => returnsOrRejectsCleanly(() => decodeTransitions(b))), RUNS);
    fc.assert(fc.property(mutated(validDwell), (b) => returnsOrRejectsCleanly(() => decodeDwell(b))), RUNS);
  });

  it('a batch claiming a huge count with empty columns is rejected at once, not looped over', () => {
    const evil = pb.TransitionBatch.encode({ header, count: 0xffffffff }).finish();
    const t0 = Date.now();
    expect(() => decodeTransitions(evil)).toThrow(/malformed TransitionBatch/);
    expect(() => decodeDwell(pb.DwellBatch.encode({ header, count: 0xffffffff }).finish())).toThrow(/malformed DwellBatch/);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('renderMessage: every kind, random and mutated bytes, both formats: lines or a clear Error', () => {
    const kinds = ['transitions', 'snapshot', 'dwell', 'summary', 'alerts', 'bogus'];
    const valid: Record<string, Uint8Array> = {
      transitions: validTransitions,
      snapshot: pb.Snapshot.encode({ header, sockets: pb.TransitionBatch.decode(validTransitions) }).finish(),
      dwell: validDwell,
    };
    fc.assert(
      fc.property(
        fc.constantFrom(...kinds),
        fc.constantFrom('json' as const, 'text' as const),
        fc.oneof(fc.uint8Array({ maxLength: 512 }), mutated(validTransitions), mutated(validDwell)),
        (kind, format, data) => {
          returnsOrRejectsCleanly(() => {
            const lines = renderMessage(`tcpdwell.v1.fuzz.${kind}`, data, format);
            expect(Array.isArray(lines)).toBe(true);
          });
        },
      ),
      RUNS,
    );
    for (const [kind, data] of Object.entries(valid)) expect(renderMessage(`tcpdwell.v1.fuzz.${kind}`, data, 'json').length).toBeGreaterThan(0);
  });

  it('renderMessage: times at the int64 edge still render', () => {
    const far = { ...header, bootToUnixNs: '9223372036854775807' as unknown as number };
    const bytes = encodeTransitions(realEvents.slice(0, 1), far, 1n);
    const [line] = renderMessage('tcpdwell.v1.fuzz.transitions', bytes, 'json');
    expect(JSON.parse(line!).type).toBe(realEvents[0]!.type);
    expect(renderMessage('tcpdwell.v1.fuzz.transitions', bytes, 'text')).toHaveLength(1);
  });

  it('renderMessage: a subject with too few tokens is not a crash', () => {
    returnsOrRejectsCleanly(() => renderMessage('x', validTransitions, 'json'));
  });
});

describe('spool files under hostile input', () => {
  const valid = encodeSpoolFile({ subject: 'tcpdwell.v1.h.transitions', msgId: 'h.b.1.1', events: 3, payload: new Uint8Array([1, 2, 3]) });

  it('decodeSpoolFile: random bytes are null (corrupt), never a throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), (b) => {
        expect(decodeSpoolFile(Buffer.from(b))).toBeNull();
      }),
      RUNS,
    );
  });

  it('decodeSpoolFile: any change to a valid file is detected (null), or is the unchanged message', () => {
    fc.assert(
      fc.property(mutated(valid), (b) => {
        const m = decodeSpoolFile(b);
        if (m) expect(b.equals(valid)).toBe(true);
      }),
      RUNS,
    );
  });

  it('decodeSpoolFile: a file with a valid checksum but lengths that overrun the body is null', () => {
    for (const body of [Buffer.from([0xff, 0xff, 0, 0, 0, 0, 0, 0]), Buffer.from([2, 0, 0x41, 0x41, 0xff, 0xff, 0, 0])]) {
      const head = Buffer.alloc(8);
      head.writeUInt32LE(0x54445350, 0);
      head.writeUInt32LE(crc32(body), 4);
      expect(decodeSpoolFile(Buffer.concat([head, body]))).toBeNull();
    }
  });
});
