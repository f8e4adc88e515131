import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeRecords, decodeRingBatch, type TcpEvent } from '../../src/decode/index.js';
import { decodeSnapshot, decodeTransitions, encodeSnapshot, encodeTransitions, pb } from '../../src/publish/wire.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/${name}`, import.meta.url));

function events(): TcpEvent[] {
  const out: TcpEvent[] = [];
  const stats = { records: 0, malformed: 0 };
  for (const f of ['ipv4-client-first.ring', 'ipv6-client-first.ring', 'ipv4-refused.ring']) decodeRingBatch(fixture(f), (e) => out.push(e), stats);
  decodeRecords(fixture('snapshot.iter'), (e) => out.push(e), stats);
  return out;
}

const header = { hostId: 'h1', bootId: 'b', agentVersion: '0.1.0', epoch: 3, seq: 7 };

describe('TransitionBatch: kernel events through protobuf and back', () => {
  it('round-trips recorded IPv4, IPv6, refused and snapshot events exactly', () => {
    const evs = events();
    const bytes = encodeTransitions(evs, header, 100n);
    const back = decodeTransitions(bytes);
    expect(back.events).toEqual(evs);
    expect(back.firstEventSeq).toBe(100n);
    expect(back.header).toMatchObject({ hostId: 'h1', agentVersion: '0.1.0' });
  });

  it.each(['::1', '::', '2001:db8::1', '2001:db8:0:1::1', 'fe80::201:2ff:fe03:405', '::ffff:127.0.0.1', '2001:db8:1:1:1:1:1:1', '1::'])(
    'round-trips the IPv6 address %s',
    (addr) => {
      const e = { ...events().find((x) => x.family === 'inet6')!, saddr: addr, daddr: addr };
      expect(decodeTransitions(encodeTransitions([e], header, 1n)).events[0]).toEqual(e);
    },
  );

  it('keeps 64-bit values exact past 2^53', () => {
    const e = { ...events()[1]! };
    e.tsNs = 2n ** 62n + 5n;
    e.enteredNs = e.tsNs - 1234n;
    e.dwellNs = 1234n;
    e.cookie = 2n ** 63n + 9n;
    e.cgroupId = 2n ** 60n;
    const back = decodeTransitions(encodeTransitions([e], header, 2n ** 55n));
    expect(back.events[0]).toEqual(e);
    expect(back.firstEventSeq).toBe(2n ** 55n);
  });

  it('is columnar and compact: well under the 136 bytes of a kernel record per event', () => {
    const evs = events();
    const bytes = encodeTransitions(evs, header, 1n);
    expect(bytes.length / evs.length).toBeLessThan(70);
  });

  it('rejects a batch whose columns disagree with its count', () => {
    const evs = events().slice(0, 3);
    const m = pb.TransitionBatch.decode(encodeTransitions(evs, header, 1n));
    m.count = 5;
    expect(() => decodeTransitions(pb.TransitionBatch.encode(m).finish())).toThrow(/columns/);
  });
});

describe('Snapshot: the sockets at start, their TransitionBatch embedded as it was encoded', () => {
  it('writes the same bytes protobufjs writes for { header, sockets }, and reads them back', () => {
    const evs = events();
    const batch = encodeTransitions(evs, header, 40n);
    const bytes = encodeSnapshot(header, batch);
    // What the agent published before: the batch decoded into objects and encoded again.
    expect(Buffer.from(bytes)).toEqual(Buffer.from(pb.Snapshot.encode({ header, sockets: pb.TransitionBatch.decode(batch) }).finish()));
    const back = decodeSnapshot(bytes);
    expect(back.events).toEqual(evs);
    expect(back.firstEventSeq).toBe(40n);
    expect(back.header).toMatchObject({ hostId: 'h1', agentVersion: '0.1.0' });
  });
});
