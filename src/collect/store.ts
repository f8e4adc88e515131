/**
 * Where the fleet's history lives: a columnar store written exactly once (schema.ts).
 *
 * - `fleet.duckdb` (or `duckdb:PATH`): DuckDB, embedded (store-duckdb.ts). One collector process
 *   holds the file; the gate is a primary key on `messages`, so a message is stored whole or not
 *   at all, once, in one transaction with its rows.
 * - `clickhouse://HOST:PORT/DB` (HTTP port): ClickHouse, shared by any number of collector
 *   instances (store-clickhouse.ts).
 *
 * A store that cannot be written makes `store()` throw: the collector then acks nothing of the
 * batch, and JetStream keeps and redelivers it (a store outage holds acks back).
 */
import type { DeclaredHole } from './continuity.js';
import type { MessageRows } from './rows.js';
import type { HostRecord } from './views.js';

/** A stored message's identity and loss counters, for the continuity of runs stored by others. */
export interface StoredMessageId {
  host: string;
  bootId: string;
  epoch: number;
  seq: number;
  drops: Record<string, number>;
}

/** Rows of a query: column names and values (64-bit integers as bigint). */
export interface SqlResult {
  columns: string[];
  rows: unknown[][];
}

export interface Store {
  readonly kind: 'duckdb' | 'clickhouse';
  /** several collector instances may write it at once */
  readonly shared: boolean;
  /** where it is, for logs */
  readonly location: string;
  /**
   * Stores every message of the batch that is not stored yet, whole (its `messages` row and its
   * rows). Returns the keys (rows.ts messageKey) this call stored; the others were stored before.
   */
  store(batch: readonly MessageRows[]): Promise<Set<string>>;
  /** Records holes declared lost (idempotent: a hole is one row whoever declares it). */
  recordHoles(holes: readonly DeclaredHole[], instance: string): Promise<void>;
  /** Which of these holes the store has (holeKey), whoever declared them. */
  knownHoles(holes: readonly DeclaredHole[]): Promise<Set<string>>;
  /** Messages stored since `sinceMs` (collector clock): how instances learn what the others stored. */
  storedSince(sinceMs: number): Promise<StoredMessageId[]>;
  /**
   * Where each of these runs stands in the store, for a collector that meets a run for the first
   * time (after a restart, or one another instance has been storing): see `baselineQueries`.
   */
  runBaselines(runs: readonly RunId[]): Promise<Map<string, RunBaseline>>;
  /** Each host's newest picture (its latest summary), of hosts heard from since `sinceMs` (Unix ms). */
  latestHosts(sinceMs: number): Promise<HostRecord[]>;
  /** A read-only SQL statement's result. */
  sql(text: string): Promise<SqlResult>;
  close(): Promise<void>;
}

export interface RunId {
  host: string;
  bootId: string;
  epoch: number;
}

/** A run as stored: every seq up to `upTo` stored or declared lost (`lost` of them), and the seqs stored above it. */
export interface RunBaseline {
  upTo: number;
  lost: number;
  above: number[];
  /** when each of `above` was stored (Unix ms): the age of a hole below one is that of the message above it */
  aboveStoredMs: number[];
}

export const runKey = (r: RunId): string => `${r.host}\t${r.bootId}\t${r.epoch}`;
export const holeKey = (h: DeclaredHole): string => `${runKey(h)}\t${h.fromSeq}`;

/** The holes of a `holes` table among these, by holeKey. */
export async function knownHolesQuery(holes: readonly DeclaredHole[], rows: (sql: string) => Promise<unknown[][]>): Promise<Set<string>> {
  const out = new Set<string>();
  if (holes.length === 0) return out;
  for (const [h, b, e, from] of await rows(`SELECT host, boot_id, epoch, from_seq FROM holes WHERE ${holes.map((x) => `(${runsWhere([x], () => ` AND from_seq = ${x.fromSeq}`).slice(1, -1)})`).join(' OR ')}`)) {
    out.add(`${h}\t${b}\t${e}\t${from}`);
  }
  return out;
}

/** Host ids and boot ids are checked tokens (messages.ts): no quotes or backslashes to escape. */
const q = (s: string) => `'${s}'`;
/** `(host = … AND boot_id = … AND epoch = …) OR …`, plus an extra condition per run. */
export const runsWhere = (runs: readonly RunId[], extra: (r: RunId) => string = () => ''): string =>
  runs.map((r) => `(host = ${q(r.host)} AND boot_id = ${q(r.bootId)} AND epoch = ${r.epoch}${extra(r)})`).join(' OR ');

/**
 * A store's runs from three small queries: each run's largest seq and number of stored
 * messages, its declared holes, and — only for a run whose messages and holes do not add up to
 * its largest seq (a hole not declared yet) — its seqs above the last declared hole.
 */
export async function baselineQueries(
  runs: readonly RunId[],
  rows: (sql: string) => Promise<unknown[][]>,
  distinct: string,
): Promise<Map<string, RunBaseline>> {
  const out = new Map<string, RunBaseline>();
  if (runs.length === 0) return out;
  // A set, not a chain of ORs: a collector meeting a thousand runs at once (a restart at fleet
  // scale) asks for all of them, and ClickHouse 18.16 took seconds to parse the OR chain.
  const where = `(host, boot_id, epoch) IN (${runs.map((r) => `(${q(r.host)}, ${q(r.bootId)}, ${r.epoch})`).join(', ')})`;
  const stored = new Map<string, { max: number; n: number }>();
  for (const [h, b, e, max, n] of await rows(`SELECT host, boot_id, epoch, max(seq), ${distinct} FROM messages WHERE ${where} GROUP BY host, boot_id, epoch`)) {
    stored.set(runKey({ host: String(h), bootId: String(b), epoch: Number(e) }), { max: Number(max), n: Number(n) });
  }
  const holes = new Map<string, { lost: number; last: number }>();
  for (const [h, b, e, lost, last] of await rows(`SELECT host, boot_id, epoch, sum(to_seq - from_seq + 1), max(to_seq) FROM holes WHERE ${where} GROUP BY host, boot_id, epoch`)) {
    holes.set(runKey({ host: String(h), bootId: String(b), epoch: Number(e) }), { lost: Number(lost), last: Number(last) });
  }
  const partial: RunId[] = [];
  for (const r of runs) {
    const k = runKey(r);
    const s = stored.get(k) ?? { max: 0, n: 0 };
    const h = holes.get(k) ?? { lost: 0, last: 0 };
    if (s.n + h.lost >= s.max) out.set(k, { upTo: Math.max(s.max, h.last), lost: h.lost, above: [], aboveStoredMs: [] });
    else {
      out.set(k, { upTo: h.last, lost: h.lost, above: [], aboveStoredMs: [] });
      partial.push(r);
    }
  }
  if (partial.length) {
    const last = (r: RunId) => out.get(runKey(r))!.upTo;
    for (const [h, b, e, seq, at] of await rows(`SELECT host, boot_id, epoch, seq, stored_ms FROM messages WHERE ${runsWhere(partial, (r) => ` AND seq > ${last(r)}`)} ORDER BY seq`)) {
      const base = out.get(runKey({ host: String(h), bootId: String(b), epoch: Number(e) }))!;
      base.above.push(Number(seq));
      base.aboveStoredMs.push(Number(at));
    }
  }
  return out;
}

export interface StoreOptions {
  /** open for reading only (query, sql) */
  readOnly?: boolean;
}

/** True for a statement that only reads (what `tcpdwell sql` runs). */
export function isReadOnlySql(text: string): boolean {
  const t = text.replace(/^\s*(--[^\n]*\n\s*)*/, '').trimStart().toLowerCase();
  return /^(select|with|describe|show|explain|summarize|pragma\s+(table_info|show)|values)\b/.test(t) && !/;\s*\S/.test(text.trim().replace(/;\s*$/, ''));
}
