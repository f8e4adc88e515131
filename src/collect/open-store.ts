/**
 * `--store`: which store a flag names, opened (store.ts has the interface; each kind loads its
 * client library only when it is used).
 */
import { UsageError } from '../common/errors.js';
import type { Store, StoreOptions } from './store.js';

/** What --store names: a DuckDB file, or a ClickHouse server's HTTP interface. */
export function parseStoreSpec(spec: string): { kind: 'duckdb'; path: string } | { kind: 'clickhouse'; url: string; database: string } {
  const ch = /^clickhouse:\/\/([^/]+)(?:\/(\w+))?\/?$/.exec(spec);
  if (ch) return { kind: 'clickhouse', url: `http://${ch[1]}`, database: ch[2] ?? 'tcpdwell' };
  if (/^[a-z]+:\/\//.test(spec)) throw new UsageError(`--store ${spec}: give a DuckDB file (fleet.duckdb) or clickhouse://HOST:PORT/DATABASE (the HTTP port, e.g. 8123)`);
  const path = spec.replace(/^duckdb:/, '');
  if (!path) throw new UsageError('--store: give a DuckDB file (fleet.duckdb) or clickhouse://HOST:PORT/DATABASE');
  return { kind: 'duckdb', path };
}

/** Opens the store --store names (creating its tables if missing, unless read-only). */
export async function openStore(spec: string, opts: StoreOptions = {}): Promise<Store> {
  const s = parseStoreSpec(spec);
  if (s.kind === 'duckdb') return (await import('./store-duckdb.js')).DuckDbStore.open(s.path, opts);
  return (await import('./store-clickhouse.js')).ClickHouseStore.open(s.url, s.database, opts);
}

