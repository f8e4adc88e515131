/**
 * The embedded store: one DuckDB file (`tcpdwell collect --store fleet.duckdb`).
 *
 * The gate: `messages` has a primary key on (host, boot_id, epoch, seq). A batch is one
 * transaction: `INSERT OR IGNORE INTO messages … RETURNING` names the messages not stored
 * before, and only their rows are appended (appenders flush inside the same transaction), then
 * COMMIT. A crash before COMMIT stores nothing of the batch (and nothing was acked); a crash
 * after it and before the ack leaves the messages stored, so their redelivery stores nothing.
 * The row tables need no index of their own (an index over 100 M rows would cost gigabytes of
 * memory and most of the insert time); their rows are unique because their message is.
 *
 * DuckDB lets one process write a file: a second collector on the same file is refused with a
 * line that says so (several instances share a ClickHouse store instead).
 */
import { DuckDBInstance, type DuckDBAppender, type DuckDBConnection } from '@duckdb/node-api';
import { EnvironmentError, UsageError } from '../common/errors.js';
import type { DeclaredHole } from './continuity.js';
import { messageKey, tablesOf, type MessageRows } from './rows.js';
import { addedColumns, TABLES, type Column, type ColumnType, type Row, type TableName } from './schema.js';
import { baselineQueries, isReadOnlySql, knownHolesQuery, type RunBaseline, type RunId, type SqlResult, type Store, type StoredMessageId, type StoreOptions } from './store.js';
import type { HostRecord } from './views.js';

const SQL_TYPE: Record<ColumnType, string> = { str: 'VARCHAR', u8: 'UTINYINT', u16: 'USMALLINT', u32: 'UINTEGER', u64: 'UBIGINT', i64: 'BIGINT', f64: 'DOUBLE', bool: 'BOOLEAN' };

/** CREATE TABLE statements for every table (the gate's key as the primary key of messages and holes). */
export function duckDbSchema(): string[] {
  return TABLES.map((t) => {
    const cols = t.columns.map((c) => `${c.name} ${SQL_TYPE[c.type]}${c.nullable ? '' : ' NOT NULL'}`);
    const pk = t.name === 'messages' || t.name === 'holes' ? `, PRIMARY KEY (${t.key.join(', ')})` : '';
    return `CREATE TABLE IF NOT EXISTS ${t.name} (${cols.join(', ')}${pk})`;
  }).concat(addedColumns().map(({ table, column: c }) => `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS ${c.name} ${SQL_TYPE[c.type]}`));
}

const quote = (s: string) => `'${s.replace(/'/g, "''")}'`;

function append(a: DuckDBAppender, v: Row[number], c: Column): void {
  if (v === null) return a.appendNull();
  switch (c.type) {
    case 'str':
      return a.appendVarchar(v as string);
    case 'u8':
      return a.appendUTinyInt(v as number);
    case 'u16':
      return a.appendUSmallInt(v as number);
    case 'u32':
      return a.appendUInteger(v as number);
    case 'u64':
      return a.appendUBigInt(typeof v === 'bigint' ? v : BigInt(v as number));
    case 'i64':
      return a.appendBigInt(typeof v === 'bigint' ? v : BigInt(v as number));
    case 'f64':
      return a.appendDouble(v as number);
    case 'bool':
      return a.appendBoolean(v as boolean);
  }
}

const MESSAGES = TABLES.find((t) => t.name === 'messages')!;

export class DuckDbStore implements Store {
  readonly kind = 'duckdb' as const;
  readonly shared = false;
  private readonly appenders = new Map<TableName | 'messages_in', DuckDBAppender>();
  /** one statement at a time on the connection */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly instance: DuckDBInstance,
    private readonly conn: DuckDBConnection,
    readonly location: string,
    private readonly readOnly: boolean,
  ) {}

  static async open(path: string, opts: StoreOptions = {}): Promise<DuckDbStore> {
    let instance: DuckDBInstance;
    try {
      // No access to other files from SQL (read_csv('/etc/…')): `tcpdwell sql` and a collector's
      // /sql run what they are given.
      instance = await DuckDBInstance.create(path, { ...(opts.readOnly ? { access_mode: 'READ_ONLY' } : {}), enable_external_access: 'false', autoinstall_known_extensions: 'false', autoload_known_extensions: 'false' });
    } catch (err) {
      const msg = (err as Error).message;
      if (/lock/i.test(msg)) {
        const pid = /PID (\d+)/i.exec(msg)?.[1];
        throw new EnvironmentError(
          `${path} is in use by another process${pid ? ` (pid ${pid})` : ''}: DuckDB lets one process hold a file. Run one collector per DuckDB file (several instances share a ClickHouse store, --store clickhouse://HOST:8123/tcpdwell); ask a running collector instead: tcpdwell query|sql --store http://HOST:PORT (its --metrics-listen)`,
          { cause: err },
        );
      }
      if (opts.readOnly && /not exist|No such file|Cannot open/i.test(msg)) throw new UsageError(`--store ${path}: no such DuckDB file (tcpdwell collect --store ${path} makes it)`);
      throw new EnvironmentError(`cannot open the DuckDB store ${path}: ${msg}`, { cause: err });
    }
    const conn = await instance.connect();
    const s = new DuckDbStore(instance, conn, path, opts.readOnly ?? false);
    if (!opts.readOnly) {
      // A checkpoint (compressing what the WAL holds into the file) runs inside the COMMIT that
      // passes the threshold: at DuckDB's 16 MB it was 70 % of a light-host run's store time.
      // Fewer, larger ones cost less in all; a crash replays at most this much WAL.
      await conn.run("SET checkpoint_threshold = '256MB'");
      for (const ddl of duckDbSchema()) await conn.run(ddl);
      await conn.run('CREATE TEMP TABLE messages_in AS SELECT * FROM messages LIMIT 0');
    }
    return s;
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const p = this.queue.then(f, f);
    this.queue = p.catch(() => {});
    return p;
  }

  private async appender(t: TableName | 'messages_in'): Promise<DuckDBAppender> {
    let a = this.appenders.get(t);
    if (!a) this.appenders.set(t, (a = await this.conn.createAppender(t)));
    return a;
  }

  store(batch: readonly MessageRows[]): Promise<Set<string>> {
    return this.serial(async () => {
      const fresh = new Set<string>();
      if (batch.length === 0) return fresh;
      // The same message twice in one batch (an agent's re-send beside the original): the gate
      // takes the first.
      const seen = new Set<string>();
      const unique = batch.filter((m) => (seen.has(m.key) ? false : (seen.add(m.key), true)));
      await this.conn.run('BEGIN TRANSACTION');
      try {
        // The batch's messages rows go through a staging table: DuckDB parses a VALUES list at
        // ~50 µs a row, an appender takes ~2 µs.
        const staging = await this.appender('messages_in');
        for (const m of unique) {
          for (let i = 0; i < MESSAGES.columns.length; i++) append(staging, m.message[i]!, MESSAGES.columns[i]!);
          staging.endRow();
        }
        staging.flushSync();
        const r = await this.conn.runAndReadAll('INSERT OR IGNORE INTO messages SELECT * FROM messages_in RETURNING host, boot_id, epoch, seq');
        await this.conn.run('DELETE FROM messages_in');
        for (const [h, b, e, s] of r.getRows()) fresh.add(messageKey(String(h), String(b), Number(e), Number(s)));
        const used = new Set<DuckDBAppender>();
        for (const m of unique) {
          if (!fresh.has(m.key)) continue;
          for (const [name, rows] of tablesOf(m)) {
            const t = TABLES.find((x) => x.name === name)!;
            const a = await this.appender(name);
            used.add(a);
            for (const row of rows) {
              for (let i = 0; i < t.columns.length; i++) append(a, row[i]!, t.columns[i]!);
              a.endRow();
            }
          }
        }
        for (const a of used) a.flushSync();
        await this.conn.run('COMMIT');
      } catch (err) {
        await this.conn.run('ROLLBACK').catch(() => {});
        // An appender that failed mid-row is unusable: start over with fresh ones.
        for (const a of this.appenders.values()) {
          try {
            a.closeSync();
          } catch {
            // already broken
          }
        }
        this.appenders.clear();
        throw err;
      }
      return fresh;
    });
  }

  recordHoles(holes: readonly DeclaredHole[], instance: string): Promise<void> {
    if (holes.length === 0) return Promise.resolve();
    const values = holes.map((h) => `(${[quote(h.host), quote(h.bootId), h.epoch, h.fromSeq, h.toSeq, h.sinceMs, h.declaredAtMs, quote(instance)].join(', ')})`).join(', ');
    return this.serial(() => this.conn.run(`INSERT OR IGNORE INTO holes VALUES ${values}`)).then(() => undefined);
  }

  storedSince(sinceMs: number): Promise<StoredMessageId[]> {
    return this.serial(async () => {
      const r = await this.conn.runAndReadAll(`SELECT host, boot_id, epoch, seq, drops FROM messages WHERE stored_ms >= ${Math.floor(sinceMs)}`);
      return r.getRows().map(([host, bootId, epoch, seq, drops]) => ({ host: String(host), bootId: String(bootId), epoch: Number(epoch), seq: Number(seq), drops: JSON.parse(String(drops)) }));
    });
  }

  knownHoles(holes: readonly DeclaredHole[]): Promise<Set<string>> {
    return this.serial(() => knownHolesQuery(holes, async (q) => (await this.conn.runAndReadAll(q)).getRows() as unknown[][]));
  }

  runBaselines(runs: readonly RunId[]): Promise<Map<string, RunBaseline>> {
    return this.serial(() => baselineQueries(runs, async (q) => (await this.conn.runAndReadAll(q)).getRows() as unknown[][], 'count(*)'));
  }

  latestHosts(sinceMs: number): Promise<HostRecord[]> {
    return this.serial(async () => {
      const r = await this.conn.runAndReadAll(
        `SELECT host, boot_id, epoch, seq, at_ns, states, stuck, events_total FROM summaries WHERE at_ns >= ${BigInt(Math.floor(sinceMs)) * 1_000_000n} QUALIFY row_number() OVER (PARTITION BY host ORDER BY at_ns DESC, epoch DESC, seq DESC) = 1 ORDER BY host`,
      );
      return r.getRows().map(([host, bootId, epoch, seq, atNs, states, stuck, eventsTotal]) => ({
        host: String(host),
        bootId: String(bootId),
        epoch: Number(epoch),
        seq: Number(seq),
        atMs: Number(BigInt(atNs as bigint) / 1_000_000n),
        states: JSON.parse(String(states)),
        stuck: JSON.parse(String(stuck)),
        eventsTotal: Number(eventsTotal),
      }));
    });
  }

  sql(text: string): Promise<SqlResult> {
    if (!this.readOnly && !isReadOnlySql(text)) return Promise.reject(new UsageError('tcpdwell sql runs one read-only statement (SELECT, WITH, DESCRIBE, SHOW, EXPLAIN, SUMMARIZE)'));
    return this.serial(async () => {
      const r = await this.conn.runAndReadAll(text);
      return { columns: r.columnNames(), rows: r.getRows() as unknown[][] };
    });
  }

  async close(): Promise<void> {
    await this.queue;
    for (const a of this.appenders.values()) {
      try {
        a.closeSync();
      } catch {
        // nothing pending
      }
    }
    this.appenders.clear();
    if (!this.readOnly) await this.conn.run('CHECKPOINT').catch(() => {});
    this.conn.closeSync();
    this.instance.closeSync();
  }
}
