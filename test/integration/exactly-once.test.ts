/**
 * Exactly once, proven on a cluster: three collector processes on a three-node NATS cluster
 * (nats-server 2.10.27, with the #4320 fix) storing into one ClickHouse server, while a generator
 * publishes agent messages for a dozen hosts the way agents do (message ids, re-sent until
 * acknowledged). Mid-run one collector is killed (SIGKILL) and restarted, then one NATS node.
 * Afterwards the store holds every published row once, no run shows a hole it does not have, and
 * the one real hole (a seq never published) is declared once, by one instance, and costs nothing.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { openStore } from '../../src/collect/open-store.js';
import { freePort, startLocalNats, type LocalNats } from '../../src/publish/nats-server.js';
import { clickHouseAvailable, startClickHouse, type TestClickHouse } from './clickhouse.js';
import { ev, refused, summaryMsg, transitionsMsg, until } from './collect-helpers.js';
import { clusterNatsServer } from './helpers.js';

const bin = fileURLToPath(new URL('../../bin/tcpdwell', import.meta.url));

interface Instance {
  name: string;
  child: ChildProcessWithoutNullStreams;
  err: string;
  metricsUrl: Promise<string>;
}

describe.skipIf(!clickHouseAvailable)('exactly once on a cluster', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcpdwell-once-'));
  const nodes: (LocalNats | null)[] = [];
  const instances: Instance[] = [];
  const logs: string[] = [];
  let ch: TestClickHouse | null = null;

  afterAll(async () => {
    for (const i of instances) i.child.kill('SIGKILL');
    for (const n of nodes) await n?.kill();
    await ch?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('3 instances, 3 nodes, one of each killed and restarted mid-run: every row stored once, no false gap, the real hole reported once', async () => {
    ch = await startClickHouse();
    const routes = await Promise.all([0, 1, 2].map(() => freePort()));
    const ports = await Promise.all([0, 1, 2].map(() => freePort()));
    const node = (i: number) =>
      startLocalNats({
        bin: clusterNatsServer(),
        port: ports[i],
        storeDir: join(dir, `n${i}`),
        cluster: { serverName: `n${i}`, clusterName: 'tcpdwell-once', routePort: routes[i]!, peerRoutePorts: routes.filter((_, j) => j !== i) },
      });
    nodes.push(...(await Promise.all([0, 1, 2].map(node))));
    const urls = ports.map((p) => `nats://127.0.0.1:${p}`);

    const startInstance = (name: string): Promise<Instance> =>
      new Promise((resolve, reject) => {
        const child = spawn(bin, ['collect', '--nats', urls.join(','), '--store', ch!.spec(), '--replicas', '3', '--instance', name, '--batch', '64', '--ack-wait', '5', '--gap-grace', '20', '--status-interval', '60', '--metrics-listen', '127.0.0.1:0'], {
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        let resolveUrl: (u: string) => void = () => {};
        const inst: Instance = { name, child, err: '', metricsUrl: new Promise((r) => (resolveUrl = r)) };
        child.stderr.setEncoding('utf8');
        child.stderr.on('data', (d: string) => {
          inst.err += d;
          for (const line of d.split('\n')) if (line) logs.push(`${name}: ${line}`);
          const url = /metrics at (http:\S+)/.exec(inst.err)?.[1];
          if (url) resolveUrl(url);
          if (/consuming TCPDWELL/.test(inst.err)) resolve(inst);
        });
        child.once('exit', (code) => reject(new Error(`collector ${name} exited (${code}) before it consumed:\n${inst.err.slice(-2000)}`)));
        instances.push(inst);
      });
    // The first instance makes the stream (3 replicas) once the cluster has elected its meta leader.
    for (let i = 0; ; i++) {
      try {
        await startInstance('c1');
        break;
      } catch (err) {
        if (i > 20) throw err;
        await sleep(500);
      }
    }
    await Promise.all([startInstance('c2'), startInstance('c3')]);

    // The generator: 12 hosts, one message per host every 40 ms, each re-sent with its message id
    // until acknowledged (the agent's spool does the same). Host "holey" never sends seq 40.
    const hosts = Array.from({ length: 11 }, (_, i) => `web-${i + 1}`).concat('holey');
    const nc = await connect({ servers: urls, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
    const js = jetstream(nc);
    const published = { messages: 0, events: 0 };
    const byHost: Record<string, number> = {};
    const seqs: Record<string, number> = Object.fromEntries(hosts.map((h) => [h, 0]));
    const publishOne = async (host: string) => {
      const seq = ++seqs[host]!;
      if (host === 'holey' && seq === 40) return;
      const now = BigInt(Date.now()) * 1_000_000n;
      const m =
        seq % 25 === 0
          ? summaryMsg(host, seq, { states: { ESTABLISHED: seq } })
          : transitionsMsg(host, seq, [
              ...refused(BigInt(seq * 10), now),
              ev({ tsNs: now, cookie: BigInt(seq * 10 + 1), oldState: 'ESTABLISHED', newState: 'FIN_WAIT1', enteredNs: now - 1000n, dwellNs: 1000n }),
              ev({ tsNs: now + 10n, cookie: BigInt(seq * 10 + 1), oldState: 'FIN_WAIT1', newState: 'FIN_WAIT2', enteredNs: now, dwellNs: 10n }),
            ]);
      for (;;) {
        try {
          await js.publish(m.subject, m.data, { msgID: m.msgId, timeout: 2000 });
          break;
        } catch {
          await sleep(100); // a node went away: the connection moves to another, and we re-send
        }
      }
      published.messages++;
      const events = seq % 25 === 0 ? 0 : 4;
      published.events += events;
      byHost[host] = (byHost[host] ?? 0) + events;
    };
    const startedAt = Date.now();
    const generator = (async () => {
      while (Date.now() - startedAt < 16_000) {
        const tick = Date.now();
        await Promise.all(hosts.map(publishOne));
        await sleep(Math.max(0, 40 - (Date.now() - tick)));
      }
    })();
    const at = (ms: number) => sleep(Math.max(0, startedAt + ms - Date.now()));

    // The grace covers the longest a message can be held up here: c2's batch comes back after
    // the ack wait (5 s), and a redelivery due while a node is down waits for the consumer's new
    // leader and another ack wait.
    // t = 4 s: collector c2 dies with batches in hand; t = 7 s: it comes back.
    await at(4000);
    const c2 = instances.find((i) => i.name === 'c2')!;
    c2.child.kill('SIGKILL');
    await at(7000);
    await startInstance('c2');
    // t = 9 s: a NATS node dies; t = 13 s: it comes back on its port and store.
    await at(9000);
    await nodes[1]!.kill();
    nodes[1] = null;
    await at(13_000);
    nodes[1] = await node(1);
    await generator;
    await nc.close();

    const store = await openStore(ch.spec(), { readOnly: true });
    try {
      const count = async (q: string) => Number((await store.sql(q)).rows[0]![0]);
      await until(async () => (await count('SELECT uniqExact(host, boot_id, epoch, seq) FROM messages')) === published.messages, 60_000, `${published.messages} messages stored`);
      // Every row once: as stored (copies counted) and by identity.
      expect(await count('SELECT count() FROM messages')).toBe(published.messages);
      expect(await count('SELECT count() FROM events')).toBe(published.events);
      expect(await count('SELECT uniqExact(host, boot_id, epoch, seq, row) FROM events')).toBe(published.events);
      const perHost = await store.sql('SELECT host, count() FROM events GROUP BY host ORDER BY host');
      expect(Object.fromEntries(perHost.rows.map(([h, n]) => [h, Number(n)]))).toEqual(Object.fromEntries(Object.entries(byHost).sort()));
      // The real hole: declared (once the grace is over) and reported once, by one instance.
      await until(async () => (await count('SELECT count() FROM holes')) > 0, 30_000, 'the hole declared');
      await sleep(3000);
      expect((await store.sql('SELECT host, from_seq, to_seq FROM holes')).rows, logs.join('\n')).toEqual([['holey', 40n, 40n]]);
      expect(logs.filter((l) => /declared lost/.test(l))).toEqual([expect.stringMatching(/agent holey .*1 message \(seq 40\) missing for \d+ s, declared lost/)]);
      // Each live instance: that one message lost, nothing else missing or pending, no ranges kept.
      // (each declares it at its own next settle, within a second of the others)
      for (const i of instances.filter((x) => x.child.exitCode === null && x.child.signalCode === null)) {
        let text = '';
        const values = (name: string) => [...text.matchAll(new RegExp(`^${name}\\{host="([^"]+)"\\} (\\d+)`, 'gm'))].filter(([, h, v]) => h !== '' && v !== '0').map(([, h, v]) => [h, Number(v)]);
        await until(async () => {
          text = await (await fetch(await i.metricsUrl)).text();
          return values('tcpdwell_fleet_agent_seq_missing').length > 0;
        }, 5000, `${i.name} declaring the hole`).catch(() => undefined);
        expect(values('tcpdwell_fleet_agent_seq_missing'), i.name).toEqual([['holey', 1]]);
        expect(values('tcpdwell_fleet_agent_seq_pending'), i.name).toEqual([]);
        expect(/^tcpdwell_collect_continuity_ranges (\d+)/m.exec(text)?.[1], i.name).toBe('0');
      }
    } finally {
      await store.close();
    }
    const nc2 = await connect({ servers: urls.filter((_, i) => i !== 1) });
    const info = await (await jetstreamManager(nc2)).consumers.info('TCPDWELL', 'tcpdwell-collect');
    await nc2.close();
    expect(info.num_ack_pending).toBe(0);
    for (const i of instances.filter((x) => x.child.exitCode === null && x.child.signalCode === null)) i.child.kill('SIGTERM');
    console.log(`exactly once: ${published.messages} messages, ${published.events} events; ${logs.filter((l) => /redelivered|held back|failed/.test(l)).length} trouble lines`);
  }, 150_000);
});
