/** `--metrics-listen [HOST:PORT]` and the config file's `metrics.listen`: one grammar for both. */
import { UsageError } from './errors.js';

/** HOST:PORT, [v6]:PORT, :PORT (every interface), or true (the flag alone: every interface, the default port). */
export function listenAddress(spec: string | true, defaultPort: number): { host: string; port: number } {
  if (spec === true) return { host: '0.0.0.0', port: defaultPort };
  const m = /^(.*):(\d+)$/.exec(spec);
  if (!m || Number(m[2]) > 65535) throw new UsageError(`--metrics-listen ${spec}: give HOST:PORT, e.g. 127.0.0.1:${defaultPort} (or the flag alone for 0.0.0.0:${defaultPort})`);
  return { host: m[1]!.replace(/^\[(.*)\]$/, '$1') || '0.0.0.0', port: Number(m[2]) };
}
