/**
 * The HTTP endpoint of the agent (src/agent/metrics.ts) and the collector (src/collect/metrics.ts),
 * `--metrics-listen [HOST:PORT]`: Prometheus metrics at /metrics, liveness at /healthz, readiness
 * at /readyz and a landing page at /. Also the dwell buckets both use, counters that mirror totals
 * read at scrape time, the process and Node metrics and `tcpdwell_build_info`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { collectDefaultMetrics, Counter, Gauge, type Registry } from 'prom-client';
import { UsageError } from '../common/errors.js';
import { listenAddress } from '../common/listen.js';
import { VERSION } from '../common/version.js';

/**
 * Default ports (`--metrics-listen` without a value). The Prometheus exporter allocations
 * (github.com/prometheus/prometheus/wiki/Default-port-allocations) have filled 9100–9999 since
 * 2023, and 9464, where the agent used to listen, is the OpenTelemetry Prometheus exporter's, so
 * two daemons on a hostNetwork node collide there. These lie outside that range, below Linux's
 * ephemeral ports (32768–60999, where a listener can find its port taken by an outgoing
 * connection) and Kubernetes' NodePorts (30000–32767), and in no /etc/services entry.
 */
export const AGENT_METRICS_PORT = 19464;
export const COLLECT_METRICS_PORT = 19465;

/** Dwell buckets in seconds: 10 µs to an hour, the range TCP states live in. */
export const DWELL_BUCKETS_S = [1e-5, 1e-4, 1e-3, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 900, 3600];

/** A Counter that mirrors a cumulative number read at scrape time. */
export function mirrorCounter(registry: Registry, name: string, help: string, labelNames: string[], read: () => [Record<string, string>, number][]) {
  const last = new Map<string, number>();
  return new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      for (const [labels, value] of read()) {
        const k = JSON.stringify(labels);
        const delta = value - (last.get(k) ?? 0);
        // A zero is shown too: "nothing lost" should be visible, not absent.
        if (delta > 0 || !last.has(k)) this.inc(labels, Math.max(0, delta));
        last.set(k, value);
      }
    },
  });
}

/**
 * What every tcpdwell registry carries besides its own metrics: the process and Node metrics of
 * prom-client (`process_*`, `nodejs_*`: CPU, memory, fds, event-loop lag, GC) and
 * `tcpdwell_build_info{version, nodejs_version, role} 1`, the usual join target for versions.
 */
export function instrumentProcess(registry: Registry, role: 'agent' | 'collector'): void {
  collectDefaultMetrics({ register: registry });
  new Gauge({
    name: 'tcpdwell_build_info',
    help: 'Always 1: the tcpdwell version, the Node.js version it runs on, and whether this is an agent or a collector',
    labelNames: ['version', 'nodejs_version', 'role'],
    registers: [registry],
  }).set({ version: VERSION, nodejs_version: process.versions.node, role }, 1);
}

// ---- health ------------------------------------------------------------------------------

/** One line of /healthz or /readyz. */
export interface HealthCheck {
  name: string;
  ok: boolean;
  /** what was seen, and when failing, what it means */
  detail: string;
}

/** What a process says about itself: alive (/healthz) and ready for its job (/readyz). */
export interface HealthSource {
  /** checks beyond the event loop's (which every process gets) */
  live?(): HealthCheck[];
  ready(): HealthCheck[];
}

/**
 * The event loop counts as stalled when one turn of it took longer than this: the agent reads
 * the ring, answers NATS and flushes batches on that loop, so a loop held for seconds means a
 * ring filling up unread. A heal walk over a million sockets takes well under a second here.
 */
export const DEFAULT_STALL_MS = 5000;

/**
 * The longest event-loop delay since the previous check, from a heartbeat timer. The gap still
 * open counts too: right after a stall, libuv serves the waiting probe's socket before it runs
 * any timer, so a histogram of timer delays (perf_hooks' monitorEventLoopDelay) would not have
 * seen the stall yet. One per reader (the HTTP endpoint, the systemd watchdog): a check resets
 * the window.
 */
export class EventLoopWatch {
  private lastBeatMs = performance.now();
  private worstMs = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    readonly stallMs = DEFAULT_STALL_MS,
    private readonly beatMs = 250,
  ) {
    this.timer = setInterval(() => {
      const now = performance.now();
      this.worstMs = Math.max(this.worstMs, now - this.lastBeatMs - beatMs);
      this.lastBeatMs = now;
    }, beatMs).unref();
  }

  check(): HealthCheck {
    const now = performance.now();
    const maxMs = Math.max(0, this.worstMs, now - this.lastBeatMs - this.beatMs);
    // The open gap is accounted for: the next beat measures from here.
    this.worstMs = 0;
    this.lastBeatMs = now;
    const ok = maxMs < this.stallMs;
    return {
      name: 'event_loop',
      ok,
      detail: `longest delay since the last check ${Math.round(maxMs)} ms` + (ok ? '' : ` (stalled: more than ${this.stallMs} ms; the ring is not read meanwhile)`),
    };
  }

  close(): void {
    clearInterval(this.timer);
  }
}

/** Liveness: the event loop, then the source's own checks. */
export function liveChecks(loop: EventLoopWatch, source: HealthSource): HealthCheck[] {
  return [loop.check(), ...(source.live?.() ?? [])];
}

// ---- the HTTP endpoint -------------------------------------------------------------------

export { listenAddress };

/** Another path the server answers (the collector's POST /sql): true when it took the request. */
export type ExtraRoute = (req: IncomingMessage, res: ServerResponse) => boolean;

export interface ServeOptions {
  /** the command, for the landing page and messages: "tcpdwell run" */
  who: string;
  defaultPort: number;
  health: HealthSource;
  stallMs?: number;
  /** asked first, before the GET-only paths below */
  extra?: ExtraRoute;
}

function healthReply(checks: HealthCheck[]): [number, string] {
  const ok = checks.every((c) => c.ok);
  return [ok ? 200 : 503, `${JSON.stringify({ status: ok ? 'ok' : 'failing', checks })}\n`];
}

const escapeHtml = (s: string) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

function landingPage(who: string): string {
  const links = [
    ['/metrics', 'Prometheus metrics'],
    ['/healthz', 'liveness: 200 while the event loop runs (JSON, 503 with the failing check otherwise)'],
    ['/readyz', 'readiness: 200 once started and NATS is connected or the spool has room'],
  ];
  return (
    `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(who)}</title></head><body>` +
    `<h1>${escapeHtml(who)}</h1><p>tcpdwell ${escapeHtml(VERSION)} on Node.js ${escapeHtml(process.versions.node)}, pid ${process.pid}</p><ul>` +
    links.map(([href, what]) => `<li><a href="${href}">${href}</a> — ${escapeHtml(what!)}</li>`).join('') +
    `</ul></body></html>\n`
  );
}

/** Serves /metrics, /healthz, /readyz and / on HOST:PORT (port 0: any free one). */
export async function serveMetrics(registry: Registry, spec: string | true, o: ServeOptions): Promise<Server> {
  const { host, port } = listenAddress(spec, o.defaultPort);
  const loop = new EventLoopWatch(o.stallMs);
  const server = createServer((req, res) => {
    if (o.extra?.(req, res)) return;
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const send = ([status, body]: [number, string], type: string) => res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
    switch (path) {
      case '/metrics':
        registry.metrics().then(
          (text) => send([200, text], registry.contentType),
          (err: Error) => send([500, `${err.message}\n`], 'text/plain; charset=utf-8'),
        );
        return;
      case '/healthz':
        return send(healthReply(liveChecks(loop, o.health)), 'application/json');
      case '/readyz':
        return send(healthReply(o.health.ready()), 'application/json');
      case '/':
        return send([200, landingPage(o.who)], 'text/html; charset=utf-8');
      default:
        return send([404, `${o.who}: nothing at ${path}; try /metrics, /healthz, /readyz or /\n`], 'text/plain; charset=utf-8');
    }
  });
  server.on('close', () => loop.close());
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => {
      loop.close();
      reject(new UsageError(`--metrics-listen ${spec === true ? `${host}:${port}` : spec}: ${err.message}`));
    });
    server.listen(port, host, resolve);
  });
  return server;
}

/** Where a metrics server listens, as a URL (its /metrics). */
export function metricsUrl(server: Server): string {
  const addr = server.address() as { address: string; port: number };
  return `http://${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}/metrics`;
}
