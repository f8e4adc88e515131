/**
 * The network link between the agent and a NATS cluster cut (veth down) for seconds while
 * connections come and go, then restored. The agent runs in a network namespace of its own,
 * joined to the host by a veth pair; the three NATS nodes listen on the host's end. A link that
 * goes down sends no RST: the agent finds out only because its pings go unanswered.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { freePort, startLocalNats, type LocalNats } from '../../src/publish/nats-server.js';
import { STREAM_SUBJECTS } from '../../src/publish/subjects.js';
import { kernelAvailable, TestNetns, EVENTS_PER_CONNECTION } from '../kernel/helpers.js';
import { contiguousOnce, expectedLessGaps, readStream, seqsByEpoch, transitionEvents } from './helpers.js';
import { until } from './collect-helpers.js';

const AGENT_CHILD = fileURLToPath(new URL('./agent-child.mjs', import.meta.url));

describe.skipIf(!kernelAvailable)('the link between agent and broker cut', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcpdwell-linkcut-'));
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await Promise.resolve().then(c).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  it('veth down for 6 s mid-stream: the agent keeps running, notices, reconnects, and every sequence number arrives exactly once', async () => {
    // The agent's namespace, joined to the host by a veth pair (deleting the namespace deletes both ends).
    const agentNs = new TestNetns();
    cleanups.push(() => agentNs.delete());
    const work = new TestNetns(); // where the traced connections happen
    cleanups.push(() => work.delete());
    const hostIf = `tdv${process.pid}h`;
    const agentIf = `tdv${process.pid}a`;
    const net = `10.213.${process.pid % 250}`;
    const ip = (...args: string[]) => execFileSync('ip', args);
    ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', agentIf, 'netns', agentNs.name);
    ip('addr', 'add', `${net}.1/30`, 'dev', hostIf);
    ip('link', 'set', hostIf, 'up');
    ip('-n', agentNs.name, 'addr', 'add', `${net}.2/30`, 'dev', agentIf);
    ip('-n', agentNs.name, 'link', 'set', agentIf, 'up');
    cleanups.push(() => execFileSync('ip', ['link', 'set', hostIf, 'up'], { stdio: 'ignore' })); // in case the test fails mid-cut

    // A three-node cluster listening on the host's end of the link; the stream replicated 3 ways.
    const routes = await Promise.all([0, 1, 2].map(() => freePort()));
    const nodes: LocalNats[] = await Promise.all(
      [0, 1, 2].map((i) =>
        startLocalNats({
          host: `${net}.1`,
          storeDir: join(dir, `n${i}`),
          cluster: { serverName: `n${i}`, clusterName: 'tcpdwell-linkcut', routePort: routes[i]!, peerRoutePorts: routes.filter((_, j) => j !== i) },
        }),
      ),
    );
    cleanups.push(() => Promise.all(nodes.map((n) => n.stop())));
    const urls = nodes.map((n) => n.url);
    const nc = await connect({ servers: urls });
    cleanups.push(() => nc.close());
    await until(
      async () => {
        try {
          const jsm = await jetstreamManager(nc);
          await jsm.streams.add({ name: 'TCPDWELL', subjects: [STREAM_SUBJECTS], num_replicas: 3, duplicate_window: 600e9 });
          return true;
        } catch {
          return false; // no JetStream meta leader yet
        }
      },
      20_000,
      'the replicated stream created',
    );

    // The agent, inside its namespace, tracing the workload namespace.
    const options = {
      host: 'linkcut',
      connection: { servers: urls },
      spoolDir: join(dir, 'spool'),
      flushIntervalMs: 50,
      summaryIntervalMs: 60_000,
      tracer: { netns: [work.ns.inode] },
      stream: { pingIntervalMs: 500 },
    };
    const child = spawn('ip', ['netns', 'exec', agentNs.name, process.execPath, AGENT_CHILD, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    let out = '';
    child.stderr.on('data', (d) => (log += d));
    child.stdout.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    cleanups.push(() => child.exitCode === null && child.kill('SIGKILL'));
    await until(() => log.includes('agent ready') || child.exitCode !== null, 20_000, 'agent started');
    expect(log).toContain('agent ready');
    expect(log).toMatch(/connected to NATS at/);

    await work.run('burst', '127.0.0.1', 8801, 30);
    await sleep(300);
    const cutAt = Date.now();
    ip('link', 'set', hostIf, 'down');
    await work.run('burst', '127.0.0.1', 8802, 30); // while the link is down
    await until(() => log.includes('NATS connection lost'), 10_000, 'the agent noticed the dead link');
    const noticedMs = Date.now() - cutAt;
    await work.run('burst', '127.0.0.1', 8803, 30);
    await sleep(Math.max(0, 6000 - (Date.now() - cutAt)));
    expect(child.exitCode).toBeNull(); // still running
    ip('link', 'set', hostIf, 'up');
    const upAt = Date.now();
    await until(() => log.includes('NATS connection back'), 20_000, 'the agent reconnected');
    const backMs = Date.now() - upAt;
    await work.run('burst', '127.0.0.1', 8804, 30);
    await sleep(300);

    child.kill('SIGTERM');
    expect(await exited, log).toBe(0);
    const final = JSON.parse(out.trim().split('\n').pop()!);
    expect(final.spool.messages).toBe(0);
    expect(final.drops.spoolDropped).toBe(0);
    expect(final.drops.lost_ring_full).toBe(0);
    console.log(`link cut: dead link noticed after ${noticedMs} ms, reconnected ${backMs} ms after the link came back; ${final.nats.publishErrors} publish errors re-sent`);

    const msgs = await readStream(urls[0]!);
    const seqs = seqsByEpoch(msgs);
    expect(seqs.size).toBe(1);
    const mine = [...seqs.values()][0]!;
    expect(contiguousOnce(mine)).toBe(true);
    expect(mine.length).toBe(final.batches); // every message the agent made, once
    // 4 bursts of 30 connections, EVENTS_PER_CONNECTION each, plus 4 listeners x 2.
    // On a shortfall, what the agent read (tracker) against what its kernel program emitted (drops.events).
    const events = transitionEvents(msgs);
    expect(events.length, JSON.stringify({ tracker: final.tracker, drops: final.drops, events: final.events })).toBe(expectedLessGaps(events, 4 * (30 * EVENTS_PER_CONNECTION + 2)));
  }, 60_000);
});
