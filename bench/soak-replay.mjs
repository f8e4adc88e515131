#!/usr/bin/env node
// What the kernel said, from a raw recording (`tcpdwell trace --format raw`, or make soak with
// SOAK_TRACE=1): audits every socket's chain of events (bench/kernel-record.mjs), replays the
// whole recording through a fresh Tracker and prints its table and counters, and prints every
// event of the cookies given. Reads the recording in chunks, so a 10-minute soak's fits.
//
//   node bench/soak-replay.mjs bench/.output/soak-latest.ring [cookie ...]
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const [file, ...cookies] = process.argv.slice(2);
if (!file) {
  console.error('usage: node bench/soak-replay.mjs RECORDING [cookie ...]');
  process.exit(2);
}
const { auditRecording, eachEvent } = await import(join(ROOT, 'bench/kernel-record.mjs'));
const { Tracker } = await import(join(ROOT, 'dist/track/index.js'));

const audit = auditRecording(file);
console.log(
  `${audit.events} events (${audit.malformed} malformed), ${audit.sockets} sockets; ${audit.brokenChains} with transitions that never came, ` +
    `${audit.missingEnds} timewaits whose end never came`,
);
for (const b of audit.broken) console.log(`  broken: cookie ${b.cookie} at ${b.atS.toFixed(3)} s: ${b.why}`);
for (const m of audit.missing) console.log(`  no end: cookie ${m.cookie}, due at ${m.dueS.toFixed(3)} s`);

const line = (e) =>
  `${e.tsNs} ${e.type}${e.oldState ? ` ${e.oldState}->${e.newState}` : ''}${e.substate ? ` substate ${e.substate}` : ''}${e.reason ? ` ${e.reason}` : ''}` +
  `${e.flip ? ' flip' : ''}${e.gap ? ' gap' : ''} ${e.saddr}:${e.sport}->${e.daddr}:${e.dport} pid ${e.pid} ${e.comm}`;
const wanted = new Map(cookies.map((c) => [BigInt(c), []]));
let now = 0n;
const tracker = new Tracker({ clock: () => now });
eachEvent(file, (e) => {
  now = e.tsNs;
  tracker.ingest([e]);
  wanted.get(e.cookie)?.push(line(e));
});
console.log('replayed table at the last event:', JSON.stringify(tracker.table().total));
const s = tracker.stats();
console.log('tracker:', ['unknownSockets', 'corrections', 'late', 'duplicates', 'timewaitFlips', 'timewaitsOverdue', 'estimatedRecords'].map((k) => `${k} ${s[k]}`).join(', '));
for (const [c, lines] of wanted) console.log(`cookie ${c}:\n${lines.map((l) => `  ${l}`).join('\n') || '  (no events)'}`);
