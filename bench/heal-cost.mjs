#!/usr/bin/env node
// What one heal of the live table costs (src/agent/agent.ts Agent.heal): the iterator's walk of a
// namespace's sockets, decoding its records, and seeding a Tracker with them. Run it against a
// busy namespace, e.g. during make soak: node bench/heal-cost.mjs NETNS_NAME [REPS]
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const [name, repsArg] = process.argv.slice(2);
if (!name) {
  console.error('usage: node bench/heal-cost.mjs NETNS_NAME [REPS]');
  process.exit(2);
}
const { Tracer } = await import(join(ROOT, 'dist/kernel/tracer.js'));
const { decodeRecords } = await import(join(ROOT, 'dist/decode/index.js'));
const { Tracker } = await import(join(ROOT, 'dist/track/index.js'));
const { clockBoottimeNs } = await import('bpf-ts-loader');
const path = `/run/netns/${name}`;
const ns = { inode: statSync(path).ino, path };
const tracer = Tracer.open({ netns: [ns.inode] });
const tracker = new Tracker({ clock: clockBoottimeNs });
const ms = (a, b) => Number(b - a) / 1e6;
const rows = [];
for (let i = 0; i < Number(repsArg ?? 5); i++) {
  const t0 = process.hrtime.bigint();
  const buf = tracer.snapshot(ns);
  const t1 = process.hrtime.bigint();
  const events = [];
  decodeRecords(buf, (e) => events.push(e), { records: 0, malformed: 0 });
  const t2 = process.hrtime.bigint();
  tracker.seed(ns.inode, events);
  const t3 = process.hrtime.bigint();
  rows.push({ sockets: events.length, walkMs: ms(t0, t1), decodeMs: ms(t1, t2), seedMs: ms(t2, t3), totalMs: ms(t0, t3) });
}
tracer.close();
console.table(rows);
