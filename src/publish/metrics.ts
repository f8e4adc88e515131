/**
 * Serving Prometheus metrics (`--metrics-listen HOST:PORT`, path /metrics) for the agent
 * (src/agent/metrics.ts) and the collector (src/collect/metrics.ts): the HTTP server, the dwell
 * buckets both use, and counters that mirror totals read at scrape time.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Counter, type Registry } from 'prom-client';
import { UsageError } from '../common/errors.js';

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

/** Another path the server answers (the collector's /sql): true when it took the request. */
export type ExtraRoute = (req: IncomingMessage, res: ServerResponse) => boolean;

/** An HTTP server answering /metrics from the registry on HOST:PORT (port 0: any free one). */
export async function serveMetrics(registry: Registry, spec: string, who: string, extra?: ExtraRoute): Promise<Server> {
  const m = /^(.*):(\d+)$/.exec(spec);
  if (!m || Number(m[2]) > 65535) throw new UsageError(`--metrics-listen ${spec}: give HOST:PORT, e.g. 127.0.0.1:9464`);
  const host = m[1]!.replace(/^\[(.*)\]$/, '$1') || '0.0.0.0';
  const server = createServer((req, res) => {
    if (extra?.(req, res)) return;
    if (req.url !== '/metrics') {
      res.writeHead(404).end(`${who}: metrics are at /metrics\n`);
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: Error) => res.writeHead(500).end(`${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new UsageError(`--metrics-listen ${spec}: ${err.message}`)));
    server.listen(Number(m[2]), host, resolve);
  });
  return server;
}

/** Where a metrics server listens, as a URL. */
export function metricsUrl(server: Server): string {
  const addr = server.address() as { address: string; port: number };
  return `http://${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}/metrics`;
}

