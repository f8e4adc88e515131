#!/usr/bin/env node
// Per-program cost of the kernel side: runs the churn generator for 5 s in a namespace of its
// own while tcpdwell's programs are attached with a filter that matches nothing (so user space
// does no work), with kernel.bpf_stats_enabled=1, and prints run counts and ns per run from
// bpf_prog_info. The stats themselves add a little to every run. Root; after `make bench`
// has built bench/.output/churn:  node bench/kernel-cost.mjs
// KCOST_OBJECT=path: another build of the kernel program (A/B against an older commit's object);
// KCOST_MODE=client-first|server-first|rst (churn --mode). Besides ns per run it prints the
// programs' time per connection (the sum over programs of run time, over the connections made).
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { Tracer } from '../dist/kernel/tracer.js';

const ns = `tcpdwell-kcost-${process.pid}`;
const churn = new URL('./.output/churn', import.meta.url).pathname;
const statsFile = '/proc/sys/kernel/bpf_stats_enabled';
const statsBefore = readFileSync(statsFile, 'utf8').trim();
execFileSync('ip', ['netns', 'add', ns]);
let tracer;
try {
  execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  for (const a of ['net.ipv4.tcp_tw_reuse=1', 'net.ipv4.tcp_max_tw_buckets=1048576']) execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', a]);
  for (let i = 2; i <= 8; i++) execFileSync('ip', ['-n', ns, 'addr', 'add', `127.0.0.${i}/8`, 'dev', 'lo']);
  tracer = Tracer.open({ ports: [9], objectPath: process.env.KCOST_OBJECT || undefined });
  tracer.readRing(() => {});
  writeFileSync(statsFile, '1');
  const r = spawnSync('ip', ['netns', 'exec', ns, churn, '--mode', process.env.KCOST_MODE || 'client-first', '--threads', '2', '--duration', '5'], { encoding: 'utf8' });
  const stats = tracer['obj'].programStats();
  writeFileSync(statsFile, statsBefore);
  console.log(r.stdout.trim());
  for (const p of stats) {
    console.log(`${p.name.padEnd(22)} runs ${String(p.runCount).padStart(9)}  ns/run ${(p.runTimeNs / Math.max(1, p.runCount)).toFixed(0).padStart(5)}  skipped ${p.recursionMisses}`);
  }
  const connections = JSON.parse(r.stdout.trim().split('\n').pop() || '{}').connections ?? 0;
  const total = stats.reduce((s, p) => s + p.runTimeNs, 0);
  console.log(`connections ${connections}  programs' time per connection ${(total / Math.max(1, connections)).toFixed(0)} ns (object ${process.env.KCOST_OBJECT || 'this build'})`);
} finally {
  writeFileSync(statsFile, statsBefore);
  tracer?.close();
  execFileSync('ip', ['netns', 'del', ns]);
}
