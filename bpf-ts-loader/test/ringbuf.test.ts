import { afterEach, expect, it } from 'vitest';
import { BpfError, BpfObject, RECORD_HEADER_BYTES, forEachRecord, records, releaseBatch } from 'bpf-ts-loader';
import {
  EVENT_BYTES, MAIN_OBJ, MODE_BLOB, MODE_EVENTS, MODE_QUIET, describeBpf, sleep, trigger, waitFor,
} from './helpers.js';

interface Event { seq: bigint; tid: number; index: number; total: number }

function decode(batch: Buffer): Event[] {
  const out: Event[] = [];
  forEachRecord(batch, (off, len) => {
    expect(len).toBe(EVENT_BYTES);
    out.push({
      seq: batch.readBigUInt64LE(off),
      tid: batch.readUInt32LE(off + 8),
      index: batch.readUInt32LE(off + 12),
      total: batch.readUInt32LE(off + 16),
    });
  });
  return out;
}

let objects: BpfObject[] = [];
afterEach(() => {
  for (const o of objects) o.close();
  objects = [];
});

function start(constants: Record<string, number | bigint | boolean> = {}): BpfObject {
  const obj = BpfObject.open(MAIN_OBJ);
  objects.push(obj);
  obj.setConstants({ target_tgid: process.pid, ...constants });
  obj.load();
  obj.attachAll();
  return obj;
}

describeBpf('RingBufferReader', () => {
  it('delivers every record, in order, in far fewer batches than records', async () => {
    const obj = start();
    const batches: Buffer[] = [];
    const reader = obj.openRingBuffer('events', (b) => batches.push(b));
    const ROUNDS = 4;
    const PER_ROUND = 5000;
    for (let r = 0; r < ROUNDS; r++) trigger(MODE_EVENTS, 1, PER_ROUND);
    const N = ROUNDS * PER_ROUND;
    await waitFor(() => reader.stats.records === N, 5000, `${N} records`);

    const events = batches.flatMap(decode);
    expect(events).toHaveLength(N);
    expect(events.map((e) => e.seq)).toEqual(Array.from({ length: N }, (_, i) => BigInt(i)));
    expect(events.map((e) => e.index)).toEqual(
      Array.from({ length: N }, (_, i) => i % PER_ROUND));
    expect(events.every((e) => e.total === PER_ROUND && e.tid > 0)).toBe(true);

    const stats = reader.stats;
    expect(stats).toEqual({
      records: N, bytes: N * EVENT_BYTES, batches: batches.length, oversizedRecords: 0, emptyRecords: 0,
    });
    expect(stats.batches).toBeLessThan(N / 100);
    // wire format: 8-byte header + payload padded to 8
    const entry = RECORD_HEADER_BYTES + 24;
    expect(batches.reduce((s, b) => s + b.length, 0)).toBe(N * entry);
    expect(batches[0].readUInt32LE(0)).toBe(EVENT_BYTES);
    expect(batches[0].readUInt32LE(4)).toBe(0);
    expect(batches[0].subarray(8 + EVENT_BYTES, entry)).toEqual(Buffer.alloc(4));
    reader.close();
  });

  it('maxBatchBytes splits batches; oversized and empty records still go out', async () => {
    const obj = start({ blob_salt: 3 });
    const batches: Buffer[] = [];
    const reader = obj.openRingBuffer('events', (b) => batches.push(Buffer.from(b)), { maxBatchBytes: 256 });
    trigger(MODE_EVENTS, 1, 100);
    trigger(MODE_BLOB, 1000, 0);
    trigger(MODE_BLOB, 4096, 0); // length & 4095 = 0 (readSync skips the syscall for a 0-byte read)
    trigger(MODE_BLOB, 5, 0);
    await waitFor(() => reader.stats.records === 103, 3000, '103 records');

    const entry = RECORD_HEADER_BYTES + 24;
    const normal = batches.filter((b) => b.length <= 256);
    expect(normal.reduce((s, b) => s + forEachRecord(b, () => {}), 0)).toBe(102);
    expect(Math.max(...normal.map((b) => b.length))).toBe(Math.floor(256 / entry) * entry);

    const big = batches.filter((b) => b.length > 256);
    expect(big).toHaveLength(1); // the 1000-byte record, alone in its own batch
    const payloads = [...records(big[0])];
    expect(payloads).toHaveLength(1);
    expect(payloads[0].length).toBe(1000);
    expect([...payloads[0]]).toEqual(Array.from({ length: 1000 }, (_, i) => (i * 7 + 3) & 0xff));

    const all = batches.flatMap((b) => [...records(b)]);
    expect(all.map((p) => p.length).slice(-3)).toEqual([1000, 0, 5]);
    expect([...all[all.length - 1]]).toEqual([3, 10, 17, 24, 31]);
    expect(reader.stats).toMatchObject({ records: 103, oversizedRecords: 1, emptyRecords: 1, batches: batches.length });
    expect(reader.stats.bytes).toBe(100 * EVENT_BYTES + 1005);
  });

  it('BPF_RB_NO_WAKEUP records are only seen by polling: timer on delivers, timer off needs consume()', async () => {
    const obj = start();
    let got: Event[] = [];
    const epollOnly = obj.openRingBuffer('quiet', (b) => { got.push(...decode(b)); }, { pollIntervalMs: 0 });
    trigger(MODE_QUIET, 1, 50);
    await sleep(300);
    expect(epollOnly.stats.records).toBe(0); // no wake-up was ever signalled
    expect(got).toHaveLength(0);
    expect(epollOnly.consume()).toBe(50); // synchronous: onBatch ran before consume() returned
    expect(got.map((e) => e.index)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(epollOnly.consume()).toBe(0);
    epollOnly.close();

    got = [];
    const polled = obj.openRingBuffer('quiet', (b) => { got.push(...decode(b)); }, { pollIntervalMs: 5 });
    trigger(MODE_QUIET, 1, 50);
    await waitFor(() => polled.stats.records === 50, 2000, 'NO_WAKEUP records via the poll timer');
    expect(got.map((e) => e.index)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    polled.close();
  });

  it('consume() drains synchronously, rethrows onBatch errors, and refuses re-entry', () => {
    const obj = start();
    let calls = 0;
    let mode: 'ok' | 'throw' | 'reenter' = 'ok';
    let reentryError: unknown;
    const reader = obj.openRingBuffer('events', (b) => {
      calls++;
      if (mode === 'throw') throw new Error('onBatch failed');
      if (mode === 'reenter') { try { reader.consume(); } catch (e) { reentryError = e; } }
      decode(b);
    }, { pollIntervalMs: 0 });

    trigger(MODE_EVENTS, 1, 10);
    expect(reader.consume()).toBe(10); // no await: the event loop never ran
    expect(calls).toBe(1);

    mode = 'throw';
    trigger(MODE_EVENTS, 1, 10);
    expect(() => reader.consume()).toThrow('onBatch failed');

    mode = 'reenter';
    trigger(MODE_EVENTS, 1, 10);
    reader.consume();
    expect(reentryError).toBeInstanceOf(BpfError);
    expect((reentryError as BpfError).code).toBe('ERR_BPF_REENTRANT');
    expect(reader.stats.records).toBe(30);
  });

  it('close() is idempotent, stops delivery, and BpfObject.close() closes its readers', async () => {
    const obj = start();
    let batches = 0;
    const a = obj.openRingBuffer('events', () => { batches++; });
    a.close();
    a.close();
    trigger(MODE_EVENTS, 1, 10);
    await sleep(50);
    expect(batches).toBe(0);
    expect(a.consume()).toBe(0);
    expect(a.stats.records).toBe(0);

    const b = obj.openRingBuffer('events', () => { batches++; });
    expect(b.unref()).toBe(b);
    expect(b.ref()).toBe(b);
    await waitFor(() => b.stats.records === 10, 2000, 'the records queued while no reader was open');
    obj.close();
    expect(b.consume()).toBe(0);
    b.close();
  });

  it('openRingBuffer() validates its arguments', () => {
    const obj = start();
    expect(() => obj.openRingBuffer('events', 'nope' as unknown as () => void)).toThrow(/^Usage: /);
    expect(() => obj.openRingBuffer('events', () => {}, { maxBatchBytes: 8 })).toThrow(/maxBatchBytes/);
    expect(() => obj.openRingBuffer('events', () => {}, { pollIntervalMs: -1 })).toThrow(/pollIntervalMs/);
    const notLoaded = BpfObject.open(MAIN_OBJ);
    objects.push(notLoaded);
    expect(() => notLoaded.openRingBuffer('events', () => {})).toThrow(/load\(\) first/);
  });

  it('releaseBatch() frees a batch at once: read inside onBatch, empty after, twice is harmless', async () => {
    const obj = start();
    const kept: Buffer[] = [];
    let seqs: bigint[] = [];
    const reader = obj.openRingBuffer('events', (b) => {
      seqs = seqs.concat(decode(b).map((e) => e.seq));
      kept.push(b);
      releaseBatch(b);
      releaseBatch(b);
    });
    trigger(MODE_EVENTS, 1, 3000);
    await waitFor(() => reader.stats.records === 3000, 5000, '3000 records');
    expect(seqs).toEqual(Array.from({ length: 3000 }, (_, i) => BigInt(i)));
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.every((b) => b.length === 0)).toBe(true);
    expect(() => releaseBatch('nope' as unknown as Buffer)).toThrow(/^Usage: /);
    reader.close();
  });

  it('forEachRecord() rejects malformed batches', () => {
    expect(() => forEachRecord(Buffer.alloc(4), () => {})).toThrow(RangeError);
    const bad = Buffer.alloc(16);
    bad.writeUInt32LE(100, 0);
    expect(() => forEachRecord(bad, () => {})).toThrow(/overruns/);
    expect(forEachRecord(Buffer.alloc(0), () => {})).toBe(0);
  });
});
