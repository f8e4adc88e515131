/**
 * Every connection's vital signs at its close (RTT, retransmits, bytes, who reset it), read by
 * the kernel program from the socket at its X->CLOSE, against the kernel's own view: `ss -ti` of
 * the live socket just before an abort (which adds no packet, so nothing changes in between), a
 * transfer of known size each way, and retransmits forced with nftables and counted by the
 * namespace's RetransSegs.
 */
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { clockBoottimeNs } from 'bpf-ts-loader';
import { describe, expect, it } from 'vitest';
import type { TcpEvent } from '../../src/decode/index.js';
import { decodeDwell } from '../../src/publish/wire.js';
import { DwellColumns } from '../../src/publish/columns.js';
import { Tracker, type DwellRecord } from '../../src/track/index.js';
import { eachTestInNamespace, kernelAvailable, snmpCounter, type Collector, type TestNetns } from './helpers.js';

const VITALS = fileURLToPath(new URL('./vitals.py', import.meta.url));

/** What `ss -tin` says of the socket with local port `port`: rtt (ms, as printed), retrans N, bytes. */
function ssInfo(netns: TestNetns, port: number) {
  const out = execFileSync('ip', ['netns', 'exec', netns.name, 'ss', '-Htin', 'sport', `= :${port}`], { encoding: 'utf8' });
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? 0);
  const rtt = /\brtt:([\d.]+)\//.exec(out)?.[1];
  if (!rtt) throw new Error(`ss shows no rtt for port ${port}: ${out}`);
  return { rtt, retrans: num(/\bretrans:\d+\/(\d+)/), bytesAcked: num(/\bbytes_acked:(\d+)/), bytesReceived: num(/\bbytes_received:(\d+)/) };
}

/** The transfer of vitals.py: resolves once done, with a function that closes it (abort or close). */
async function transfer(netns: TestNetns, port: number, up: number, down: number, dropEvery = 0) {
  const py = spawn('ip', ['netns', 'exec', netns.name, 'python3', VITALS, String(port), String(up), String(down), String(dropEvery)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let buf = '';
  const waiters: (() => void)[] = [];
  py.stdout.on('data', (d) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
      waiters.splice(0).forEach((w) => w());
    }
  });
  const exited = new Promise<number | null>((resolve) => py.on('close', resolve));
  const line = async (n: number) => {
    while (lines.length < n) {
      const more = new Promise<void>((resolve) => waiters.push(resolve));
      const code = await Promise.race([more.then(() => undefined), exited]);
      if (code !== undefined && lines.length < n) throw new Error(`vitals.py exited ${code}`);
    }
    return JSON.parse(lines[n - 1]!) as Record<string, unknown>;
  };
  const started = (await line(1)) as { pid: number; cport: number };
  return {
    cport: started.cport,
    /** closes the connection ("abort": SO_LINGER 0; "close": graceful, client first) and waits for the script to end */
    async end(how: 'abort' | 'close') {
      py.stdin.write(`${how}\n`);
      await line(2);
      py.stdin.end();
      await exited;
    },
    kill: () => py.kill(),
  };
}

const closeOf = (events: TcpEvent[], port: number, role: 'client' | 'server') =>
  events.find((e) => e.type === 'transition' && e.newState === 'CLOSE' && e.oldState !== 'LISTEN' && (role === 'client' ? e.sport === port : e.dport === port));

/** Waits for both ends' closes of the connection from client port `cport`. */
async function closes(col: Collector, cport: number): Promise<{ events: TcpEvent[]; client: TcpEvent; server: TcpEvent }> {
  const events = await col.waitFor((ev) => closeOf(ev, cport, 'client') !== undefined && closeOf(ev, cport, 'server') !== undefined);
  return { events, client: closeOf(events, cport, 'client')!, server: closeOf(events, cport, 'server')! };
}

/** The events' dwell records through the tracker, and those through the agent's DwellBatch encoder and back. */
function dwellOf(events: TcpEvent[]): { records: DwellRecord[]; wire: DwellRecord[] } {
  const records: DwellRecord[] = [];
  const tracker = new Tracker({ clock: clockBoottimeNs, onDwell: (r) => records.push(r) });
  tracker.ingest(events);
  const cols = new DwellColumns();
  for (const r of records) cols.push(r);
  return { records, wire: decodeDwell(cols.encode({ hostId: 'h' })).records };
}

describe.skipIf(!kernelAvailable)('vital signs at the close, read from tcp_sock at X->CLOSE', () => {
  let netns: TestNetns;
  let col: Collector;
  eachTestInNamespace((n, c) => ((netns = n), (col = c)));

  it('an aborted connection closes with exactly what ss -ti showed of it just before (RTT, retransmits, bytes), its peer with the RST received', async () => {
    const PORT = 8811;
    const UP = 1_000_000;
    const DOWN = 3000;
    const t = await transfer(netns, PORT, UP, DOWN);
    try {
      const ssClient = ssInfo(netns, t.cport);
      const ssServer = ssInfo(netns, PORT);
      await t.end('abort');
      const { events, client, server } = await closes(col, t.cport);
      // The abort sends nothing before its close and the peer answers nothing: the socket is as
      // ss saw it. ss prints rtt in ms as %g of srtt_us >> 3 / 1000: every digit is ours.
      expect(client.vitals).toEqual({ srttUs: Math.round(Number(ssClient.rtt) * 1000), totalRetrans: ssClient.retrans, bytesAcked: ssClient.bytesAcked, bytesReceived: ssClient.bytesReceived });
      expect(String(client.vitals!.srttUs / 1000)).toBe(ssClient.rtt);
      expect(client.vitals!.srttUs).toBeGreaterThan(0);
      console.log(`vitals vs ss -ti: client ss rtt:${ssClient.rtt} ms retrans ${ssClient.retrans} bytes_acked ${ssClient.bytesAcked} bytes_received ${ssClient.bytesReceived} → close ${JSON.stringify(client.vitals)}; server ss rtt:${ssServer.rtt} → close ${JSON.stringify(server.vitals)}`);
      // The server got the RST: received before its close (tcp_reset runs before tcp_done).
      expect(server).toMatchObject({ oldState: 'ESTABLISHED', resetBy: 'received' });
      expect(server.vitals).toEqual({ srttUs: Math.round(Number(ssServer.rtt) * 1000), totalRetrans: ssServer.retrans, bytesAcked: ssServer.bytesAcked, bytesReceived: ssServer.bytesReceived });
      // SO_LINGER 0 resets after the close (tcp_disconnect): the close record cannot know it yet,
      // its RESET event follows it.
      expect(client).toMatchObject({ oldState: 'ESTABLISHED', resetBy: null });
      const rst = events.find((e) => e.type === 'reset' && e.reason === 'sent' && e.cookie === client.cookie);
      expect(rst).toBeDefined();
      expect(rst!.tsNs).toBeGreaterThanOrEqual(client.tsNs);
      // Only closes carry them.
      expect(events.filter((e) => e.vitals !== null).every((e) => e.type === 'transition' && e.newState === 'CLOSE')).toBe(true);

      // The dwell records of the states left at the closes carry the same, through the DwellBatch encoder too.
      const { records, wire } = dwellOf(events);
      const closing = records.filter((r) => r.vitals !== null);
      expect(closing.map((r) => [r.state, r.sport, r.vitals, r.resetBy]).sort()).toEqual(
        [
          ['ESTABLISHED', client.sport, client.vitals, null],
          ['ESTABLISHED', server.sport, server.vitals, 'received'],
        ].sort(),
      );
      expect(wire.map((r) => [r.vitals, r.resetBy])).toEqual(records.map((r) => [r.vitals, r.resetBy]));
    } finally {
      t.kill();
    }
  });

  it('a transfer of known size closes gracefully with those bytes, as the kernel counts them (the SYN and FIN included where it counts them)', async () => {
    const PORT = 8812;
    const UP = 10 * 1024 * 1024;
    const DOWN = 123_457;
    const retransBefore = snmpCounter(netns, 'Tcp', 'RetransSegs');
    const t = await transfer(netns, PORT, UP, DOWN);
    try {
      // Live, before the close: the active opener's bytes_acked counts its SYN (snd_una moves
      // past it in tcp_ack), the passive side's does not (its snd_una is set at the handshake).
      expect(ssInfo(netns, t.cport)).toMatchObject({ bytesAcked: UP + 1, bytesReceived: DOWN });
      expect(ssInfo(netns, PORT)).toMatchObject({ bytesAcked: DOWN, bytesReceived: UP });
      await t.end('close');
      const { events, client, server } = await closes(col, t.cport);
      // At the close each FIN has been acked (bytes_acked + 1) and received (bytes_received + 1:
      // tcp_rcv_nxt_update runs over the FIN's sequence number too).
      expect(client).toMatchObject({ oldState: 'FIN_WAIT2', resetBy: null, vitals: { bytesAcked: UP + 2, bytesReceived: DOWN + 1 } });
      expect(server).toMatchObject({ oldState: 'LAST_ACK', resetBy: null, vitals: { bytesAcked: DOWN + 1, bytesReceived: UP + 1 } });
      // Loopback retransmits too under load (6 in one CI run): the closes carry what the
      // namespace's own counter saw, retransmitted bytes not counted twice in bytes_acked.
      expect(client.vitals!.totalRetrans + server.vitals!.totalRetrans).toBe(snmpCounter(netns, 'Tcp', 'RetransSegs') - retransBefore);
      expect(client.vitals!.srttUs).toBeGreaterThan(0);
      // The client's close hands it to a timewait sock: the FIN_WAIT2 record carries them, the timewait's none.
      const { records } = dwellOf(events);
      const fw2 = records.find((r) => r.state === 'FIN_WAIT2' && !r.timewait && r.sport === t.cport)!;
      expect(fw2).toMatchObject({ nextState: 'TIME_WAIT', vitals: client.vitals, resetBy: null });
      expect(records.filter((r) => r.timewait).every((r) => r.vitals === null)).toBe(true);
    } finally {
      t.kill();
    }
  });

  it('retransmits forced by nftables (every 3rd segment to the server dropped) are counted at the close as RetransSegs counts them', async () => {
    const PORT = 8813;
    const before = snmpCounter(netns, 'Tcp', 'RetransSegs');
    const t = await transfer(netns, PORT, 2_000_000, 200_000, 3);
    try {
      const ssClient = ssInfo(netns, t.cport);
      const ssServer = ssInfo(netns, PORT);
      await t.end('close');
      const { events, client, server } = await closes(col, t.cport);
      const retransmitted = snmpCounter(netns, 'Tcp', 'RetransSegs') - before;
      expect(retransmitted).toBeGreaterThan(0);
      expect(client.vitals!.totalRetrans + server.vitals!.totalRetrans).toBe(retransmitted);
      console.log(`vitals retransmits: RetransSegs +${retransmitted}; closes: client ${client.vitals!.totalRetrans}, server ${server.vitals!.totalRetrans}`);
      // and each as ss counted it before the (loss-free) close
      expect([client.vitals!.totalRetrans, server.vitals!.totalRetrans]).toEqual([ssClient.retrans, ssServer.retrans]);
    } finally {
      t.kill();
    }
  });
});
