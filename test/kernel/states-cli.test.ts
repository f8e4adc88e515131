import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { toSsCounts } from '../../src/track/index.js';
import { kernelAvailable, ssCounts, TestNetns } from './helpers.js';

const bin = fileURLToPath(new URL('../../bin/tcpdwell', import.meta.url));

describe.skipIf(!kernelAvailable)('tcpdwell states', () => {
  it('prints the live table of a namespace, equal to ss -tan there', async () => {
    const netns = new TestNetns();
    const hold = netns.start('mix', '127.0.0.1', 8601, '2,3,2');
    try {
      await hold.ready;
      const r = spawnSync(bin, ['states', '--netns', netns.name, '--format', 'json'], { encoding: 'utf8' });
      expect(r.status).toBe(0);
      const table = JSON.parse(r.stdout);
      expect(table.byNetns).toHaveLength(1);
      expect(table.byNetns[0].netns).toBe(netns.ns.inode);
      expect(toSsCounts(table.total)).toEqual(ssCounts(netns));
      expect(table.total).toMatchObject({ LISTEN: 1, ESTABLISHED: 4, TIME_WAIT: 3, CLOSE_WAIT: 2, FIN_WAIT2: 2 });
      const text = spawnSync(bin, ['states', '--netns', netns.name, '--format', 'text'], { encoding: 'utf8' }).stdout;
      expect(text).toMatch(/^NETNS\s+STATE\s+COUNT/);
      expect(text).toMatch(/total\s+CLOSE_WAIT\s+2/);
    } finally {
      await hold.stop();
      netns.delete();
    }
  });
});
