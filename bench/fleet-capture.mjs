#!/usr/bin/env node
// The real agent capture the fleet benchmark builds its hosts from (bench/fleet-bench.mjs):
// `tcpdwell run` in a network namespace of its own under loopback churn (bench/churn.c), once
// busy (FLEET_BUSY_RATE connections/s, 10 events each) and once light (FLEET_LIGHT_RATE), each
// for FLEET_CAPTURE_SECONDS; every message the agent published is read back from the stream and
// written to bench/.output/fleet-capture-{busy,light}.json ({ subject, data (base64) } per line).
// Needs root.
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { CHURN, OUT_DIR, TCPDWELL } from './common.mjs';
import { startLocalNats } from '../dist/publish/nats-server.js';

const seconds = Number(process.env.FLEET_CAPTURE_SECONDS ?? 8);
const log = (l) => process.stderr.write(`fleet-capture: ${l}\n`);

async function capture(name, rate) {
  const netns = `tcpdwell-cap-${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), 'tcpdwell-cap-'));
  const sh = (...a) => execFileSync(a[0], a.slice(1), { stdio: 'ignore' });
  sh('ip', 'netns', 'add', netns);
  const live = [];
  let nats;
  try {
    sh('ip', '-n', netns, 'link', 'set', 'lo', 'up');
    for (const s of ['net.ipv4.tcp_tw_reuse=1', 'net.ipv4.tcp_max_tw_buckets=1048576']) sh('ip', 'netns', 'exec', netns, 'sysctl', '-qw', s);
    nats = await startLocalNats({ storeDir: join(dir, 'nats') });
    const agent = spawn(TCPDWELL, ['run', '--nats', nats.url, '--host', 'capture', '--spool-dir', join(dir, 'spool'), '--no-pin', '--netns', netns, '--summary-interval', '2'], { stdio: ['ignore', 'ignore', 'pipe'] });
    live.push(agent);
    let out = '';
    agent.stderr.on('data', (d) => (out += d));
    for (const deadline = Date.now() + 30_000; !out.includes('publishing to'); await sleep(100)) if (agent.exitCode !== null || Date.now() > deadline) throw new Error(`agent did not start:\n${out}`);
    const churn = spawn('ip', ['netns', 'exec', netns, CHURN, '--mode', 'client-first', '--threads', '1', '--rate', String(rate), '--addrs', '8', '--ports', '8', '--duration', String(seconds)], { stdio: 'ignore' });
    live.push(churn);
    await new Promise((r) => churn.once('exit', r));
    await sleep(1500);
    agent.kill('SIGINT');
    await new Promise((r) => agent.once('exit', r));
    const nc = await connect({ servers: nats.url });
    const c = await jetstream(nc).consumers.get('TCPDWELL');
    const lines = [];
    for (;;) {
      const batch = await c.fetch({ max_messages: 1000, expires: 1000 });
      let n = 0;
      for await (const m of batch) {
        n++;
        lines.push(JSON.stringify({ subject: m.subject, data: Buffer.from(m.data).toString('base64') }));
      }
      if (n === 0) break;
    }
    await nc.close();
    mkdirSync(OUT_DIR, { recursive: true });
    const path = join(OUT_DIR, `fleet-capture-${name}.json`);
    writeFileSync(path, lines.join('\n') + '\n');
    log(`${name}: ${lines.length} messages at ${rate} conn/s for ${seconds} s → ${path}`);
  } finally {
    for (const p of live) p.kill('SIGKILL');
    await nats?.stop();
    execFileSync('ip', ['netns', 'del', netns], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  }
}

await capture('busy', Number(process.env.FLEET_BUSY_RATE ?? 1000));
await capture('light', Number(process.env.FLEET_LIGHT_RATE ?? 20));
