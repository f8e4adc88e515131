import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeEvent, decodeRecords, decodeRingBatch, formatAddress, stateName, toJson, type DecodeStats, type TcpEvent } from '../../src/decode/index.js';
import { EVENT_FIELDS as F, EVENT_SIZE, EventFlags, EventType } from '../../src/kernel/abi.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/${name}`, import.meta.url));

function decodeAll(batch: Buffer): { events: TcpEvent[]; stats: DecodeStats } {
  const events: TcpEvent[] = [];
  const stats = { records: 0, malformed: 0 };
  decodeRingBatch(batch, (e) => events.push(e), stats);
  return { events, stats };
}

/** A ring entry around one record: [u32 len][u32 0][record][pad to 8]. */
function ringEntry(record: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32LE(record.length);
  const pad = Buffer.alloc((8 - (record.length % 8)) % 8);
  return Buffer.concat([head, record, pad]);
}

function transition(over: { ts?: bigint; entered?: bigint; old?: number; new?: number; flags?: number; error?: number } = {}): Buffer {
  const r = Buffer.alloc(EVENT_SIZE);
  r.writeUInt8(EventType.TRANSITION, F.type.offset);
  r.writeUInt16LE(2, F.family.offset);
  r.writeBigUInt64LE(over.ts ?? 2_000n, F.ts_ns.offset);
  r.writeBigUInt64LE(over.entered ?? 1_000n, F.entered_ns.offset);
  r.writeUInt8(over.old ?? 1, F.old_state.offset);
  r.writeUInt8(over.new ?? 4, F.new_state.offset);
  r.writeUInt8(over.flags ?? EventFlags.ENTERED_KNOWN, F.flags.offset);
  r.writeInt32LE(over.error ?? 0, F.error.offset);
  return r;
}

describe('decoding recorded kernel records', () => {
  it('decodes an IPv4 client-first connection recorded from the kernel into its exact transitions', () => {
    const { events, stats } = decodeAll(fixture('ipv4-client-first.ring'));
    expect(stats).toEqual({ records: events.length, malformed: 0 });
    const client = events.filter((e) => e.dport === 9100 && e.type !== 'snapshot');
    const seq = client.map((e) => (e.type === 'transition' ? `${e.oldState}->${e.newState}` : e.type));
    expect(seq).toEqual([
      'CLOSE->SYN_SENT',
      'SYN_SENT->ESTABLISHED',
      'ESTABLISHED->FIN_WAIT1',
      'FIN_WAIT1->FIN_WAIT2',
      'timewait_start',
      'FIN_WAIT2->CLOSE',
    ]);
    expect(new Set(client.map((e) => e.cookie)).size).toBe(1);
    expect(client[1]).toMatchObject({ family: 'inet', saddr: '127.0.0.1', daddr: '127.0.0.1', ownerComm: 'node' });
  });

  it('decodes an IPv6 connection with compressed addresses', () => {
    const { events, stats } = decodeAll(fixture('ipv6-client-first.ring'));
    expect(stats.malformed).toBe(0);
    const est = events.find((e) => e.type === 'transition' && e.newState === 'ESTABLISHED')!;
    expect(est).toMatchObject({ family: 'inet6', saddr: '::1', daddr: '::1' });
  });

  it('decodes a refused connect with its errno name', () => {
    const { events } = decodeAll(fixture('ipv4-refused.ring'));
    const fail = events.find((e) => e.oldState === 'SYN_SENT')!;
    expect(fail).toMatchObject({ newState: 'CLOSE', error: 'ECONNREFUSED' });
  });

  it('decodes iterator output (no ring headers), timewait sockets included', () => {
    const events: TcpEvent[] = [];
    const stats = { records: 0, malformed: 0 };
    decodeRecords(fixture('snapshot.iter'), (e) => events.push(e), stats);
    expect(stats.malformed).toBe(0);
    expect(events.every((e) => e.type === 'snapshot')).toBe(true);
    expect(events.map((e) => e.newState)).toEqual(expect.arrayContaining(['LISTEN', 'ESTABLISHED', 'TIME_WAIT']));
    expect(events.find((e) => e.newState === 'TIME_WAIT')?.substate).toBe('TIME_WAIT');
  });
});

describe('decoding what the kernel may send one day, or never should', () => {
  it('keeps 64-bit times exact past 2^53', () => {
    const big = 2n ** 60n + 12345n;
    const { events } = decodeAll(ringEntry(transition({ ts: big, entered: big - 7n })));
    expect(events[0]!.tsNs).toBe(big);
    expect(events[0]!.dwellNs).toBe(7n);
    expect(toJson(events[0]!).tsNs).toBe(big.toString());
  });

  it('decodes a state the kernel adds later as UNKNOWN(n)', () => {
    const { events } = decodeAll(ringEntry(transition({ old: 1, new: 99 })));
    expect(events[0]!.newState).toBe('UNKNOWN(99)');
    expect(stateName(0)).toBe('UNKNOWN(0)');
  });

  it('reports dwell as unknown (null) when the program did not see the state entered', () => {
    const { events } = decodeAll(ringEntry(transition({ flags: 0 })));
    expect(events[0]!.dwellNs).toBeNull();
    expect(toJson(events[0]!).dwellNs).toBeNull();
  });

  it('counts and skips a record of the wrong length, and goes on with the next', () => {
    const short = ringEntry(Buffer.alloc(40));
    const good = ringEntry(transition());
    const { events, stats } = decodeAll(Buffer.concat([short, good]));
    expect(events).toHaveLength(1);
    expect(stats).toEqual({ records: 2, malformed: 1 });
  });

  it('counts a truncated batch once and stops there', () => {
    const good = ringEntry(transition());
    const { events, stats } = decodeAll(Buffer.concat([good, good.subarray(0, 50)]));
    expect(events).toHaveLength(1);
    expect(stats.malformed).toBe(1);
  });

  it('counts a record with an unknown type or family as malformed', () => {
    const bad = transition();
    bad.writeUInt8(77, F.type.offset);
    const { stats } = decodeAll(ringEntry(bad));
    expect(stats).toEqual({ records: 1, malformed: 1 });
    expect(decodeEvent(bad, 0)).toBeNull();
  });
});

describe('address text', () => {
  const v6 = (hex: string) => Buffer.from(hex.replace(/:/g, ''), 'hex');
  it.each([
    ['0000:0000:0000:0000:0000:0000:0000:0001', '::1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['2001:0db8:0000:0001:0000:0000:0000:0001', '2001:db8:0:1::1'],
    ['fe80:0000:0000:0000:0201:02ff:fe03:0405', 'fe80::201:2ff:fe03:405'],
    ['0000:0000:0000:0000:0000:ffff:7f00:0001', '::ffff:127.0.0.1'],
    ['0000:0000:0000:0000:0000:0000:0000:0000', '::'],
    ['2001:0db8:0001:0001:0001:0001:0001:0001', '2001:db8:1:1:1:1:1:1'],
  ])('formats %s as %s', (hex, text) => {
    expect(formatAddress(v6(hex), 0, 10)).toBe(text);
  });
});
