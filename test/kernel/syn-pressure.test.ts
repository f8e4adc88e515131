/**
 * SYN pressure as the kernel sees it, against real queues in a namespace of the test's own: a
 * listener that never accepts (its accept queue overflows, clients wait in SYN-SENT), and a
 * half-open pile-up (nftables drops every final ACK, so request socks stay in SYN-RECV), with
 * syncookies on and off. The detector is fed what the agent polls — the listener walk and the
 * namespace's netstat — and checked against ss and the namespace's own counters.
 */
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { clockBoottimeNs } from 'bpf-ts-loader';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodeSockFiles, type SockFile } from '../../src/decode/index.js';
import { netstatByNetns, parseNetstat, type NetstatCounters } from '../../src/kernel/netstat.js';
import { toSsCounts, Tracker, type Alert } from '../../src/track/index.js';
import { Collector, kernelAvailable, ssCounts, TestNetns } from './helpers.js';

const BACKLOG = fileURLToPath(new URL('./backlog.py', import.meta.url));
const PORT = 9100;

describe.skipIf(!kernelAvailable)('SYN pressure from what the kernel offers', () => {
  let netns: TestNetns;
  let col: Collector;
  let stop: (() => Promise<void>) | null = null;

  beforeEach(() => {
    netns = new TestNetns();
    col = new Collector({ netns: [netns.ns.inode] });
  });
  afterEach(async () => {
    await stop?.();
    stop = null;
    col.close();
    netns.delete();
  });

  const ip = (...args: string[]) => execFileSync('ip', ['netns', 'exec', netns.name, ...args], { encoding: 'utf8' });
  const nsNetstat = (): NetstatCounters => parseNetstat(ip('cat', '/proc/net/netstat'))!;

  /** The python listener of backlog.py; `connect()` starts its clients piling up on it. */
  async function listener(backlog: number, clients: number): Promise<{ pid: number; connect: () => Promise<void> }> {
    const child = spawn('ip', ['netns', 'exec', netns.name, 'python3', BACKLOG, String(PORT), String(backlog), String(clients)], { stdio: ['pipe', 'pipe', 'inherit'] });
    stop = () => new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : (child.on('close', () => resolve()), child.stdin.end())));
    const line = () => new Promise<string>((resolve) => child.stdout.once('data', (d) => resolve(String(d))));
    const { pid } = JSON.parse(await line()) as { pid: number };
    return {
      pid,
      connect: async () => {
        const connecting = line();
        child.stdin.write('go\n');
        await connecting;
      },
    };
  }

  /** One poll as the agent makes it: this namespace's listeners, and the netstat of the namespaces they are in. */
  function poll(tracker: Tracker): SockFile[] {
    const listeners = decodeSockFiles(col.tracer.socketFiles({ listenersOnly: true }), col.stats).filter((l) => l.netns === netns.ns.inode);
    tracker.observeListeners({ atNs: clockBoottimeNs(), listeners, netstat: netstatByNetns(listeners) });
    return listeners;
  }

  const synAlert = (alerts: Alert[]) => alerts.find((a) => a.key === `syn_pressure/${netns.ns.inode}/${PORT}`);
  const ssLine = (state: string) => ip('ss', '-Htan', 'state', state, `( sport = :${PORT} or dport = :${PORT} )`).trim().split('\n').filter(Boolean);

  it('a listener that never accepts: its full accept queue and the SYNs it drops fire the alert, with its owner, as ss and ListenOverflows say', async () => {
    const tracker = new Tracker({ clock: clockBoottimeNs, thresholds: { listenerDrops: 3 } });
    const { pid, connect } = await listener(4, 12);
    poll(tracker); // the baseline
    const before = nsNetstat();
    await connect();
    await sleep(1300); // the clients' first SYN retransmission (1 s) is dropped too
    const [l] = poll(tracker);
    // The listener as ss shows it: Recv-Q 5 waiting, Send-Q 4 the bound; the rest of the clients in SYN-SENT.
    const [, recvQ, sendQ] = ip('ss', '-Htln', `( sport = :${PORT} )`).trim().split(/\s+/);
    expect(l).toMatchObject({ pid, comm: 'python3', state: 'LISTEN', sport: PORT, listener: { acceptQueue: Number(recvQ), acceptQueueMax: Number(sendQ), requestSocks: 0 } });
    expect([l!.listener!.acceptQueue, l!.listener!.acceptQueueMax]).toEqual([5, 4]);
    expect(ssLine('syn-sent')).toHaveLength(7);
    // Every SYN it dropped is one the namespace counted as a ListenOverflow.
    const overflows = nsNetstat().ListenOverflows - before.ListenOverflows;
    expect(overflows).toBeGreaterThanOrEqual(14);
    expect(l!.listener!.drops).toBe(nsNetstat().ListenDrops - before.ListenDrops);

    const alert = synAlert(tracker.evaluate())!;
    expect(alert).toMatchObject({ ownerPid: pid, ownerComm: 'python3', labels: { unit: 'dropped SYNs', acceptQueue: '5/4', listenPort: String(PORT) } });
    expect(alert.summary).toMatch(new RegExp(`^listening port ${PORT} in netns ${netns.ns.inode} dropped \\d+ SYNs or handshakes within 60 s: its accept queue is full \\(5 waiting, room for 4\\): python3 \\(pid ${pid}\\) does not accept fast enough$`));
    expect(alert.value).toBe(l!.listener!.drops);
  });

  it.each([
    ['on', 1, 'reqQFullDoCookies'],
    ['off', 0, 'reqQFullDrop'],
  ] as const)('a half-open pile-up (final ACKs dropped) with syncookies %s fires on the full SYN queue, and the table counts the request socks as ss does', async (_label, syncookies, counter) => {
    ip('sysctl', '-qw', `net.ipv4.tcp_syncookies=${syncookies}`);
    ip('nft', 'add', 'table', 'inet', 'tcpdwell_syn');
    ip('nft', 'add', 'chain', 'inet', 'tcpdwell_syn', 'in', '{ type filter hook input priority 0; }');
    ip('nft', 'add', 'rule', 'inet', 'tcpdwell_syn', 'in', 'tcp', 'dport', String(PORT), 'tcp', 'flags', '&', '(fin|syn|rst|ack)', '==', 'ack', 'drop');
    const tracker = new Tracker({ clock: clockBoottimeNs, thresholds: { requestSocksPerListener: 3, listenerDrops: 3 } });
    const { pid, connect } = await listener(8, 12);
    tracker.seed(netns.ns.inode, col.snapshot(netns.ns));
    poll(tracker); // the baseline
    const before = nsNetstat();
    await connect();
    await sleep(1300); // the first SYN-ACK retransmission (1 s)
    tracker.ingest(col.drain());
    const [l] = poll(tracker);
    const halfOpen = ssLine('syn-recv').length;
    expect(halfOpen).toBe(9); // one more than the bound: the kernel's queue is full past it
    expect(l!.listener).toMatchObject({ requestSocks: halfOpen, acceptQueue: 0, acceptQueueMax: 8 });
    expect(l!.listener!.synackRetrans).toBeGreaterThanOrEqual(halfOpen);
    // The request socks no event shows are in the table, as ss lists them.
    expect(toSsCounts(tracker.table().byNetns.find((n) => n.netns === netns.ns.inode)!.counts)).toEqual(ssCounts(netns));

    const after = nsNetstat();
    const alert = synAlert(tracker.evaluate())!;
    expect(alert).toMatchObject({ ownerPid: pid, ownerComm: 'python3', labels: { halfOpen: String(halfOpen) } });
    // The SYNs past the full queue: with cookies on, the 3 left over are answered with one; off,
    // they are dropped, and dropped again when retransmitted (counted by the listener too).
    const key = counter === 'reqQFullDoCookies' ? 'TCPReqQFullDoCookies' : 'TCPReqQFullDrop';
    const grown = after[key] - before[key];
    expect(alert.labels[counter]).toBe(String(grown));
    if (syncookies) {
      expect(grown).toBe(3);
      expect(alert.summary).toMatch(new RegExp(`^listening port ${PORT} in netns ${netns.ns.inode} has 9 half-open connections \\(request socks; its SYN queue is full at 8\\): handshakes are not completing, \\d+ SYN-ACKs retransmitted within 60 s$`));
      expect(alert.labels).toMatchObject({ unit: 'request socks', syncookiesSent: '3' });
      expect(l!.listener!.drops).toBe(0);
    } else {
      expect(grown).toBeGreaterThanOrEqual(3);
      expect(l!.listener!.drops).toBe(grown);
      expect(alert.summary).toBe(`listening port ${PORT} in netns ${netns.ns.inode} dropped ${grown} SYNs or handshakes within 60 s: its SYN queue is full (9 half-open, room for 8)`);
    }
  });
});
