/**
 * A running collector's store, asked over its metrics port (`--store http://HOST:PORT`, the
 * collector's --metrics-listen): DuckDB lets one process hold a file, so `query` and `sql` put
 * their statements to the collector that holds it (POST /sql, answered by metrics.ts). Reads only.
 */
import { EnvironmentError, UsageError } from '../common/errors.js';
import type { SqlResult, Store } from './store.js';

const readOnly = (what: string) => () => Promise.reject(new UsageError(`${what}: a collector's /sql is read-only`));

export class RemoteStore implements Store {
  readonly kind = 'duckdb' as const;
  readonly shared = false;

  constructor(readonly location: string) {}

  async sql(text: string): Promise<SqlResult> {
    let res: Response;
    try {
      res = await fetch(new URL('/sql', this.location), { method: 'POST', body: text, headers: { 'content-type': 'text/plain' } });
    } catch (err) {
      throw new EnvironmentError(`cannot reach the collector at ${this.location}: ${(err as Error).message} (give its --metrics-listen address)`, { cause: err });
    }
    const body = await res.text();
    if (res.status === 400) throw new UsageError(body.trim());
    if (!res.ok) throw new EnvironmentError(`the collector at ${this.location} answered ${res.status}: ${body.trim().slice(0, 500)}`);
    return JSON.parse(body) as SqlResult;
  }

  store = readOnly('store');
  recordHoles = readOnly('recordHoles');
  knownHoles = readOnly('knownHoles');
  storedSince = readOnly('storedSince');
  runBaselines = readOnly('runBaselines');
  latestHosts = readOnly('latestHosts');
  async close(): Promise<void> {}
}
