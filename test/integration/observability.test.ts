/**
 * What operators look at, checked against the real thing: Debian's promtool checks and unit-tests
 * the alert rules (deploy/prometheus/), and Debian's Prometheus scrapes a running agent and
 * collector while a workload runs; every query of both Grafana dashboards (deploy/grafana/) must
 * then return data from Prometheus's HTTP API, and every rule must evaluate against real series.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, onTestFinished } from 'vitest';
import { kernelAvailable } from '../kernel/helpers.js';
import { agentFixture, spawnUntil } from './helpers.js';
import { until } from './collect-helpers.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const bin = join(root, 'bin/tcpdwell');
const RULES = join(root, 'deploy/prometheus/tcpdwell-rules.yml');
const DASHBOARDS = ['tcpdwell-host.json', 'tcpdwell-fleet.json'].map((f) => join(root, 'deploy/grafana', f));
const havePrometheus = spawnSync('promtool', ['--version']).status === 0;
if (!havePrometheus && process.env.CI) throw new Error('promtool is missing: apt-get install prometheus (make deps)');

interface Target {
  expr: string;
  legendFormat?: string;
}
interface Panel {
  title: string;
  targets: Target[];
}
const panelsOf = (file: string): Panel[] => JSON.parse(readFileSync(file, 'utf8')).panels;

/** A dashboard query as Grafana would send it here: its variables filled in. */
const concrete = (expr: string) => expr.replaceAll('$__rate_interval', '30s').replaceAll('$__range', '5m').replaceAll('$instance', '.*');

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe.skipIf(!havePrometheus)('alert rules: promtool', () => {
  it('promtool check rules passes, promtool test rules passes (and fails when an expectation is wrong), and the example prometheus.yml checks', () => {
    const check = spawnSync('promtool', ['check', 'rules', RULES], { encoding: 'utf8' });
    expect(check.status, check.stderr).toBe(0);
    expect(check.stdout).toMatch(/SUCCESS: (\d+) rules found/);
    const test = spawnSync('promtool', ['test', 'rules', 'tcpdwell-rules.test.yml'], { cwd: join(root, 'deploy/prometheus'), encoding: 'utf8' });
    expect(test.status, test.stdout + test.stderr).toBe(0);
    // The unit tests can fail: the same tests with one expected summary changed.
    const dir = mkdtempSync(join(tmpdir(), 'tcpdwell-rules-'));
    try {
      writeFileSync(join(dir, 'tcpdwell-rules.yml'), readFileSync(RULES));
      writeFileSync(join(dir, 't.yml'), readFileSync(join(root, 'deploy/prometheus/tcpdwell-rules.test.yml'), 'utf8').replace('(ring_full): 1/s', '(ring_full): 2/s'));
      const broken = spawnSync('promtool', ['test', 'rules', 't.yml'], { cwd: dir, encoding: 'utf8' });
      expect(broken.status).not.toBe(0);
      expect(broken.stdout + broken.stderr).toMatch(/FAILED/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const config = spawnSync('promtool', ['check', 'config', join(root, 'deploy/prometheus/prometheus.yml')], { encoding: 'utf8' });
    expect(config.status, config.stdout + config.stderr).toBe(0);
  });
});

describe.skipIf(!havePrometheus || !kernelAvailable)('dashboards and rules against a real Prometheus scraping a real agent and collector', () => {
  it('every dashboard query returns data during a workload, and every rule evaluates against series that exist', async () => {
    const { nats, netns, spoolDir } = await agentFixture();
    const agent = await spawnUntil(
      bin,
      ['run', '--nats', nats.url, '--create-stream', '--netns', netns.name, '--no-pin', '--spool-dir', spoolDir, '--host', 'obs-host', '--metrics-listen', '127.0.0.1:0',
        '--summary-interval', '1', '--status-interval', '60', '--threshold', 'closeWaitAgeNs=500ms', '--threshold', 'closeWaitMinSockets=1'],
      'publishing to',
    );
    onTestFinished(() => void agent.child.kill('SIGKILL'));
    const collector = await spawnUntil(bin, ['collect', '--nats', nats.url, '--metrics-listen', '127.0.0.1:0', '--status-interval', '60', '--evaluate-interval', '1'], 'Ctrl-C to stop');
    onTestFinished(() => void collector.child.kill('SIGKILL'));
    const target = (err: string) => /metrics at http:\/\/([^/\s]+)\/metrics/.exec(err)![1]!;

    const dir = mkdtempSync(join(tmpdir(), 'tcpdwell-prometheus-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'tcpdwell-rules.yml'), readFileSync(RULES));
    writeFileSync(
      join(dir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        'rule_files: [tcpdwell-rules.yml]',
        'scrape_configs:',
        `  - { job_name: tcpdwell-agent, static_configs: [{ targets: ["${target(agent.err())}"] }] }`,
        `  - { job_name: tcpdwell-collect, static_configs: [{ targets: ["${target(collector.err())}"] }] }`,
        '',
      ].join('\n'),
    );
    const port = await freePort();
    const prom = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let promLog = '';
    prom.stderr.on('data', (d) => (promLog += d));
    onTestFinished(async () => {
      prom.kill('SIGTERM');
      await new Promise((r) => prom.on('close', r));
    });
    const api = async (path: string) => {
      const r = await fetch(`http://127.0.0.1:${port}${path}`);
      return (await r.json()) as { status: string; data: { result?: { metric: Record<string, string>; value: [number, string] }[]; groups?: { rules: { name: string; health: string; lastError?: string; query: string }[] }[] } };
    };
    const query = (q: string) => api(`/api/v1/query?query=${encodeURIComponent(q)}`);

    // The workload: connections that complete, connects that are refused, and sockets held in
    // CLOSE_WAIT (the leak detector fires on them), for as long as the checks below need.
    const hold = netns.start('mix', '127.0.0.1', 9701, '2,2,2');
    await hold.ready;
    let running = true;
    const churn = (async () => {
      for (let i = 0; running; i++) {
        await netns.run('client-first', '127.0.0.1', 9710 + (i % 20));
        await netns.run('refused', '127.0.0.1', 9740);
        await sleep(100);
      }
    })();
    try {
      const scraped = async () => (await query('up').catch(() => null))?.data.result?.filter((s) => s.value[1] === '1').length === 2;
      await until(scraped, 30_000, 'Prometheus to scrape both').catch((err) => {
        throw new Error(`${(err as Error).message}; its log: ${promLog.slice(-1000)}`);
      });
      // rate() over 30 s wants samples spread over it; histograms want dwells in it.
      await sleep(12_000);

      const empty: string[] = [];
      for (const file of DASHBOARDS) {
        for (const p of panelsOf(file)) {
          for (const t of p.targets) {
            const r = await query(concrete(t.expr));
            expect(r.status, `${p.title}: ${t.expr}`).toBe('success');
            const values = (r.data.result ?? []).map((s) => Number(s.value[1]));
            if (!values.some(Number.isFinite)) empty.push(`${file.split('/').pop()} "${p.title}": ${t.expr} → ${JSON.stringify(r.data.result)}`);
          }
        }
      }
      expect(empty, 'dashboard queries without data').toEqual([]);

      // The numbers mean what the panels say: the held CLOSE_WAIT sockets and the refused connects.
      const closeWait = await query('sum(tcpdwell_sockets{state="CLOSE_WAIT"})');
      expect(Number(closeWait.data.result![0]!.value[1])).toBe(2);
      const refused = await query('sum(tcpdwell_connect_failures_total{reason="ECONNREFUSED"})');
      expect(Number(refused.data.result![0]!.value[1])).toBeGreaterThan(0);
      const leak = await query('tcpdwell_detector_alerts_firing{detector="close_wait_leak"}');
      expect(Number(leak.data.result![0]!.value[1])).toBeGreaterThan(0);

      // Every rule loaded and evaluates without error, over metrics that exist.
      const groups = (await api('/api/v1/rules')).data.groups!;
      const rules = groups.flatMap((g) => g.rules);
      expect(rules.length).toBe(Number(/SUCCESS: (\d+) rules/.exec(spawnSync('promtool', ['check', 'rules', RULES], { encoding: 'utf8' }).stdout)![1]));
      for (const rule of rules) expect(rule.health, `${rule.name}: ${rule.lastError}`).toBe('ok');
      const names = new Set(rules.flatMap((rule) => [...rule.query.matchAll(/\b((?:tcpdwell|nodejs|process)_[a-z0-9_]+|up)\b/g)].map((m) => m[1]!)));
      for (const name of names) {
        const r = await query(`group(${name})`);
        expect(r.data.result?.length, `${name}, used by a rule, has no series`).toBe(1);
      }
      // And the leak alert is firing or pending in Prometheus (its `for:` is 5 minutes).
      const alerts = await api('/api/v1/alerts');
      expect(JSON.stringify(alerts.data)).toContain('TcpdwellCloseWaitLeak');
    } finally {
      running = false;
      await churn;
      await hold.stop();
    }
  }, 120_000);
});
