import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeSpoolFile, Spool } from '../../src/publish/spool.js';

const msg = (i: number, size = 100) => ({ subject: `tcpdwell.v1.h.transitions`, msgId: `h.b.1.${i}`, events: i, payload: Buffer.alloc(size, i) });

describe('the store-and-forward spool', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'spool-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps messages in order across a restart, and numbers each start with a new epoch', () => {
    const a = new Spool(dir, 1 << 20);
    expect(a.epoch).toBe(1n);
    for (let i = 1; i <= 12; i++) a.append(BigInt(i), msg(i));
    a.ack(a.pending()[0]!);
    const b = new Spool(dir, 1 << 20);
    expect(b.epoch).toBe(2n);
    expect(b.pending()).toHaveLength(11);
    expect(b.read(b.pending()[0]!)).toMatchObject({ msgId: 'h.b.1.2', events: 2 });
    expect(b.read(b.pending()[10]!)).toMatchObject({ msgId: 'h.b.1.12' });
    // epoch 2's messages sort after epoch 1's
    b.append(1n, msg(1));
    expect(b.pending().at(-1)).toMatch(/^0000000002-/);
  });

  it('serves what it wrote from memory up to its cap, from its segment past it, and writes every message first', () => {
    const s = new Spool(dir, 1 << 20);
    s.memoryBytes = 250;
    for (let i = 1; i <= 4; i++) s.append(BigInt(i), msg(i, 100));
    // one segment, every message in it already (one write each)
    const segments = readdirSync(dir).filter((n) => n.endsWith('.seg'));
    expect(segments).toHaveLength(1);
    for (const k of s.pending()) {
      const at = s.location(k)!;
      expect(at.path).toBe(join(dir, segments[0]!));
      expect(readFileSync(at.path).subarray(at.offset, at.offset + at.length).includes(msg(Number(k.slice(-2)), 100).payload)).toBe(true);
    }
    const [k1, , k3] = s.pending();
    // the first two fit the cap (kept), the last two are read back from disk: equal either way
    expect(s.read(k1!)).toEqual(msg(1, 100));
    expect(s.read(k3!)).toMatchObject({ msgId: 'h.b.1.3', events: 3 });
    expect(Buffer.from(s.read(k3!)!.payload).equals(msg(3, 100).payload)).toBe(true);
    // a corrupt message is only noticed when it is read from disk
    const at = s.location(k3!)!;
    const bytes = readFileSync(at.path);
    bytes[at.offset + at.length - 1]! ^= 0xff;
    writeFileSync(at.path, bytes);
    expect(s.read(k1!)).not.toBeNull();
    expect(s.read(k3!)).toBeNull();
    expect(s.stats().corrupt).toBe(1);
    // acked messages leave memory: a new one fits again
    s.ack(k1!);
    s.append(5n, msg(5, 100));
    rmSync(s.location(s.pending().at(-1)!)!.path);
    expect(s.read(s.pending().at(-1)!)).toMatchObject({ msgId: 'h.b.1.5' });
  });

  it('rolls segments at segmentBytes, deletes a segment once all of it is acked or dropped, and remembers acks across a restart', () => {
    const a = new Spool(dir, 1 << 20);
    a.segmentBytes = 1000;
    for (let i = 1; i <= 12; i++) a.append(BigInt(i), msg(i, 200));
    const segs = () => readdirSync(dir).filter((n) => n.endsWith('.seg')).sort();
    expect(segs().length).toBeGreaterThan(2);
    const first = segs()[0]!;
    // ack the whole first segment: it goes; ack one of the second: it stays, with the ack in it
    const inFirst = a.pending().filter((k) => a.location(k)!.path.endsWith(first));
    for (const k of inFirst) a.ack(k);
    expect(segs()).not.toContain(first);
    const next = a.pending()[0]!;
    a.ack(next);
    a.close();
    const b = new Spool(dir, 1 << 20);
    expect(b.pending()).toHaveLength(12 - inFirst.length - 1);
    expect(b.pending()).not.toContain(next);
    expect(b.read(b.pending()[0]!)?.msgId).toBe(`h.b.1.${inFirst.length + 2}`);
    for (const k of b.pending()) b.ack(k);
    expect(segs()).toEqual([]);
  });

  it('resumes a spool of the earlier format (a file per message) and deletes each file once acked', () => {
    for (let i = 1; i <= 3; i++) writeFileSync(join(dir, `0000000001-${String(i).padStart(16, '0')}.msg`), encodeSpoolFile(msg(i)));
    writeFileSync(join(dir, 'epoch'), '1\n');
    const s = new Spool(dir, 1 << 20);
    expect(s.epoch).toBe(2n);
    expect(s.pending().map((k) => s.read(k)!.msgId)).toEqual(['h.b.1.1', 'h.b.1.2', 'h.b.1.3']);
    s.ack(s.pending()[0]!);
    expect(readdirSync(dir).filter((n) => n.endsWith('.msg'))).toHaveLength(2);
  });

  it('a torn last entry (a crash mid-write) is counted, the messages before it kept', () => {
    const a = new Spool(dir, 1 << 20);
    for (let i = 1; i <= 3; i++) a.append(BigInt(i), msg(i));
    a.close();
    const path = a.location(a.pending()[2]!)!.path;
    const bytes = readFileSync(path);
    writeFileSync(path, bytes.subarray(0, bytes.length - 10));
    const b = new Spool(dir, 1 << 20);
    expect(b.stats().corrupt).toBe(1);
    expect(b.pending().map((k) => b.read(k)!.msgId)).toEqual(['h.b.1.1', 'h.b.1.2']);
  });

  it('when full, drops the oldest messages and counts them and their events', () => {
    const s = new Spool(dir, 1000);
    for (let i = 1; i <= 10; i++) s.append(BigInt(i), msg(i, 200));
    const st = s.stats();
    expect(st.bytes).toBeLessThanOrEqual(1000);
    expect(st.dropped).toBe(10 - st.messages);
    expect(st.droppedEvents).toBe([...Array(st.dropped).keys()].reduce((sum, i) => sum + i + 1, 0));
    expect(s.read(s.pending()[0]!)?.msgId).toBe(`h.b.1.${st.dropped + 1}`);
  });

  it('detects a corrupt message by its checksum on resume, counts it and skips it', () => {
    const a = new Spool(dir, 1 << 20);
    for (let i = 1; i <= 3; i++) a.append(BigInt(i), msg(i));
    const victim = a.location(a.pending()[1]!)!;
    const bytes = readFileSync(victim.path);
    bytes[victim.offset + victim.length - 1]! ^= 0xff;
    writeFileSync(victim.path, bytes);
    writeFileSync(join(dir, '0000000001-0000000000000009.msg'), 'garbage');
    const b = new Spool(dir, 1 << 20);
    expect(b.stats().corrupt).toBe(2);
    expect(b.pending().map((k) => b.read(k)!.msgId)).toEqual(['h.b.1.1', 'h.b.1.3']);
    expect(readdirSync(dir).filter((f) => f.endsWith('.msg'))).toHaveLength(0);
    expect(readdirSync(dir).filter((f) => f.endsWith('.seg'))).toHaveLength(1);
  });
});
