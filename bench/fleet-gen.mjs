// Realistic agent messages for N hosts, built from a real agent's capture (bench/fleet-capture.mjs)
// with the project's own encoders: each host replays the capture's messages in a loop, under its
// own host id, boot id and epoch, numbered 1, 2, 3 … as an agent numbers them; each loop starts
// where the previous one ended in time (boot_to_unix_ns moves on by the capture's span). Cookies
// differ between host groups (FLEET_VARIANTS copies of the capture, re-encoded with
// encodeTransitions / encodeDwell, cookies and local addresses shifted), so a cookie or an
// address picks a few hosts, not all.
import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs/minimal.js';
import { join } from 'node:path';
import { OUT_DIR } from './common.mjs';
import { decodeDwell, decodeSnapshot, decodeTransitions, encodeDwell, encodeSnapshot, encodeTransitions, pb } from '../dist/publish/wire.js';

/** The capture's messages: subject kind, bytes, events (rows) each. */
export function loadCapture(name) {
  const path = join(OUT_DIR, `fleet-capture-${name}.json`);
  const lines = readFileSync(path, 'utf8').trim().split('\n');
  return lines.map((l) => {
    const { subject, data } = JSON.parse(l);
    const kind = subject.split('.')[3];
    return { kind, data: new Uint8Array(Buffer.from(data, 'base64')) };
  });
}

/** Bytes of a varint. */
function varint(n) {
  const out = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** Where field 1 (the Header, which every kind starts with) lies: [start, end). */
function headerSpan(data) {
  if (data[0] !== 0x0a) throw new Error('message does not start with its header');
  const r = protobuf.Reader.create(data);
  r.pos = 1;
  const len = r.uint32();
  return [r.pos, r.pos + len];
}
const stripHeader = (data) => data.subarray(headerSpan(data)[1]);
const headerOf = (data) => pb.Header.decode(data.subarray(...headerSpan(data)));

const shiftAddr = (a, v) => (a.includes('.') ? a.replace(/^(\d+)\.(\d+)\./, (_, x, y) => `${x}.${(Number(y) + v) % 256}.`) : a);

/**
 * Where a batch body (header stripped) keeps its cookies (packed fixed64) and local addresses
 * (one bytes field each): TransitionBatch fields 7 and 17, DwellBatch fields 4 and 16. next()
 * patches them in a copy per message, so every host has its own cookies and address.
 */
function patchPoints(kind, body) {
  const [cookieField, saddrField] = kind === 'transitions' ? [7, 17] : kind === 'dwell' ? [4, 16] : [0, 0];
  const cookies = [];
  const saddrs = [];
  if (!cookieField) return { cookies, saddrs };
  const r = protobuf.Reader.create(body);
  while (r.pos < r.len) {
    const tag = r.uint32();
    const field = tag >>> 3;
    if ((tag & 7) !== 2 || (field !== cookieField && field !== saddrField)) {
      r.skipType(tag & 7);
      continue;
    }
    const len = r.uint32();
    if (field === cookieField) for (let p = r.pos; p < r.pos + len; p += 8) cookies.push(p);
    else if (len === 4) saddrs.push(r.pos);
    r.pos += len;
  }
  return { cookies, saddrs };
}

/** One copy of the capture with cookies and local addresses moved by `v`. */
function variant(capture, v) {
  const header = { hostId: 'x', bootId: 'x', epoch: 1, seq: 1 };
  return capture.map((m) => ({ ...variantOf(m, v, header), sentNs: BigInt((headerOf(m.data).sentAtBootNs ?? 0).toString()) }));
}

function variantOf(m, v, header) {
  {
    if (v === 0 || m.kind === 'summary' || m.kind === 'alerts') {
      const body = stripHeader(m.data);
      return { kind: m.kind, body, rows: rowsOf(m), ...patchPoints(m.kind, body) };
    }
    const bump = BigInt(v) << 40n;
    if (m.kind === 'transitions' || m.kind === 'snapshot') {
      const d = m.kind === 'snapshot' ? decodeSnapshot(m.data) : decodeTransitions(m.data);
      const events = d.events.map((e) => ({ ...e, cookie: e.cookie + bump, saddr: shiftAddr(e.saddr, v) }));
      const batch = encodeTransitions(events, header, d.firstEventSeq);
      const data = m.kind === 'snapshot' ? encodeSnapshot(header, batch) : batch;
      const body = stripHeader(data);
      return { kind: m.kind, body, rows: events.length, ...patchPoints(m.kind, body) };
    }
    const d = decodeDwell(m.data);
    const records = d.records.map((r) => ({ ...r, cookie: r.cookie + bump, saddr: shiftAddr(r.saddr, v) }));
    const body = stripHeader(encodeDwell(records, header));
    return { kind: m.kind, body, rows: records.length, ...patchPoints(m.kind, body) };
  }
}

function rowsOf(m) {
  if (m.kind === 'transitions') return decodeTransitions(m.data).events.length;
  if (m.kind === 'snapshot') return decodeSnapshot(m.data).events.length;
  if (m.kind === 'dwell') return decodeDwell(m.data).records.length;
  return 0;
}

/** Span of the capture in boot-time ns (first to last message's sent time). */
function spanNs(capture) {
  const sent = capture.map((m) => {
    const h = headerOf(m.data).sentAtBootNs;
    return h ? BigInt(h.toString()) : 0n;
  });
  return sent.length > 1 ? sent.reduce((a, b) => (b > a ? b : a)) - sent.reduce((a, b) => (b < a ? b : a)) || 8_000_000_000n : 8_000_000_000n;
}

export class FleetGenerator {
  /**
   * @param capture loadCapture()'s messages
   * @param hosts how many hosts
   * @param opts variants (cookie groups, default 4), startUnixMs (time of each host's first loop),
   *   spacingMs (a host's messages this far apart instead of the capture's own pace)
   */
  constructor(capture, hosts, opts = {}) {
    this.hosts = hosts;
    const n = opts.variants ?? 4;
    this.variants = Array.from({ length: n }, (_, v) => variant(capture, v));
    const first = headerOf(capture[0].data);
    this.bootToUnix = BigInt(first.bootToUnixNs.toString());
    this.span = spanNs(capture) + 50_000_000n;
    const start = BigInt(opts.startUnixMs ?? Date.now()) * 1_000_000n;
    const firstSent = BigInt((first.sentAtBootNs ?? 0).toString());
    this.shift0 = start - (firstSent + this.bootToUnix);
    this.spacing = opts.spacingMs ? BigInt(Math.round(opts.spacingMs * 1e6)) : 0n;
    this.firstSent = firstSent;
    this.seq = new Float64Array(hosts);
    this.pos = new Uint32Array(hosts);
    this.loops = new Uint32Array(hosts);
    this.perLoop = capture.length;
  }

  /** Events (rows) in one loop of the capture. */
  get rowsPerLoop() {
    return this.variants[0].reduce((n, m) => n + m.rows, 0);
  }

  /** The next message of host i whose kind is `kind`, skipping the capture's others. */
  nextOf(i, kind) {
    while (this.variants[0][this.pos[i]].kind !== kind) {
      if (++this.pos[i] === this.perLoop) {
        this.pos[i] = 0;
        this.loops[i]++;
      }
    }
    return this.next(i);
  }

  /** The next message of host i: { subject, data, msgId, rows }. */
  next(i) {
    const tpl = this.variants[i % this.variants.length][this.pos[i]];
    const seq = ++this.seq[i];
    const host = `host-${String(i).padStart(5, '0')}`;
    const bootId = `b${String(i).padStart(7, '0')}-0000-4000-8000-000000000000`;
    // Loops follow each other in time; or, with `spacingMs`, a host's messages are that far apart
    // (a store filled with a few hours of a fleet in minutes, inserted in time order as a collector would).
    const offset = this.spacing ? this.bootToUnix + this.shift0 + BigInt(seq - 1) * this.spacing - (tpl.sentNs - this.firstSent) : this.bootToUnix + this.shift0 + BigInt(this.loops[i]) * this.span;
    const header = pb.Header.encode({ hostId: host, bootId, agentVersion: 'fleet-bench', epoch: 1, seq, bootToUnixNs: offset.toString(), drops: {} }).finish();
    const data = new Uint8Array(1 + varint(header.length).length + header.length + tpl.body.length);
    data[0] = 0x0a;
    const lv = varint(header.length);
    data.set(lv, 1);
    data.set(header, 1 + lv.length);
    const at = 1 + lv.length + header.length;
    data.set(tpl.body, at);
    // This host's own cookies (high half: host and loop, unique for 4,096 loops) and address (10.h.l.x).
    const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const high = (i * 4096 + (this.loops[i] % 4096)) >>> 0;
    for (const p of tpl.cookies) dv.setUint32(at + p + 4, high, true);
    for (const p of tpl.saddrs) {
      data[at + p] = 10;
      data[at + p + 1] = (i >> 8) & 0xff;
      data[at + p + 2] = i & 0xff;
    }
    if (++this.pos[i] === this.perLoop) {
      this.pos[i] = 0;
      this.loops[i]++;
    }
    return { subject: `tcpdwell.v1.${host}.${tpl.kind}`, data, msgId: `${host}.${bootId}.1.${seq}`, rows: tpl.rows, kind: tpl.kind };
  }
}
