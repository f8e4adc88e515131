/**
 * The shared store: ClickHouse over its HTTP interface (`--store clickhouse://HOST:8123/DB`),
 * through @clickhouse/client. Written for Debian's clickhouse-server 18.16, the oldest we meet:
 * no DateTime64 (times are UInt64 ns), no codecs, no data-skipping indices, LowCardinality only
 * behind allow_experimental_low_cardinality_type, no insert de-duplication on non-replicated
 * tables. docs/operations.md has what that means for sizing, sharding and replication.
 *
 * Idempotence without a compare-and-set: every table is a ReplacingMergeTree ordered by its row
 * identity (host, boot_id, epoch, seq[, row]), so two copies of a row are one after a merge and
 * in every answer that de-duplicates (FINAL, LIMIT 1 BY, or the timeline's own step merge). The
 * gate in front of it keeps copies from being written at all: a batch first reads which of its
 * messages are stored, writes the rows of the others, and writes their `messages` rows last —
 * a message counts as stored only once its rows are. Two instances can both write one message
 * only when they hold it at the same moment (an ack-wait that expired mid-batch, an agent's
 * re-send next to its original); the copies then merge, and the collector's own counters see the
 * message twice (docs/operations.md).
 */
import { Readable } from 'node:stream';
import { ClickHouseLogLevel, createClient, type ClickHouseClient } from '@clickhouse/client';
import { EnvironmentError, UsageError } from '../common/errors.js';
import type { DeclaredHole } from './continuity.js';
import { messageKey, tablesOf, type MessageRows } from './rows.js';
import { addedColumns, TABLES, type Column, type ColumnType, type Row, type TableName } from './schema.js';
import { baselineQueries, isReadOnlySql, knownHolesQuery, type RunBaseline, type RunId, type SqlResult, type Store, type StoredMessageId, type StoreOptions } from './store.js';
import type { HostRecord } from './views.js';

const CH_TYPE: Record<ColumnType, string> = { str: 'String', u8: 'UInt8', u16: 'UInt16', u32: 'UInt32', u64: 'UInt64', i64: 'Int64', f64: 'Float64', bool: 'UInt8' };

function chType(c: Column): string {
  let t = CH_TYPE[c.type];
  if (c.lowCardinality && c.type === 'str') t = `LowCardinality(${t})`;
  return c.nullable ? (c.lowCardinality && c.type === 'str' ? `LowCardinality(Nullable(String))` : `Nullable(${t})`) : t;
}

/** CREATE TABLE statements (database `db`). */
export function clickHouseSchema(db: string): string[] {
  return TABLES.map((t) => {
    const cols = t.columns.map((c) => `${c.name} ${chType(c)}`).join(', ');
    const day = t.timeColumn.endsWith('_ms') ? `toDate(intDiv(${t.timeColumn}, 1000))` : `toDate(intDiv(${t.timeColumn}, 1000000000))`;
    return `CREATE TABLE IF NOT EXISTS ${db}.${t.name} (${cols}) ENGINE = ReplacingMergeTree PARTITION BY ${day} ORDER BY (${t.key.join(', ')})`;
  });
}

/**
 * ALTER statements that give a store made before the columns added since (Column.added). 18.16
 * knows no ADD COLUMN IF NOT EXISTS: the columns it lacks are those system.columns does not list.
 */
export function clickHouseMigrations(db: string, existing: ReadonlySet<string>): string[] {
  return addedColumns()
    .filter(({ table, column }) => !existing.has(`${table}.${column.name}`))
    .map(({ table, column: c }) => `ALTER TABLE ${db}.${table} ADD COLUMN ${c.name} ${chType(c)}`);
}

/** A value in TabSeparated form. */
function tsv(v: Row[number]): string {
  if (v === null) return '\\N';
  if (typeof v === 'boolean') return v ? '1' : '0';
  if (typeof v === 'string') return v.replace(/[\\\t\n]/g, (ch) => (ch === '\\' ? '\\\\' : ch === '\t' ? '\\t' : '\\n'));
  return String(v);
}

const lit = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
const SETTINGS = { allow_experimental_low_cardinality_type: 1 } as Record<string, unknown>;

export class ClickHouseStore implements Store {
  readonly kind = 'clickhouse' as const;
  readonly shared = true;

  private constructor(
    private readonly client: ClickHouseClient,
    private readonly db: string,
    readonly location: string,
    private readonly readOnly: boolean,
  ) {}

  static async open(url: string, db: string, opts: StoreOptions = {}): Promise<ClickHouseStore> {
    if (!/^\w+$/.test(db)) throw new UsageError(`--store: database name ${db}: letters, digits and _ only`);
    // Table names in queries (sql, query) are unqualified: the client's database is ours.
    // The client's own log is off: every failure reaches the collector as an error, and is reported once there.
    const client = createClient({ url, database: db, request_timeout: 30_000, clickhouse_settings: SETTINGS as never, log: { level: ClickHouseLogLevel.OFF } });
    const s = new ClickHouseStore(client, db, `${url}/${db}`, opts.readOnly ?? false);
    try {
      if (!opts.readOnly) {
        const boot = createClient({ url, request_timeout: 30_000, log: { level: ClickHouseLogLevel.OFF } });
        try {
          await boot.command({ query: `CREATE DATABASE IF NOT EXISTS ${db}` });
        } finally {
          await boot.close();
        }
        for (const ddl of clickHouseSchema(db)) await client.command({ query: ddl });
        const cols = await s.rows<[string, string]>(`SELECT table, name FROM system.columns WHERE database = '${db}'`);
        for (const ddl of clickHouseMigrations(db, new Set(cols.map(([t, c]) => `${t}.${c}`)))) await client.command({ query: ddl });
      }
      await client.query({ query: 'SELECT 1', format: 'JSONEachRow' }).then((r) => r.json());
    } catch (err) {
      await client.close().catch(() => {});
      throw new EnvironmentError(`ClickHouse at ${url}: ${(err as Error).message} (is clickhouse-server running there? --store clickhouse://HOST:HTTP_PORT/DATABASE)`, { cause: err });
    }
    return s;
  }

  /** Rows as arrays (JSONCompact: 18.16 knows no JSONCompactEachRow); 64-bit integers come as strings. */
  private async rows<T = unknown[]>(query: string): Promise<T[]> {
    const r = await this.client.query({ query, format: 'JSONCompact' });
    return ((await r.json()) as unknown as { data: T[] }).data;
  }

  private async insert(table: TableName, rows: readonly Row[]): Promise<void> {
    if (rows.length === 0) return;
    const text = rows.map((r) => r.map(tsv).join('\t')).join('\n') + '\n';
    await this.client.insert({ table: `${this.db}.${table}`, values: Readable.from([Buffer.from(text)], { objectMode: false }), format: 'TabSeparated' });
  }

  async store(batch: readonly MessageRows[]): Promise<Set<string>> {
    const fresh = new Set<string>();
    if (batch.length === 0) return fresh;
    const tuples = [...new Set(batch.map((m) => m.key))].map((k) => {
      const [h, b, e, s] = k.split('\t');
      return `(${lit(h!)}, ${lit(b!)}, ${e}, ${s})`;
    });
    const stored = new Set<string>();
    for (const [h, b, e, s] of await this.rows<[string, string, number, string]>(`SELECT host, boot_id, epoch, seq FROM ${this.db}.messages WHERE (host, boot_id, epoch, seq) IN (${tuples.join(', ')})`)) {
      stored.add(messageKey(h, b, Number(e), Number(s)));
    }
    const byTable = new Map<TableName, Row[]>();
    const messages: Row[] = [];
    for (const m of batch) {
      if (stored.has(m.key) || fresh.has(m.key)) continue;
      fresh.add(m.key);
      messages.push(m.message);
      for (const [table, rows] of tablesOf(m)) {
        let list = byTable.get(table);
        if (!list) byTable.set(table, (list = []));
        for (const r of rows) list.push(r);
      }
    }
    await Promise.all([...byTable].map(([t, rows]) => this.insert(t, rows)));
    await this.insert('messages', messages);
    return fresh;
  }

  async recordHoles(holes: readonly DeclaredHole[], instance: string): Promise<void> {
    await this.insert(
      'holes',
      holes.map((h) => [h.host, h.bootId, h.epoch, BigInt(h.fromSeq), BigInt(h.toSeq), h.sinceMs, h.declaredAtMs, instance]),
    );
  }

  async storedSince(sinceMs: number): Promise<StoredMessageId[]> {
    const r = await this.rows<[string, string, number, string, string]>(`SELECT host, boot_id, epoch, seq, drops FROM ${this.db}.messages WHERE stored_ms >= ${Math.floor(sinceMs)}`);
    return r.map(([host, bootId, epoch, seq, drops]) => ({ host, bootId, epoch: Number(epoch), seq: Number(seq), drops: JSON.parse(drops) }));
  }

  knownHoles(holes: readonly DeclaredHole[]): Promise<Set<string>> {
    return knownHolesQuery(holes, (q) => this.rows(q));
  }

  runBaselines(runs: readonly RunId[]): Promise<Map<string, RunBaseline>> {
    // uniqExact: a row written twice counts once before its merge.
    return baselineQueries(runs, (q) => this.rows(q), 'uniqExact(seq)');
  }

  async latestHosts(sinceMs: number): Promise<HostRecord[]> {
    const r = await this.rows<[string, string, number, string, string, string, string, string]>(
      `SELECT host, boot_id, epoch, seq, at_ns, states, stuck, events_total FROM ${this.db}.summaries WHERE at_ns >= ${BigInt(Math.floor(sinceMs)) * 1_000_000n} ORDER BY host, at_ns DESC, epoch DESC, seq DESC LIMIT 1 BY host`,
    );
    return r.map(([host, bootId, epoch, seq, atNs, states, stuck, eventsTotal]) => ({
      host,
      bootId,
      epoch: Number(epoch),
      seq: Number(seq),
      atMs: Number(BigInt(atNs) / 1_000_000n),
      states: JSON.parse(states),
      stuck: JSON.parse(stuck),
      eventsTotal: Number(eventsTotal),
    }));
  }

  async sql(text: string): Promise<SqlResult> {
    if (!isReadOnlySql(text)) throw new UsageError('tcpdwell sql runs one read-only statement (SELECT, WITH, DESCRIBE, SHOW, EXPLAIN)');
    const r = await this.client.query({ query: text.trim().replace(/;\s*$/, ''), format: 'JSONCompact', clickhouse_settings: { ...SETTINGS, readonly: '2' } as never });
    const j = (await r.json()) as unknown as { meta: { name: string; type: string }[]; data: unknown[][] };
    const big = j.meta.map((m) => /^(Nullable\()?U?Int64/.test(m.type));
    return { columns: j.meta.map((m) => m.name), rows: j.data.map((row) => row.map((v, i) => (big[i] && typeof v === 'string' ? BigInt(v) : v))) };
  }

  /** The database, for queries that name tables (query.ts). */
  get database(): string {
    return this.db;
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
