#!/usr/bin/env node
// Records real kernel records for the decoder's unit tests (test/fixtures/*.ring, *.iter):
// each scenario runs in its own network namespace while the real program traces it.
// Run as root after `make`:  node scripts/record-fixtures.mjs
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Tracer } from '../dist/kernel/tracer.js';
import { resolveNetns } from '../dist/kernel/namespaces.js';

const out = new URL('../test/fixtures/', import.meta.url);
const workload = new URL('../test/kernel/workload.mjs', import.meta.url).pathname;

async function record(name, scenario, host, port, arg) {
  const ns = `tcpdwell-rec-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  try {
    const tracer = Tracer.open({ netns: [resolveNetns(ns).inode] });
    const batches = [];
    const reader = tracer.readRing((b) => batches.push(Buffer.from(b)));
    if (scenario === 'hold') {
      const child = spawn('ip', ['netns', 'exec', ns, process.execPath, workload, scenario, host, String(port), String(arg)], { stdio: ['pipe', 'pipe', 'inherit'] });
      await new Promise((r) => child.stdout.once('data', r));
      writeFileSync(new URL(name, out), tracer.snapshot(resolveNetns(ns)));
      child.stdin.end();
      await new Promise((r) => child.on('close', r));
    } else {
      const args = ['netns', 'exec', ns, process.execPath, workload, scenario, host, String(port)];
      if (arg !== undefined) args.push(String(arg));
      const r = spawnSync('ip', args, { stdio: 'inherit' });
      if (r.status !== 0) throw new Error(`${scenario} failed`);
      await sleep(200);
      reader.consume();
      writeFileSync(new URL(name, out), Buffer.concat(batches));
    }
    tracer.close();
    console.log(`recorded ${name}`);
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
}

await record('ipv4-client-first.ring', 'client-first', '127.0.0.1', 9100);
await record('ipv6-client-first.ring', 'client-first', '::1', 9101);
await record('ipv4-refused.ring', 'refused', '127.0.0.1', 9102);
await record('snapshot.iter', 'hold', '127.0.0.1', 9103, 2);
