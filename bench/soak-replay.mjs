#!/usr/bin/env node
// What the kernel said, from a raw recording (`tcpdwell trace --format raw`, or make soak with
// SOAK_TRACE=1): checks every socket's chain of transitions (each leaves the state the previous
// one entered; a socket with a timewait closed before it), replays the whole recording through
// a fresh Tracker and prints its table and counters, and prints every event of the cookies given.
//
//   node bench/soak-replay.mjs bench/.output/soak-diag.ring [cookie ...]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const [file, ...cookies] = process.argv.slice(2);
if (!file) {
  console.error('usage: node bench/soak-replay.mjs RECORDING [cookie ...]');
  process.exit(2);
}
const { decodeRingBatch } = await import(join(ROOT, 'dist/decode.js'));
const { Tracker } = await import(join(ROOT, 'dist/track/index.js'));

const stats = { malformed: 0 };
const events = [];
decodeRingBatch(readFileSync(file), (e) => events.push(e), stats);
const bySocket = new Map();
for (const e of events) {
  const k = e.cookie.toString();
  let l = bySocket.get(k);
  if (!l) bySocket.set(k, (l = []));
  l.push(e);
}
const line = (e) =>
  `${e.tsNs} ${e.type}${e.oldState ? ` ${e.oldState}->${e.newState}` : ''}${e.substate ? ` substate ${e.substate}` : ''}${e.reason ? ` ${e.reason}` : ''}` +
  `${e.flip ? ' flip' : ''}${e.gap ? ' gap' : ''} ${e.saddr}:${e.sport}->${e.daddr}:${e.dport} pid ${e.pid} ${e.comm}`;

let broken = 0;
for (const [cookie, list] of bySocket) {
  let state = null;
  let ok = true;
  for (const e of list) {
    if (e.type !== 'transition') continue;
    if (state !== null && e.oldState !== state) ok = false;
    state = e.newState;
  }
  if (list.some((e) => e.type !== 'transition') && state !== null && state !== 'CLOSE') ok = false;
  if (!ok && ++broken <= 5) console.log(`broken chain, cookie ${cookie}:\n${list.map((e) => `  ${line(e)}`).join('\n')}`);
}
console.log(`${events.length} events (${stats.malformed} malformed), ${bySocket.size} sockets, ${broken} broken chains`);

let now = 0n;
const tracker = new Tracker({ clock: () => now });
for (const e of events) {
  now = e.tsNs;
  tracker.ingest([e]);
}
console.log('replayed table at the last event:', JSON.stringify(tracker.table().total));
const s = tracker.stats();
console.log('tracker:', ['unknownSockets', 'corrections', 'late', 'duplicates', 'timewaitFlips', 'estimatedRecords'].map((k) => `${k} ${s[k]}`).join(', '));
for (const c of cookies) console.log(`cookie ${c}:\n${(bySocket.get(c) ?? []).map((e) => `  ${line(e)}`).join('\n') || '  (no events)'}`);
