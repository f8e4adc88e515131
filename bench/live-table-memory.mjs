// Memory of the live table (issue 3's benchmark, not a timed test): N synthetic live sockets
// (default 1 M) with PEERS distinct remote addresses. After make:
//   node --expose-gc bench/live-table-memory.mjs [N] [PEERS]
import { Tracker } from '../dist/track/index.js';
const N = Number(process.argv[2] ?? 1_000_000);
const peers = Number(process.argv[3] ?? 1000);
const gc = () => { global.gc(); global.gc(); };
const mem = () => { const m = process.memoryUsage(); return m.heapUsed + m.arrayBuffers; };
const base = { type: 'transition', enteredNs: null, dwellNs: null, expiresNs: null, netns: 4026531840, cgroupId: 1n, family: 'inet', saddr: '10.0.0.1', sport: 443, dport: 0, pid: 0, comm: 'swapper/0', ownerPid: 1234, ownerComm: 'nginx', substate: null, reason: null, error: null, actorIsOwner: false, child: true, gap: false };
const t = new Tracker({ clock: () => 0n });
gc();
const m0 = mem();
const rss0 = process.memoryUsage().rss;
for (let i = 0; i < N; i += 10000) {
  const batch = [];
  for (let j = i; j < Math.min(N, i + 10000); j++) {
    const ts = BigInt(1e9 + j * 1000);
    const daddr = `172.16.${(j % peers) >> 8 & 255}.${(j % peers) & 255}${peers > 65536 ? `-${Math.floor((j % peers) / 65536)}` : ''}`;
    batch.push({ ...base, tsNs: ts, cookie: BigInt(j + 1), oldState: 'LISTEN', newState: 'SYN_RECV', daddr, dport: 10000 + (j % 50000) });
    batch.push({ ...base, tsNs: ts + 10n, cookie: BigInt(j + 1), enteredNs: ts, oldState: 'SYN_RECV', newState: 'ESTABLISHED', daddr, dport: 10000 + (j % 50000), child: false });
  }
  t.ingest(batch);
}
gc();
const m1 = mem();
console.log(JSON.stringify({ live: t.table().sockets, peers, bytesPerSocket: Math.round((m1 - m0) / N), rssPerSocket: Math.round((process.memoryUsage().rss - rss0) / N), rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20) }));
