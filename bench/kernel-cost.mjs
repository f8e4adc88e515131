#!/usr/bin/env node
// Per-program cost of the kernel side: runs the churn generator for 5 s in a namespace of its
// own while tcpdwell's programs are attached with a filter that matches nothing (so user space
// does no work), with kernel.bpf_stats_enabled=1, and prints run counts and ns per run from
// bpf_prog_info. The stats themselves add a little to every run. Root; after `make bench`
// has built bench/.output/churn:  node bench/kernel-cost.mjs
// Knobs: KCOST_MODE=client-first|server-first|rst (rst: no timewait, so every timer program run
// is for some other timer), KCOST_RATE=<conn/s> (churn --rate; default unpaced), KCOST_SECONDS=5,
// KCOST_EMIT=1 (filter on the churn's namespace instead of a port nothing uses: every record is
// written to the ring and read, as under `tcpdwell run`), KCOST_OBJECT=<path of a .bpf.o>.
// Besides ns per run it prints the programs' time per connection (the sum over programs of run
// time, over the connections made).
import { execFileSync, spawn } from 'node:child_process';
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
  const env = process.env;
  const inode = Number(execFileSync('stat', ['-L', '-c', '%i', `/run/netns/${ns}`], { encoding: 'utf8' }).trim());
  const objectPath = env.KCOST_OBJECT || undefined; // another build of bpf/tcpdwell.bpf.o, to compare
  tracer = Tracer.open({ objectPath, ...(env.KCOST_EMIT === '1' ? { netns: [inode] } : { ports: [9] }) });
  // The reader only counts: with KCOST_EMIT=1 its CPU per record is the loader's own cost
  // (ring_buffer__consume, the copy into a batch, the hand-over to JavaScript).
  let records = 0;
  tracer.readRing((batch) => {
    for (let off = 0; off + 8 <= batch.length; off += 8 + ((batch.readUInt32LE(off) + 7) & ~7)) records++;
  });
  writeFileSync(statsFile, '1');
  const cpu0 = process.cpuUsage();
  const args = ['--mode', env.KCOST_MODE || 'client-first', '--threads', '2', '--duration', env.KCOST_SECONDS || '5', ...(env.KCOST_RATE ? ['--rate', env.KCOST_RATE] : [])];
  // Not spawnSync: the reader must run meanwhile (with KCOST_EMIT=1 a blocked loop fills the ring,
  // and failed reserves are not what a program costs).
  const r = await new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, churn, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.on('error', reject);
    child.on('exit', () => resolve({ stdout }));
  });
  const lost = tracer.counters().lost_ring_full;
  if (lost) console.log(`ring full: ${lost} records lost (the reader fell behind; ns/run then includes failed reserves)`);
  tracer.drainRing();
  const cpu = process.cpuUsage(cpu0);
  const stats = tracer['obj'].programStats();
  writeFileSync(statsFile, statsBefore);
  console.log(r.stdout.trim());
  for (const p of stats) {
    console.log(`${p.name.padEnd(22)} runs ${String(p.runCount).padStart(9)}  ns/run ${(p.runTimeNs / Math.max(1, p.runCount)).toFixed(0).padStart(5)}  skipped ${p.recursionMisses}`);
  }
  const connections = JSON.parse(r.stdout.trim().split('\n').pop() || '{}').connections ?? 0;
  const total = stats.reduce((s, p) => s + p.runTimeNs, 0);
  console.log(`connections ${connections}  programs' time per connection ${(total / Math.max(1, connections)).toFixed(0)} ns (object ${env.KCOST_OBJECT || 'this build'})`);
  const readerNsPerRecord = records ? Math.round(((cpu.user + cpu.system) * 1000) / records) : null;
  console.log(`reader: ${records} records, ${readerNsPerRecord ?? '—'} ns CPU per record (the loader's copy and hand-over, nothing decoded)`);
  console.log(JSON.stringify({ args, emit: env.KCOST_EMIT === '1', records, lost, readerNsPerRecord, churn: r.stdout.trim().split('\n').pop(), programs: stats.map((p) => ({ name: p.name, runs: p.runCount, nsPerRun: Math.round(p.runTimeNs / Math.max(1, p.runCount)) })) }));
} finally {
  writeFileSync(statsFile, statsBefore);
  tracer?.close();
  execFileSync('ip', ['netns', 'del', ns]);
}
