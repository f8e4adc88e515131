import { describe, expect, it } from 'vitest';
import type { TcpEvent } from '../../src/decode/index.js';
import { bySocket, Collector, kernelAvailable, sequence, eachTestInNamespace, TestNetns } from './helpers.js';

const CLIENT = ['CLOSE->SYN_SENT', 'SYN_SENT->ESTABLISHED'];
const CHILD = ['LISTEN->SYN_RECV', 'SYN_RECV->ESTABLISHED'];

/** The sockets of one connection, told apart by their first transition. */
function roles(events: TcpEvent[]) {
  const socks = [...bySocket(events).values()];
  const first = (s: TcpEvent[]) => sequence(s)[0];
  return {
    client: socks.filter((s) => first(s) === 'CLOSE->SYN_SENT'),
    child: socks.filter((s) => first(s) === 'LISTEN->SYN_RECV'),
    listener: socks.filter((s) => first(s) === 'CLOSE->LISTEN'),
  };
}

describe.skipIf(!kernelAvailable)('transitions seen in a fresh network namespace', () => {
  let netns: TestNetns;
  let col: Collector;
  eachTestInNamespace((n, c) => ((netns = n), (col = c)));
  /** Runs a workload scenario and waits for its first `transitions` transitions. */
  const transitionsOf = async (scenario: string, host: string, port: number, transitions: number) => {
    await netns.run(scenario, host, port);
    return col.waitFor((ev) => ev.filter((e) => e.type === 'transition').length >= transitions);
  };

  it('client closes first: client ends in FIN_WAIT2->CLOSE plus a timewait, the server child goes through CLOSE_WAIT', async () => {
    const w = await netns.run('client-first', '127.0.0.1', 8001);
    const events = await col.waitFor((ev) => ev.filter((e) => e.type === 'transition').length >= 12);
    const { client, child, listener } = roles(events);
    expect(client).toHaveLength(1);
    expect(child).toHaveLength(1);
    expect(listener).toHaveLength(1);
    expect(sequence(client[0]!)).toEqual([...CLIENT, 'ESTABLISHED->FIN_WAIT1', 'FIN_WAIT1->FIN_WAIT2', 'FIN_WAIT2->CLOSE']);
    expect(sequence(child[0]!)).toEqual([...CHILD, 'ESTABLISHED->CLOSE_WAIT', 'CLOSE_WAIT->LAST_ACK', 'LAST_ACK->CLOSE']);
    expect(sequence(listener[0]!)).toEqual(['CLOSE->LISTEN', 'LISTEN->CLOSE']);

    const c = client[0]!;
    // Addresses and ports, host order, the local port known once bound.
    const est = c.find((e) => e.newState === 'ESTABLISHED')!;
    expect(est).toMatchObject({ family: 'inet', saddr: '127.0.0.1', daddr: '127.0.0.1', dport: 8001, sport: w.clientPort, netns: netns.ns.inode });
    // Owner: the workload process, known from connect() on.
    expect(c.every((e) => e.ownerPid === w.pid && e.ownerComm === 'node')).toBe(true);
    // Dwell: known for every state the program saw the socket enter, and consistent.
    for (const e of c.slice(1).filter((x) => x.type === 'transition')) {
      expect(e.dwellNs).not.toBeNull();
      expect(e.dwellNs! >= 0n).toBe(true);
    }
    expect(c[0]!.dwellNs).toBeNull(); // CLOSE before connect(): never seen entered
    // The timewait that follows carries the same cookie and sits between FIN_WAIT1->FIN_WAIT2 and the close.
    const tw = c.filter((e) => e.type === 'timewait_start');
    expect(tw).toHaveLength(1);
    expect(tw[0]).toMatchObject({ substate: 'TIME_WAIT', sport: w.clientPort, dport: 8001, ownerPid: w.pid });
    const due = Number(tw[0]!.expiresNs! - tw[0]!.tsNs) / 1e9;
    expect(due).toBeGreaterThan(55); // TCP_TIMEWAIT_LEN is 60 s
    expect(due).toBeLessThanOrEqual(60.1);
    // The child's owner is inherited from its listener (its own transitions run in softirq).
    expect(child[0]!.every((e) => e.ownerPid === w.pid)).toBe(true);
    expect(child[0]![0]!.child).toBe(true);
    expect(col.stats.malformed).toBe(0);
  });

  it('server closes first: the server child goes into FIN_WAIT2 and timewait, the client through CLOSE_WAIT', async () => {
    const events = await transitionsOf('server-first', '127.0.0.1', 8002, 12);
    const { client, child } = roles(events);
    expect(sequence(child[0]!)).toEqual([...CHILD, 'ESTABLISHED->FIN_WAIT1', 'FIN_WAIT1->FIN_WAIT2', 'FIN_WAIT2->CLOSE']);
    expect(sequence(client[0]!)).toEqual([...CLIENT, 'ESTABLISHED->CLOSE_WAIT', 'CLOSE_WAIT->LAST_ACK', 'LAST_ACK->CLOSE']);
    expect(child[0]!.filter((e) => e.type === 'timewait_start')).toHaveLength(1);
    expect(client[0]!.filter((e) => e.type === 'timewait_start')).toHaveLength(0);
  });

  it('RST close: both ends go from ESTABLISHED straight to CLOSE, with no timewait', async () => {
    const events = await transitionsOf('rst', '127.0.0.1', 8003, 8);
    const { client, child } = roles(events);
    expect(sequence(client[0]!)).toEqual([...CLIENT, 'ESTABLISHED->CLOSE']);
    expect(sequence(child[0]!)).toEqual([...CHILD, 'ESTABLISHED->CLOSE']);
    expect(events.filter((e) => e.type === 'timewait_start')).toHaveLength(0);
    // The end that received the RST dies of ECONNRESET; the end that sent it has no error.
    expect(child[0]!.at(-1)!.error).toBe('ECONNRESET');
    expect(client[0]!.at(-1)!.error).toBeNull();
  });

  it('connect refused: SYN_SENT->CLOSE carries ECONNREFUSED', async () => {
    await netns.run('refused', '127.0.0.1', 8004);
    const events = await col.waitFor((ev) => ev.some((e) => e.oldState === 'SYN_SENT'));
    const { client } = roles(events);
    expect(sequence(client[0]!)).toEqual(['CLOSE->SYN_SENT', 'SYN_SENT->CLOSE']);
    const [connect, refused] = client[0]!.filter((e) => e.type === 'transition');
    expect(refused!.error).toBe('ECONNREFUSED');
    expect(connect!.error).toBeNull();
    // The RST that refused it, as the client received it, just before.
    expect(client[0]!.find((e) => e.type === 'reset')).toMatchObject({ reason: 'received', newState: 'SYN_SENT' });
  });

  it('IPv6: the same client-first sequence with inet6 addresses', async () => {
    const events = await transitionsOf('client-first', '::1', 8005, 12);
    const { client, child } = roles(events);
    expect(sequence(client[0]!)).toEqual([...CLIENT, 'ESTABLISHED->FIN_WAIT1', 'FIN_WAIT1->FIN_WAIT2', 'FIN_WAIT2->CLOSE']);
    expect(sequence(child[0]!)).toEqual([...CHILD, 'ESTABLISHED->CLOSE_WAIT', 'CLOSE_WAIT->LAST_ACK', 'LAST_ACK->CLOSE']);
    expect(client[0]![1]).toMatchObject({ family: 'inet6', saddr: '::1', daddr: '::1', dport: 8005 });
    expect(client[0]!.find((e) => e.type === 'timewait_start')).toMatchObject({ family: 'inet6', daddr: '::1' });
  });

  it('simultaneous close: the FINs cross, an end goes FIN_WAIT1 -> CLOSING, and each leaves a timewait', async () => {
    await netns.run('simultaneous', '127.0.0.1', 8007);
    const events = await col.waitFor((ev) => ev.filter((e) => e.type === 'timewait_start').length >= 2, 10_000);
    const { client, child } = roles(events);
    // Both FINs were lost, so both are retransmitted. When the retransmissions cross (both
    // queued in one softirq run: the usual case) both ends go through CLOSING; when one lands
    // first, its sender gets the ACK before the other FIN and goes through FIN_WAIT2 instead.
    const crossed = ['ESTABLISHED->FIN_WAIT1', 'FIN_WAIT1->CLOSING', 'CLOSING->CLOSE'];
    const acked = ['ESTABLISHED->FIN_WAIT1', 'FIN_WAIT1->FIN_WAIT2', 'FIN_WAIT2->CLOSE'];
    const ends = [sequence(client[0]!).slice(2), sequence(child[0]!).slice(2)];
    expect(sequence(client[0]!).slice(0, 2)).toEqual(CLIENT);
    expect(sequence(child[0]!).slice(0, 2)).toEqual(CHILD);
    for (const end of ends) expect([crossed, acked]).toContainEqual(end);
    expect(ends.some((end) => end.includes('FIN_WAIT1->CLOSING'))).toBe(true);
    for (const side of [client[0]!, child[0]!]) {
      expect(side.filter((e) => e.type === 'timewait_start')).toEqual([expect.objectContaining({ substate: 'TIME_WAIT' })]);
    }
  });

  it('a server holding CLOSE_WAIT for 300 ms shows a CLOSE_WAIT dwell of about 300 ms', async () => {
    await netns.run('close-wait', '127.0.0.1', 8006, 300);
    const events = await col.waitFor((ev) => ev.some((e) => e.oldState === 'LAST_ACK'));
    const cw = events.find((e) => e.oldState === 'CLOSE_WAIT' && e.newState === 'LAST_ACK')!;
    const ms = Number(cw.dwellNs!) / 1e6;
    expect(ms).toBeGreaterThanOrEqual(295);
    expect(ms).toBeLessThan(600);
  });
});
