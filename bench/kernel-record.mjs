// What a raw kernel recording (`tcpdwell trace --format raw`) says about itself, read in chunks so
// that a 10-minute soak's recording (~2 GB) fits in memory: per socket, whether the chain of
// events is whole. Used by make soak (SOAK_TRACE=1) and bench/soak-replay.mjs.
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { decodeRingBatch, RING_HEADER_BYTES } = await import(join(ROOT, 'dist/decode/index.js'));
const { TIMEWAIT_GRACE_NS } = await import(join(ROOT, 'dist/track/index.js'));

/** Calls onEvent for every record of the recording, in order; returns decode stats. */
export function eachEvent(path, onEvent, chunkBytes = 64 << 20) {
  const fd = openSync(path, 'r');
  const stats = { records: 0, malformed: 0 };
  try {
    let carry = Buffer.alloc(0);
    const buf = Buffer.allocUnsafe(chunkBytes);
    for (;;) {
      const n = readSync(fd, buf, 0, chunkBytes, null);
      const data = carry.length ? Buffer.concat([carry, buf.subarray(0, n)]) : buf.subarray(0, n);
      // Up to the last whole entry; the rest waits for the next chunk.
      let off = 0;
      while (data.length - off >= RING_HEADER_BYTES) {
        const len = data.readUInt32LE(off);
        const next = off + RING_HEADER_BYTES + ((len + 7) & ~7);
        if (len === 0 || next > data.length) break;
        off = next;
      }
      decodeRingBatch(data.subarray(0, off), onEvent, stats);
      carry = Buffer.from(data.subarray(off));
      if (n === 0) {
        if (carry.length) stats.malformed++;
        return stats;
      }
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Audits a recording. A socket's chain is broken when a transition leaves a state other than
 * the one the previous entered (transitions in between never came), or its timewait ended while
 * its last transition was not X→CLOSE (the close and the timewait's start never came). A timewait
 * whose timer was due more than graceS (the tracker's TIMEWAIT_GRACE_NS) before the recording's
 * last event and that has no end lost its end. Returns counts, and up to `keep` examples of each (cookies and times).
 */
export function auditRecording(path, { graceS = Number(TIMEWAIT_GRACE_NS) / 1e9, keep = 5 } = {}) {
  const open = new Map(); // cookie → { state, tw: due ns | null }
  const broken = [];
  let brokenN = 0;
  let events = 0;
  let sockets = 0;
  let lastNs = 0n;
  const stats = eachEvent(path, (e) => {
    events++;
    if (e.tsNs > lastNs) lastNs = e.tsNs;
    let s = open.get(e.cookie);
    if (!s) {
      sockets++;
      open.set(e.cookie, (s = { state: null, due: null }));
    }
    const breakHere = (why) => {
      if (brokenN++ < keep) broken.push({ cookie: String(e.cookie), atS: Number(e.tsNs) / 1e9, why });
    };
    if (e.type === 'transition') {
      if (s.state !== null && e.oldState !== s.state) breakHere(`${e.oldState}→${e.newState} after ${s.state}`);
      s.state = e.newState;
      if (e.newState === 'CLOSE' && s.due === null) open.delete(e.cookie);
    } else if (e.type === 'timewait_start') {
      s.due = e.expiresNs ?? e.tsNs + 60_000_000_000n;
    } else if (e.type === 'timewait_end') {
      if (s.state !== null && s.state !== 'CLOSE') breakHere(`timewait ended while the socket was last seen in ${s.state}`);
      open.delete(e.cookie);
    }
  });
  const cutoff = lastNs - BigInt(Math.round(graceS * 1e9));
  const missingEnds = [];
  let missingN = 0;
  for (const [cookie, s] of open) {
    if (s.due !== null && s.due < cutoff && missingN++ < keep) missingEnds.push({ cookie: String(cookie), dueS: Number(s.due) / 1e9 });
  }
  return { events, sockets, malformed: stats.malformed, lastS: Number(lastNs) / 1e9, brokenChains: brokenN, broken, missingEnds: missingN, missing: missingEnds };
}
