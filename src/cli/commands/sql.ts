/** `tcpdwell sql "SELECT …"`: one read-only statement against the collector's store (tables: docs/events.md). */
import type { Command } from 'commander';
import { UsageError } from '../../common/errors.js';
import { addFormatOption, outputFormat } from '../options.js';

const text = (v: unknown): string => (v === null || v === undefined ? 'NULL' : typeof v === 'object' ? JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? x.toString() : x)) : String(v));

export function register(program: Command): void {
  const cmd = program
    .command('sql')
    .description("one read-only SQL statement against the collector's store (tables and columns: docs/events.md)")
    .argument('<statement>', 'e.g. "SELECT error, daddr, count(*) FROM events WHERE error IS NOT NULL GROUP BY ALL"')
    .option('--store <where>', "the collector's store: a DuckDB file or clickhouse://HOST:8123/DATABASE (env TCPDWELL_STORE)");
  addFormatOption(cmd, 'an aligned table or JSON lines').action(async (statement: string, o: { store?: string; format?: 'json' | 'text' }) => {
    const spec = o.store ?? process.env.TCPDWELL_STORE;
    if (!spec) throw new UsageError('tcpdwell sql: give --store fleet.duckdb (or clickhouse://HOST:8123/DATABASE), or set TCPDWELL_STORE');
    const { openStore } = await import('../../collect/open-store.js');
    const { isReadOnlySql } = await import('../../collect/store.js');
    if (!isReadOnlySql(statement)) throw new UsageError('tcpdwell sql runs one read-only statement (SELECT, WITH, DESCRIBE, SHOW, EXPLAIN, SUMMARIZE)');
    const store = await openStore(spec, { readOnly: true });
    try {
      const t0 = performance.now();
      const r = await store.sql(statement).catch((err: Error) => {
        throw new UsageError(`tcpdwell sql: ${err.message.split('\n')[0]}`);
      });
      const out = process.stdout;
      if (outputFormat(o.format) === 'json') {
        for (const row of r.rows) out.write(`${text(Object.fromEntries(r.columns.map((c, i) => [c, row[i]])))}\n`);
      } else {
        const cells = [r.columns, ...r.rows.map((row) => row.map(text))];
        const widths = r.columns.map((_, i) => Math.min(60, Math.max(...cells.map((c) => c[i]!.length))));
        for (const c of cells) out.write(`${c.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd()}\n`);
      }
      process.stderr.write(`tcpdwell sql: ${r.rows.length} rows in ${((performance.now() - t0) / 1000).toFixed(2)} s\n`);
    } finally {
      await store.close();
    }
  });
}
