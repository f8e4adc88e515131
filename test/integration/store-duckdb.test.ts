import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { classify, type CollectedMessage } from '../../src/collect/messages.js';
import { rowsOf } from '../../src/collect/rows.js';
import { openStore } from '../../src/collect/open-store.js';
import { DuckDBInstance } from '@duckdb/node-api';
import { addedColumns } from '../../src/collect/schema.js';
import { duckDbSchema } from '../../src/collect/store-duckdb.js';
import { event } from '../helpers/events.js';
import { refused, summaryMsg, transitionsMsg } from './collect-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'tcpdwell-duckdb-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const collected = (m: { subject: string; data: Uint8Array }): CollectedMessage => {
  const c = classify(m.subject, m.data);
  if (!c.ok) throw new Error('test message did not decode');
  return c.message;
};

describe('the DuckDB store', () => {
  it('stores a message whole and once: a second delivery, in another batch or the same, adds nothing', async () => {
    const path = join(dir, 'once.duckdb');
    const s = await openStore(path);
    const batch = [1, 2, 3].map((seq) => rowsOf(collected(transitionsMsg('web-1', seq, refused(BigInt(seq), 5_000_000_000n))), 1000));
    expect((await s.store(batch)).size).toBe(3);
    const again = [...batch, rowsOf(collected(transitionsMsg('web-1', 4, refused(4n, 6_000_000_000n))), 2000), batch[0]!];
    expect([...(await s.store(again))]).toEqual(['web-1\tboot-web-1\t1\t4']);
    const n = await s.sql('SELECT count(*) AS n, count(DISTINCT (host, boot_id, epoch, seq, row)) AS k FROM events');
    expect(n.rows).toEqual([[8n, 8n]]);
    const failed = await s.sql("SELECT error, daddr, dport, old_state, new_state, dwell_ns FROM events WHERE error IS NOT NULL AND seq = 4");
    expect(failed.rows).toEqual([['ECONNREFUSED', '10.0.0.9', 81, 'SYN_SENT', 'CLOSE', 300_000n]]);
    await s.close();
    // The file survives a restart, and its gate with it.
    const s2 = await openStore(path);
    expect((await s2.store(batch)).size).toBe(0);
    await s2.close();
  });

  it('a store made before the close vitals gains their columns at open (old rows NULL), and stores and reads them', async () => {
    const path = join(dir, 'before-vitals.duckdb');
    // A store as the collector made it before: the tables without the added columns.
    const old = await DuckDBInstance.create(path);
    const conn = await old.connect();
    for (const ddl of duckDbSchema().filter((d) => d.startsWith('CREATE'))) await conn.run(ddl);
    for (const { table, column } of addedColumns()) await conn.run(`ALTER TABLE ${table} DROP COLUMN ${column.name}`);
    await conn.run(`INSERT INTO holes VALUES ('h', 'b', 1, 1, 2, 0, 0, 'i')`);
    conn.closeSync();
    old.closeSync();

    const s = await openStore(path);
    const [connect, close] = refused(1n, 5_000_000_000n);
    const reset = event({ ...close!, vitals: { srttUs: 43, totalRetrans: 2, bytesAcked: 10_485_762, bytesReceived: 123_458 }, resetBy: 'received' });
    expect((await s.store([rowsOf(collected(transitionsMsg('web-1', 1, [connect!, reset])), 1000)])).size).toBe(1);
    const got = await s.sql('SELECT type, new_state, srtt_us, total_retrans, bytes_acked, bytes_received, reset_by FROM events ORDER BY ts_ns');
    expect(got.rows).toEqual([
      ['transition', 'SYN_SENT', null, null, null, null, null],
      ['transition', 'CLOSE', 43, 2, 10_485_762n, 123_458n, 'received'],
    ]);
    await s.close();
  });

  it('a batch that fails stores nothing of it, and the store goes on', async () => {
    const s = await openStore(join(dir, 'rollback.duckdb'));
    const good = rowsOf(collected(transitionsMsg('web-1', 1, refused(1n, 5_000_000_000n))), 1000);
    const bad = rowsOf(collected(transitionsMsg('web-1', 2, refused(2n, 5_000_000_000n))), 1000);
    bad.rows[1]![9] = 'not a port'; // sport, a USMALLINT column
    await expect(s.store([good, bad])).rejects.toThrow();
    expect((await s.sql('SELECT count(*) FROM messages')).rows).toEqual([[0n]]);
    expect((await s.sql('SELECT count(*) FROM events')).rows).toEqual([[0n]]);
    expect((await s.store([good])).size).toBe(1);
    expect((await s.sql('SELECT count(*) FROM events')).rows).toEqual([[2n]]);
    await s.close();
  });

  it("tells a collector meeting a run where it stands: its prefix, declared holes, and what is stored above a pending hole", async () => {
    const s = await openStore(join(dir, 'baseline.duckdb'));
    const m = (seq: number) => rowsOf(collected(transitionsMsg('db-1', seq, refused(BigInt(seq), 5_000_000_000n))), 1000);
    await s.store([1, 2, 3, 4].map(m));
    await s.store([1, 2, 3].map((seq) => rowsOf(collected(transitionsMsg('db-2', seq, refused(1n, 1n))), 1000)));
    await s.recordHoles([{ host: 'db-2', bootId: 'boot-db-2', epoch: 1, fromSeq: 4, toSeq: 6, sinceMs: 1, declaredAtMs: 2 }], 'test');
    await s.store([7, 8, 10].map((seq) => rowsOf(collected(transitionsMsg('db-2', seq, refused(1n, 1n))), 1000)));
    const b = await s.runBaselines([
      { host: 'db-1', bootId: 'boot-db-1', epoch: 1 },
      { host: 'db-2', bootId: 'boot-db-2', epoch: 1 },
      { host: 'new', bootId: 'b', epoch: 1 },
    ]);
    expect(b.get('db-1\tboot-db-1\t1')).toEqual({ upTo: 4, lost: 0, above: [], aboveStoredMs: [] });
    expect(b.get('db-2\tboot-db-2\t1')).toEqual({ upTo: 6, lost: 3, above: [7, 8, 10], aboveStoredMs: [1000, 1000, 1000] });
    expect(b.get('new\tb\t1')).toEqual({ upTo: 0, lost: 0, above: [], aboveStoredMs: [] });
    await s.close();
  });

  it("keeps each host's latest picture and answers only read-only SQL", async () => {
    const s = await openStore(join(dir, 'hosts.duckdb'));
    await s.store([rowsOf(collected(summaryMsg('web-1', 1, { states: { ESTABLISHED: 3 }, atNs: 10_000_000_000n })), 1), rowsOf(collected(summaryMsg('web-1', 2, { states: { ESTABLISHED: 5 }, atNs: 20_000_000_000n })), 1)]);
    expect((await s.latestHosts(0)).map((h) => [h.host, h.seq, h.states])).toEqual([['web-1', 2, { ESTABLISHED: 5 }]]);
    await expect(s.sql('DELETE FROM events')).rejects.toThrow(/read-only/);
    await s.close();
  });
});
