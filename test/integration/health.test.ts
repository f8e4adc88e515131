/**
 * Health as an operator's tooling sees it: a real agent and a real collector (the CLI, as
 * systemd and Kubernetes run them) answering /, /healthz, /readyz and /metrics over HTTP; the
 * systemd notify protocol on a real datagram socket; an event loop really held (SIGSTOP) and a
 * real nats-server really stopped.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, onTestFinished } from 'vitest';
import { VERSION } from '../../src/common/version.js';
import { natsCheck } from '../../src/agent/health.js';
import { collectorHealth, COLLECT_READY_QUIET_MS } from '../../src/collect/metrics.js';
import { AGENT_METRICS_PORT, COLLECT_METRICS_PORT, DEFAULT_STALL_MS, listenAddress } from '../../src/publish/metrics.js';
import { kernelAvailable, TestNetns } from '../kernel/helpers.js';
import { startNats, startNotifySocket } from './helpers.js';
import { until } from './collect-helpers.js';

const bin = fileURLToPath(new URL('../../bin/tcpdwell', import.meta.url));

/** Spawns the CLI and waits for its "metrics at URL" line; the base URL and its stderr so far. */
async function spawnServing(args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let err = '';
  const base = await new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (d) => {
      err += d;
      const m = /metrics at (http:\/\/\S+)\/metrics/.exec(err);
      if (m && /publishing to|Ctrl-C to stop/.test(err)) resolve(m[1]!);
    });
    child.on('close', (code) => reject(new Error(`${args[0]} exited ${code}: ${err}`)));
  });
  onTestFinished(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return { child, base, err: () => err };
}

const get = async (url: string, init?: RequestInit) => {
  const r = await fetch(url, init);
  return { status: r.status, type: r.headers.get('content-type') ?? '', text: await r.text() };
};
const health = async (url: string) => {
  const r = await get(url);
  return { http: r.status, ...(JSON.parse(r.text) as { status: string; checks: { name: string; ok: boolean; detail: string }[] }) };
};

describe('listen addresses', () => {
  it('the flag alone means every interface on the default port; ports sit outside the Prometheus allocations and the ephemeral range', () => {
    expect(listenAddress(true, AGENT_METRICS_PORT)).toEqual({ host: '0.0.0.0', port: 19464 });
    expect(listenAddress(':19465', COLLECT_METRICS_PORT)).toEqual({ host: '0.0.0.0', port: 19465 });
    expect(listenAddress('[::1]:0', AGENT_METRICS_PORT)).toEqual({ host: '::1', port: 0 });
    expect(() => listenAddress('nowhere', AGENT_METRICS_PORT)).toThrow(/give HOST:PORT, e.g. 127.0.0.1:19464/);
    for (const p of [AGENT_METRICS_PORT, COLLECT_METRICS_PORT]) {
      expect(p < 9100 || p > 9999).toBe(true);
      expect(p).toBeLessThan(30000); // below NodePorts and /proc/sys/net/ipv4/ip_local_port_range
    }
  });
});

describe('readiness, the rules', () => {
  it('an agent away from NATS is ready while its spool has room, and not once the oldest messages are being dropped', () => {
    const spool = (bytes: number) => ({ messages: 3, bytes, maxBytes: 1000 });
    expect(natsCheck({ nats: { connected: true, published: 5, publishErrors: 0 }, spool: spool(999) }).ok).toBe(true);
    expect(natsCheck({ nats: { connected: false, published: 5, publishErrors: 0 }, spool: spool(100) })).toMatchObject({ ok: true, detail: /spooling \(3 messages, 100 of 1000 bytes \(10 %\)\)/ });
    expect(natsCheck({ nats: { connected: false, published: 5, publishErrors: 0 }, spool: spool(950) })).toMatchObject({ ok: false, detail: /nearly full.*--spool-max-bytes/ });
  });

  it('a collector is unready while NATS is unreachable, and from a fetch failure until none has happened for the quiet period', () => {
    let errors = 0;
    let now = 1_000_000;
    let connected = true;
    const h = collectorHealth({ stats: () => ({ errors, counted: 7 }) as never }, () => connected, () => now);
    expect(h.ready()[0]!.ok).toBe(true);
    errors = 2;
    now += 1000;
    expect(h.ready()[0]).toMatchObject({ ok: false, detail: /NATS is refusing or failing requests/ });
    now += COLLECT_READY_QUIET_MS - 1;
    expect(h.ready()[0]!.ok).toBe(false);
    now += 1;
    expect(h.ready()[0]!.ok).toBe(true);
    connected = false;
    expect(h.ready()[0]).toMatchObject({ ok: false, detail: /unreachable: reconnecting/ });
  });
});

describe.skipIf(!kernelAvailable)('tcpdwell run --metrics-listen: /, /healthz, /readyz, /metrics and the systemd watchdog', () => {
  it('answers as an SRE expects, sees a held event loop, stops pinging the watchdog while it is held, and stays ready while NATS is away', async () => {
    const nats = await startNats();
    const netns = new TestNetns();
    const spool = mkdtempSync(join(tmpdir(), 'tcpdwell-health-'));
    const notify = await startNotifySocket();
    onTestFinished(async () => {
      notify.close();
      netns.delete();
      await nats.cleanup();
      rmSync(spool, { recursive: true, force: true });
    });
    const { child, base, err } = await spawnServing(
      ['run', '--nats', nats.url, '--netns', netns.name, '--no-pin', '--spool-dir', spool, '--host', 'health', '--metrics-listen', '127.0.0.1:0', '--status-interval', '1', '--create-stream'],
      { NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: '600000' },
    );

    // systemd: READY=1 first, then a ping every third of WatchdogSec, and the status line.
    await until(() => notify.messages.filter((m) => m === 'WATCHDOG=1').length >= 3, 10_000, 'watchdog pings');
    expect(notify.messages[0]).toBe('READY=1');
    await until(() => notify.messages.some((m) => /^STATUS=\d+ events in/.test(m)), 10_000, 'a STATUS= line');

    const landing = await get(`${base}/`);
    expect(landing.status).toBe(200);
    expect(landing.type).toMatch(/^text\/html/);
    for (const p of ['/metrics', '/healthz', '/readyz']) expect(landing.text).toContain(`href="${p}"`);
    expect(landing.text).toContain(`tcpdwell ${VERSION} on Node.js ${process.versions.node}`);

    const live = await health(`${base}/healthz`);
    expect(live).toMatchObject({ status: 'ok', checks: [{ name: 'event_loop', ok: true }] });
    const ready = await health(`${base}/readyz`);
    expect(ready.http).toBe(200);
    expect(ready.checks.map((c) => [c.name, c.ok])).toEqual([['kernel', true], ['nats', true]]);
    expect(ready.checks[1]!.detail).toMatch(/^connected/);

    const metrics = (await get(`${base}/metrics`)).text;
    expect(metrics).toContain(`tcpdwell_build_info{version="${VERSION}",nodejs_version="${process.versions.node}",role="agent"} 1`);
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_open_fds', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
      expect(metrics, name).toMatch(new RegExp(`^${name} `, 'm'));
    }
    expect(metrics).toMatch(/^tcpdwell_nats_connected 1$/m);
    expect(metrics).toMatch(/^tcpdwell_spool_max_bytes \d+$/m);
    expect((await get(`${base}/nothing`)).status).toBe(404);
    expect((await get(`${base}/healthz`, { method: 'POST' })).status).toBe(405);

    // Hold the event loop (the whole process) past the stall limit: the next probe says so, once.
    const pings = notify.messages.length;
    child.kill('SIGSTOP');
    await sleep(DEFAULT_STALL_MS + 1000);
    expect(notify.messages.length).toBe(pings);
    child.kill('SIGCONT');
    const stalled = await health(`${base}/healthz`);
    expect(stalled.http).toBe(503);
    expect(stalled.checks[0]).toMatchObject({ name: 'event_loop', ok: false, detail: /stalled: more than 5000 ms/ });
    expect((await health(`${base}/healthz`)).http).toBe(200);
    await until(() => err().includes('watchdog: not pinging systemd: event_loop'), 5000, 'the watchdog skipping its ping');
    const after = notify.messages.length;
    await until(() => notify.messages.slice(after).includes('WATCHDOG=1'), 5000, 'pings again');

    // NATS away: still ready (spooling, with room), and the gauge says so.
    await nats.stop();
    await until(async () => (await health(`${base}/readyz`)).checks[1]!.detail.startsWith('unreachable: spooling'), 15_000, 'readyz to see NATS gone');
    expect((await health(`${base}/readyz`)).http).toBe(200);
    expect((await get(`${base}/metrics`)).text).toMatch(/^tcpdwell_nats_connected 0$/m);

    child.kill('SIGTERM');
    expect(await new Promise((r) => child.on('close', r))).toBe(0);
    await until(() => notify.messages.at(-1) === 'STOPPING=1', 2000, 'STOPPING=1');
  });
});

describe('tcpdwell collect --metrics-listen', () => {
  it('is live and ready while it consumes, unready while NATS is down, ready again once it is back', async () => {
    const nats = await startNats();
    onTestFinished(() => nats.cleanup());
    const { child, base } = await spawnServing(['collect', '--nats', nats.url, '--metrics-listen', '127.0.0.1:0', '--status-interval', '60']);
    expect(await health(`${base}/healthz`)).toMatchObject({ status: 'ok' });
    expect(await health(`${base}/readyz`)).toMatchObject({ status: 'ok', checks: [{ name: 'nats', ok: true }] });
    expect((await get(`${base}/metrics`)).text).toContain(`tcpdwell_build_info{version="${VERSION}",nodejs_version="${process.versions.node}",role="collector"} 1`);
    expect((await get(`${base}/`)).text).toContain('<h1>tcpdwell collect</h1>');

    await nats.stop();
    await until(async () => (await health(`${base}/readyz`)).http === 503, 15_000, 'readyz to fail');
    expect((await health(`${base}/readyz`)).checks[0]!.detail).toMatch(/NATS is unreachable: reconnecting/);
    expect((await health(`${base}/healthz`)).http).toBe(200); // alive all the same: restarting would not help
    await nats.restart();
    await until(async () => (await health(`${base}/readyz`)).http === 200, COLLECT_READY_QUIET_MS + 15_000, 'readyz to recover');
    child.kill('SIGTERM');
    expect(await new Promise((r) => child.on('close', r))).toBe(0);
  }, 60_000);
});
