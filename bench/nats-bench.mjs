#!/usr/bin/env node
// NATS side of the `tcpdwell run` contender in `make bench` (bench/run-bench.mjs), two modes:
//
//   node bench/nats-bench.mjs sub URL SUBJECT
//     A core NATS subscription on the agent's transitions subject. For every event of every
//     TransitionBatch: latency = CLOCK_BOOTTIME at receipt − the event's time (base_ts_ns +
//     ts_delta_ns, boot-time ns, the kernel's bpf_ktime_get_boot_ns()). The batch is read with a
//     minimal protobuf reader (header, count, base_ts_ns, ts_delta_ns only), so the subscriber
//     costs little next to the agent it measures. One line per message to stdout ("n EVENTS") so
//     the harness can tell when delivery has stopped; on SIGTERM/SIGINT a last line "result JSON".
//
//   node bench/nats-bench.mjs count URL HOST PORT_LO PORT_HI
//     After the run: reads the whole TCPDWELL stream (ordered consumer, filtered to
//     tcpdwell.v1.HOST.>) and counts what reached JetStream, decoding each TransitionBatch with the
//     project's protobuf code (dist/publish/wire.js). Prints one JSON line.
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { clockBoottimeNs } from 'bpf-ts-loader';

const [mode, ...args] = process.argv.slice(2);

// ---- minimal protobuf reading (wire format: varint keys; LEN = 2, VARINT = 0, I64 = 1, I32 = 5) --
// Numbers, not BigInt: boot-time ns stay below 2^53 for ~104 days of uptime (KERNEL-NOTES).
function varint(b, p) {
  let v = 0;
  let mul = 1;
  for (;;) {
    const x = b[p.i++];
    v += (x & 0x7f) * mul;
    if (x < 0x80) return v;
    mul *= 128;
  }
}
function skip(b, p, wt) {
  if (wt === 0) varint(b, p);
  else if (wt === 1) p.i += 8;
  else if (wt === 2) {
    const len = varint(b, p); // not `p.i += varint(b, p)`: that reads p.i before varint moves it
    p.i += len;
  }
  else if (wt === 5) p.i += 4;
  else throw new Error(`wire type ${wt}`);
}
const DROP_FIELDS = [null, 'ringFull', 'malformed', 'spoolDropped', 'spoolDroppedEvents', 'noStorage', 'spoolCorrupt', 'kernelSkipped', 'kernelSkippedTimer', 'stateGaps'];
function readDrops(b, end, p, out) {
  while (p.i < end) {
    const key = varint(b, p);
    const f = Math.floor(key / 8);
    if ((key & 7) === 0 && DROP_FIELDS[f]) out[DROP_FIELDS[f]] = varint(b, p);
    else skip(b, p, key & 7);
  }
}
/** TransitionBatch → { count, base, deltas, sentAt, drops } */
function readBatch(b) {
  const p = { i: 0 };
  const r = { count: 0, base: 0, deltas: [], sentAt: 0, drops: {} };
  while (p.i < b.length) {
    const key = varint(b, p);
    const f = Math.floor(key / 8);
    const wt = key & 7;
    if (f === 1 && wt === 2) {
      const end = varint(b, p) + p.i;
      while (p.i < end) {
        const k = varint(b, p);
        if (k === (6 << 3) + 2) {
          const e = varint(b, p) + p.i;
          readDrops(b, e, p, r.drops);
        } else if (k === (8 << 3) + 0) r.sentAt = varint(b, p);
        else skip(b, p, k & 7);
      }
    } else if (f === 2 && wt === 0) r.count = varint(b, p);
    else if (f === 4 && wt === 0) r.base = varint(b, p);
    else if (f === 5 && wt === 2) {
      const end = varint(b, p) + p.i;
      while (p.i < end) r.deltas.push(varint(b, p));
    } else if (f === 5 && wt === 0) r.deltas.push(varint(b, p));
    else skip(b, p, wt);
  }
  return r;
}

function quantiles(arr, n) {
  const s = arr.subarray(0, n).sort();
  const q = (x) => (n ? s[Math.min(n - 1, Math.floor(x * n))] : null);
  return { p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999), max: n ? s[n - 1] : null };
}

async function sub(url, subject) {
  const nc = await connect({ servers: url, name: 'bench-latency' });
  let lat = new Float64Array(1 << 20); // per event: receive − event time, µs
  let agentPart = new Float64Array(1 << 20); // per event: message built (sent_at_boot_ns) − event time, µs
  const transit = []; // per message: receive − sent_at_boot_ns, µs
  let n = 0;
  let messages = 0;
  let bad = 0;
  let firstRecv = null;
  let lastRecv = null;
  let drops = {};
  const perSecond = new Map(); // event-time second → events
  const s = nc.subscribe(subject, {
    callback: (err, m) => {
      if (err) return;
      const now = Number(clockBoottimeNs());
      let b;
      try {
        b = readBatch(m.data);
      } catch (e) {
        bad++;
        process.stderr.write(`nats-bench sub: unreadable batch: ${e.message}\n`);
        return;
      }
      messages++;
      firstRecv ??= now;
      lastRecv = now;
      drops = b.drops;
      if (n + b.deltas.length > lat.length) {
        const grow = (a) => {
          const x = new Float64Array(Math.max(a.length * 2, n + b.deltas.length));
          x.set(a.subarray(0, n));
          return x;
        };
        lat = grow(lat);
        agentPart = grow(agentPart);
      }
      for (const d of b.deltas) {
        const ts = b.base + d;
        lat[n] = (now - ts) / 1000;
        agentPart[n] = (b.sentAt - ts) / 1000;
        n++;
        const sec = Math.floor(ts / 1e9);
        perSecond.set(sec, (perSecond.get(sec) ?? 0) + 1);
      }
      transit.push((now - b.sentAt) / 1000);
      process.stdout.write(`n ${n}\n`);
    },
  });
  await nc.flush();
  process.stderr.write(`nats-bench sub: subscribed to ${subject}\n`);
  const finish = async () => {
    s.unsubscribe();
    await nc.close().catch(() => {});
    // Per-second rates over whole seconds of event time (first and last seconds are partial).
    const secs = [...perSecond.keys()].sort((a, b) => a - b).slice(1, -1).map((k) => perSecond.get(k));
    const sorted = [...secs].sort((a, b) => a - b);
    const t = Float64Array.from(transit);
    const result = {
      events: n,
      messages,
      unreadable: bad,
      eventsPerMessage: messages ? n / messages : null,
      receiveSpanS: firstRecv !== null ? (lastRecv - firstRecv) / 1e9 : null,
      latencyUs: quantiles(lat, n),
      agentPartUs: quantiles(agentPart, n),
      transitUs: quantiles(t, t.length),
      eventsPerSecond: { median: sorted.length ? sorted[Math.floor(sorted.length / 2)] : null, max: sorted.length ? sorted[sorted.length - 1] : null, seconds: secs },
      drops,
    };
    process.stdout.write(`result ${JSON.stringify(result)}\n`, () => process.exit(0));
  };
  process.once('SIGTERM', finish);
  process.once('SIGINT', finish);
}

async function count(url, host, portLo, portHi) {
  const { pb } = await import(new URL('../dist/publish/wire.js', import.meta.url));
  const nc = await connect({ servers: url, name: 'bench-count' });
  const js = jetstream(nc);
  const c = await js.consumers.get('TCPDWELL', { filter_subjects: `tcpdwell.v1.${host}.>` });
  const r = { messages: {}, bytes: {}, transitions: 0, listener: 0, timewaitStart: 0, timewaitEnd: 0, snapshot: 0, otherPorts: 0, batchEvents: 0, dwellRecords: 0, drops: {} };
  const inRange = (p) => p >= portLo && p <= portHi;
  const maxDrops = (h) => {
    for (const [k, v] of Object.entries(h?.drops ?? {})) r.drops[k] = Math.max(r.drops[k] ?? 0, Number(v));
  };
  // Read up to the stream's last message: a fetch can come back empty before the end (seen with
  // batches of ~400 KB messages: the count stopped after a few dozen of hundreds), so an empty
  // fetch ends the count only once the last sequence was seen, or after 30 s without progress.
  const lastSeq = (await (await jetstreamManager(nc)).streams.info('TCPDWELL')).state.last_seq;
  let seen = 0;
  let idleSince = Date.now();
  for (;;) {
    const batch = await c.fetch({ max_messages: 100, expires: 2000 });
    let got = 0;
    for await (const m of batch) {
      got++;
      seen = Math.max(seen, m.seq);
      const kind = m.subject.split('.')[3];
      r.messages[kind] = (r.messages[kind] ?? 0) + 1;
      r.bytes[kind] = (r.bytes[kind] ?? 0) + m.data.length;
      if (kind === 'transitions') {
        const b = pb.TransitionBatch.decode(m.data);
        maxDrops(b.header);
        r.batchEvents += b.count;
        for (let i = 0; i < b.count; i++) {
          const k = b.kind[i];
          if (!inRange(b.sport[i]) && !inRange(b.dport[i])) r.otherPorts++;
          if (k === 1) {
            const o = b.oldState[i];
            const s = b.newState[i];
            // The listeners' own CLOSE(7)→LISTEN(10) and LISTEN→CLOSE: once per run, not per connection.
            if ((o === 7 && s === 10) || (o === 10 && s === 7)) r.listener++;
            else r.transitions++;
          } else if (k === 2) r.timewaitStart++;
          else if (k === 3) r.timewaitEnd++;
        }
      } else if (kind === 'snapshot') {
        const s = pb.Snapshot.decode(m.data);
        maxDrops(s.header);
        r.snapshot += s.sockets?.count ?? 0;
      } else if (kind === 'dwell') {
        const d = pb.DwellBatch.decode(m.data);
        maxDrops(d.header);
        r.dwellRecords += d.count;
      } else if (kind === 'summary') {
        maxDrops(pb.Summary.decode(m.data).header);
      }
    }
    if (got > 0) idleSince = Date.now();
    else if (seen >= lastSeq || Date.now() - idleSince > 30_000) break;
  }
  r.lastSeq = lastSeq;
  r.seenSeq = seen;
  await nc.close();
  process.stdout.write(`${JSON.stringify(r)}\n`);
}

if (mode === 'sub') await sub(args[0], args[1]);
else if (mode === 'count') await count(args[0], args[1], Number(args[2]), Number(args[3]));
else {
  process.stderr.write('usage: nats-bench.mjs sub URL SUBJECT | count URL HOST PORT_LO PORT_HI\n');
  process.exit(2);
}
