import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classify, type CollectedMessage } from '../../src/collect/messages.js';
import { rowsOf } from '../../src/collect/rows.js';
import { openStore } from '../../src/collect/open-store.js';
import type { Store } from '../../src/collect/store.js';
import { clickHouseAvailable, startClickHouse, type TestClickHouse } from './clickhouse.js';
import { addedColumns } from '../../src/collect/schema.js';
import { event } from '../helpers/events.js';
import { refused, summaryMsg, transitionsMsg } from './collect-helpers.js';

const collected = (m: { subject: string; data: Uint8Array }): CollectedMessage => {
  const c = classify(m.subject, m.data);
  if (!c.ok) throw new Error('test message did not decode');
  return c.message;
};

describe.skipIf(!clickHouseAvailable)('the ClickHouse store (a real clickhouse-server)', () => {
  let ch: TestClickHouse;
  beforeAll(async () => {
    ch = await startClickHouse();
  });
  afterAll(async () => {
    await ch?.cleanup();
  });

  it('stores a message whole and once; rows keep their values; a second instance sees the first one\'s messages', async () => {
    const a = await openStore(ch.spec('once'));
    const b: Store = await openStore(ch.spec('once'));
    const batch = [1, 2, 3].map((seq) => rowsOf(collected(transitionsMsg('web-1', seq, refused(BigInt(seq), 5_000_000_000n))), Date.now()));
    expect((await a.store(batch)).size).toBe(3);
    expect((await b.store([...batch, rowsOf(collected(transitionsMsg('web-1', 4, refused(4n, 1n))), Date.now())])).size).toBe(1);
    expect((await b.sql('SELECT count() AS n, uniqExact(host, boot_id, epoch, seq, row) AS k FROM events')).rows).toEqual([[8n, 8n]]);
    const failed = await b.sql('SELECT error, daddr, dport, old_state, new_state, dwell_ns FROM events WHERE error IS NOT NULL AND seq = 1');
    expect(failed.rows).toEqual([['ECONNREFUSED', '10.0.0.9', 81, 'SYN_SENT', 'CLOSE', 300_000n]]);
    expect((await b.storedSince(Date.now() - 60_000)).map((m) => m.seq).sort()).toEqual([1, 2, 3, 4]);
    const base = await b.runBaselines([{ host: 'web-1', bootId: 'boot-web-1', epoch: 1 }]);
    expect(base.get('web-1\tboot-web-1\t1')).toEqual({ upTo: 4, lost: 0, above: [], aboveStoredMs: [] });
    await b.store([rowsOf(collected(summaryMsg('web-1', 5, { states: { ESTABLISHED: 5 } })), Date.now())]);
    expect((await a.latestHosts(0)).map((h) => [h.host, h.states])).toEqual([['web-1', { ESTABLISHED: 5 }]]);
    await expect(a.sql('DROP TABLE events')).rejects.toThrow(/read-only/);
    await a.close();
    await b.close();
  });

  it('a store made before the close vitals gains their columns at open (old rows NULL), and stores and reads them', async () => {
    const first = await openStore(ch.spec('before_vitals'));
    await first.store([rowsOf(collected(transitionsMsg('web-1', 1, refused(1n, 5_000_000_000n))), Date.now())]);
    await first.close();
    // as a collector made it before: without the added columns (ClickHouse's own HTTP interface)
    for (const { table, column } of addedColumns()) {
      const r = await fetch(ch.url, { method: 'POST', body: `ALTER TABLE before_vitals.${table} DROP COLUMN ${column.name}` });
      expect(r.ok, await r.text()).toBe(true);
    }
    const s = await openStore(ch.spec('before_vitals'));
    const [connect, close] = refused(2n, 6_000_000_000n);
    const reset = event({ ...close!, vitals: { srttUs: 43, totalRetrans: 2, bytesAcked: 10_485_762, bytesReceived: 123_458 }, resetBy: 'received' });
    expect((await s.store([rowsOf(collected(transitionsMsg('web-1', 2, [connect!, reset])), Date.now())])).size).toBe(1);
    const got = await s.sql("SELECT seq, new_state, srtt_us, total_retrans, bytes_acked, bytes_received, reset_by FROM events WHERE new_state = 'CLOSE' ORDER BY seq");
    expect(got.rows).toEqual([
      [1n, 'CLOSE', null, null, null, null, null],
      [2n, 'CLOSE', 43, 2, 10_485_762n, 123_458n, 'received'],
    ]);
    await s.close();
  });

  it('refuses a batch while the server is down, and stores it when the server is back', async () => {
    const s = await openStore(ch.spec('outage'));
    const m = rowsOf(collected(transitionsMsg('web-1', 1, refused(1n, 1n))), Date.now());
    await ch.kill();
    await expect(s.store([m])).rejects.toThrow();
    await ch.start();
    expect((await s.store([m])).size).toBe(1);
    await s.close();
  });
});
