/**
 * `--store`: which store a flag names, opened (store.ts has the interface; each kind loads its
 * client library only when it is used).
 */
import { UsageError } from '../common/errors.js';
import type { Store, StoreOptions } from './store.js';

/** What --store names: a DuckDB file, a ClickHouse server's HTTP interface, or a running collector (its metrics port: query and sql only). */
export function parseStoreSpec(spec: string): { kind: 'duckdb'; path: string } | { kind: 'clickhouse'; url: string; database: string } | { kind: 'collector'; url: string } {
  const ch = /^clickhouse:\/\/([^/]+)(?:\/(\w+))?\/?$/.exec(spec);
  if (ch) return { kind: 'clickhouse', url: `http://${ch[1]}`, database: ch[2] ?? 'tcpdwell' };
  if (/^https?:\/\//.test(spec)) return { kind: 'collector', url: spec };
  if (/^[a-z]+:\/\//.test(spec)) throw new UsageError(`--store ${spec}: give a DuckDB file (fleet.duckdb), clickhouse://HOST:PORT/DATABASE (the HTTP port, e.g. 8123), or a running collector's http://HOST:PORT (its --metrics-listen)`);
  const path = spec.replace(/^duckdb:/, '');
  if (!path) throw new UsageError('--store: give a DuckDB file (fleet.duckdb) or clickhouse://HOST:PORT/DATABASE');
  return { kind: 'duckdb', path };
}

/** Opens the store --store names (creating its tables if missing, unless read-only). */
export async function openStore(spec: string, opts: StoreOptions = {}): Promise<Store> {
  const s = parseStoreSpec(spec);
  if (s.kind === 'duckdb') return (await import('./store-duckdb.js')).DuckDbStore.open(s.path, opts);
  if (s.kind === 'collector') {
    if (!opts.readOnly) throw new UsageError(`--store ${spec}: a collector's address serves query and sql; collect --store takes a DuckDB file or clickhouse://`);
    return new (await import('./store-remote.js')).RemoteStore(s.url);
  }
  return (await import('./store-clickhouse.js')).ClickHouseStore.open(s.url, s.database, opts);
}

