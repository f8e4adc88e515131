/** The agent's warm-up: its event path compiled by V8 before the first burst, not during it. */
import { EVENT_FIELDS, EVENT_SIZE, EventFlags } from '../kernel/abi.js';
import { forEachRingRecord, RecordView, RING_HEADER_BYTES } from '../decode/index.js';
import { DwellColumns, TransitionColumns } from '../publish/columns.js';
import { Tracker } from '../track/index.js';

/**
 * Runs the event path (records in place → track → encode, as Agent does) over synthetic connections once at start, so V8
 * has compiled it before the first burst rather than during it. (The stalls measured at the start
 * of a 100k events/s burst — 100–250 ms of busy event loop in its first half second — remained
 * with it: BENCHMARKS.md.) Nothing of it is kept or published; it takes a few hundred ms once.
 */
export function warmUp(): void {
  // What a connection looks like to the agent: the client's five transitions and its timewait
  // start, the accepted child's five (owner known, actor in process context on some).
  const steps: [type: number, oldState: number, newState: number, child: boolean][] = [
    [1, 7, 2, false], [1, 10, 3, true], [1, 2, 1, false], [1, 3, 1, true], [1, 1, 4, false], [1, 1, 8, true],
    [1, 4, 5, false], [2, 0, 6, false], [1, 5, 7, false], [1, 8, 9, true], [1, 9, 7, true],
  ];
  const connections = 4000;
  const n = connections * steps.length;
  const entry = RING_HEADER_BYTES + EVENT_SIZE;
  const batch = Buffer.alloc(n * entry);
  for (let i = 0; i < n; i++) {
    const at = i * entry;
    const r = at + RING_HEADER_BYTES;
    const c = Math.floor(i / steps.length);
    const [type, oldState, newState, child] = steps[i % steps.length]!;
    const ts = 1_000_000_000 + i * 1000;
    batch.writeUInt32LE(EVENT_SIZE, at);
    batch.writeBigUInt64LE(BigInt(ts), r + EVENT_FIELDS.ts_ns.offset);
    batch.writeBigUInt64LE(BigInt(1 + 2 * c + (child ? 1 : 0)), r + EVENT_FIELDS.cookie.offset);
    batch.writeBigUInt64LE(BigInt(ts - 5000), r + EVENT_FIELDS.entered_ns.offset);
    if (type === 2) batch.writeBigUInt64LE(BigInt(ts + 60e9), r + EVENT_FIELDS.expires_ns.offset);
    batch.writeBigUInt64LE(1234n, r + EVENT_FIELDS.cgroup_id.offset);
    batch.writeUInt32LE(4026531840, r + EVENT_FIELDS.netns.offset);
    batch.writeUInt32LE(1000 + (i % 7), r + EVENT_FIELDS.pid.offset);
    batch.writeUInt32LE(1000, r + EVENT_FIELDS.owner_pid.offset);
    batch.writeUInt16LE(2, r + EVENT_FIELDS.family.offset);
    const port = 30000 + (c % 20000);
    batch.set([127, 0, 0, child ? 1 + (c % 8) : 1], r + EVENT_FIELDS.saddr.offset);
    batch.set([127, 0, 0, child ? 1 : 1 + (c % 8)], r + EVENT_FIELDS.daddr.offset);
    batch.writeUInt16LE(child ? 8000 + (c % 16) : port, r + EVENT_FIELDS.sport.offset);
    batch.writeUInt16LE(child ? port : 8000 + (c % 16), r + EVENT_FIELDS.dport.offset);
    batch.write(i % 3 ? 'warm-up' : 'swapper/1', r + EVENT_FIELDS.comm.offset, 'latin1');
    batch.write('warm-up', r + EVENT_FIELDS.owner_comm.offset, 'latin1');
    batch.writeUInt8(type, r + EVENT_FIELDS.type.offset);
    batch.writeUInt8(oldState, r + EVENT_FIELDS.old_state.offset);
    batch.writeUInt8(newState, r + EVENT_FIELDS.new_state.offset);
    batch.writeUInt8(type === 2 ? 6 : 0, r + EVENT_FIELDS.substate.offset);
    batch.writeUInt8(
      EventFlags.ENTERED_KNOWN | EventFlags.OWNER_KNOWN | (i % 3 ? EventFlags.PROCESS_CTX : 0) | (child ? EventFlags.CHILD : 0),
      r + EVENT_FIELDS.flags.offset,
    );
  }
  const dwell = new DwellColumns();
  const transitions = new TransitionColumns();
  const tracker = new Tracker({ clock: () => 0n, dwellRows: dwell, sysctls: {} });
  const header = { hostId: 'warm-up', seq: 1 };
  const view = new RecordView();
  const take = (v: RecordView, o: number) => {
    transitions.appendView(v, o);
    tracker.ingestRecord(v, o);
  };
  // Small batches, so the per-batch code (encoding) runs often enough to be optimized too.
  const per = 200 * entry;
  for (let off = 0; off < batch.length; off += per) {
    forEachRingRecord(batch.subarray(off, off + per), view, { records: 0, malformed: 0 }, take);
    transitions.encode(header, 1n);
    if (dwell.length) dwell.encode(header);
  }
  tracker.table();
  tracker.takeHistograms().encode();
}

