// What the package test (test-deb.mjs) and the image test (test-image.mjs) share: a report of
// checks, a real nats-server with the stream made centrally (as a fleet provisions it), a real
// workload in a network namespace of its own, and what reached the stream.
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const { startLocalNats } = await import(join(ROOT, 'dist/publish/nats-server.js'));
const { ensureAgentStream } = await import(join(ROOT, 'dist/publish/streams.js'));
const { decodeTransitions } = await import(join(ROOT, 'dist/publish/wire.js'));
const { connect } = await import('@nats-io/transport-node');
const { jetstream, jetstreamManager } = await import('@nats-io/jetstream');

/** Steps with their time, checks with ok/FAIL, and the count of failures. */
export function report(name) {
  const started = Date.now();
  const r = {
    failures: 0,
    step: (what) => console.log(`${name}: ${((Date.now() - started) / 1000).toFixed(1)} s: ${what}`),
    check: (ok, what) => {
      console.log(`  ${ok ? 'ok  ' : 'FAIL'} ${what}`);
      if (!ok) r.failures++;
    },
  };
  return r;
}

export const sh = (cmd, args, opts = {}) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });

/** A nats-server with JetStream and the TCPDWELL stream already made (agents do not make it). */
export async function natsWithStream(storeDir) {
  const nats = await startLocalNats({ storeDir });
  const nc = await connect({ servers: nats.url });
  await ensureAgentStream(await jetstreamManager(nc), { name: 'TCPDWELL' });
  return {
    url: nats.url,
    /** every transition event in the stream */
    async events() {
      const c = await jetstream(nc).consumers.get('TCPDWELL');
      const out = [];
      for (;;) {
        let n = 0;
        for await (const m of await c.fetch({ max_messages: 1000, expires: 1000 })) {
          n++;
          if (m.subject.endsWith('.transitions')) out.push(...decodeTransitions(m.data).events);
        }
        if (n === 0) return out;
      }
    },
    async stop() {
      await nc.close().catch(() => {});
      await nats.stop();
    },
  };
}

/** A network namespace with one client-first connection on `port` (13 events, its TIME_WAIT included). */
export function workload(netns, port) {
  spawnSync('ip', ['netns', 'add', netns]);
  spawnSync('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
  sh('ip', ['netns', 'exec', netns, process.execPath, join(ROOT, 'test/kernel/workload.mjs'), 'client-first', '127.0.0.1', String(port)]);
}

/** HTTP status of an agent endpoint (0 when nothing answers). */
export const statusOf = async (port, path) => (await fetch(`http://127.0.0.1:${port}${path}`).catch(() => ({ status: 0 }))).status;

/** Waits for `text` in what a process wrote, or for it to exit, or the time to run out. */
export async function waitForLine(get, text, child, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!get().includes(text) && child.exitCode === null && Date.now() < deadline) await sleep(100);
  return get().includes(text);
}

/** The checks both make of a run: the workload's events in the stream, health, a clean stop. */
export async function checkRun(r, { nats, port, metricsPort, log, stop }) {
  await sleep(1500);
  r.check((await statusOf(metricsPort, '/healthz')) === 200, '/healthz 200');
  r.check((await statusOf(metricsPort, '/readyz')) === 200, '/readyz 200');
  const code = await stop();
  r.check(code === 0, `SIGTERM: the agent stopped cleanly (exit ${code})`);
  const mine = (await nats.events()).filter((e) => e.sport === port || e.dport === port);
  r.check(mine.length === 13 && mine.some((e) => e.type === 'timewait_start'), `the workload's 13 events reached the stream, its TIME_WAIT included (${mine.length})`);
  r.check(/capabilities after start: none/.test(log()), 'the agent dropped its capabilities after start');
}
