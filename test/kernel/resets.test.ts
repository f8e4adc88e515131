/**
 * Resets as the kernel's reset tracepoints see them, against real sockets: RSTs on loopback
 * (each one leaves one socket and reaches another: one RST, not two socket ends), and a
 * connection that dies of TCP_USER_TIMEOUT without any RST. Checked against the namespace's
 * own OutRsts counter and the kernel's tracefs events.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { clockBoottimeNs } from 'bpf-ts-loader';
import { describe, expect, it } from 'vitest';
import { Tracker } from '../../src/track/index.js';
import { bySocket, eachTestInNamespace, kernelAvailable, sequence, snmpCounter, TraceInstance, type Collector, type TestNetns } from './helpers.js';

const USER_TIMEOUT = fileURLToPath(new URL('./user-timeout.py', import.meta.url));

describe.skipIf(!kernelAvailable)('resets, from tcp:tcp_send_reset and tcp:tcp_receive_reset', () => {
  let netns: TestNetns;
  let col: Collector;
  eachTestInNamespace((n, c) => {
    netns = n;
    col = c;
  });

  it('15 RSTs between two sockets on loopback are 15 sent and 15 received, by the right sockets, as OutRsts and tracefs say; the storm counts 15', async () => {
    const PORT = 8701;
    const trace = TraceInstance.forThisTest(['tcp/tcp_send_reset', 'tcp/tcp_receive_reset']);
    const outRsts = snmpCounter(netns, 'Tcp', 'OutRsts');
    const w = await netns.run('rsts', '127.0.0.1', PORT, 15);
    const events = await col.waitFor((ev) => ev.filter((e) => e.type === 'reset').length >= 30);
    const resets = events.filter((e) => e.type === 'reset');
    const sent = resets.filter((e) => e.reason === 'sent');
    const received = resets.filter((e) => e.reason === 'received');
    expect([sent.length, received.length]).toEqual([15, 15]);
    expect(snmpCounter(netns, 'Tcp', 'OutRsts') - outRsts).toBe(15);

    // Sent by each client (the socket that connected, SO_LINGER 0), received by each server child.
    const sockets = bySocket(events.filter((e) => e.type === 'transition'));
    for (const r of sent) {
      expect(sequence(sockets.get(r.cookie)!)[0]).toBe('CLOSE->SYN_SENT');
      expect(r).toMatchObject({ dport: PORT, ownerPid: w.pid, ownerComm: 'node' });
    }
    for (const r of received) {
      expect(sequence(sockets.get(r.cookie)!)).toEqual(['LISTEN->SYN_RECV', 'SYN_RECV->ESTABLISHED', 'ESTABLISHED->CLOSE']);
      expect(r).toMatchObject({ sport: PORT, newState: 'ESTABLISHED' });
    }
    // The kernel's own events: the same RSTs (tcp_receive_reset names the socket by its cookie).
    const lines = trace.lines();
    const tfReceived = lines.filter((l) => l.includes('tcp_receive_reset:') && l.includes(`sport=${PORT} `));
    expect(tfReceived.map((l) => BigInt(`0x${/sock_cookie=([0-9a-f]+)/.exec(l)![1]}`)).sort()).toEqual(received.map((r) => r.cookie).sort());
    expect(lines.filter((l) => l.includes('tcp_send_reset:') && l.includes(`dest=127.0.0.1:${PORT} `))).toHaveLength(15);

    const tracker = new Tracker({ clock: clockBoottimeNs, thresholds: { resets: 15 } });
    tracker.ingest(events);
    const storm = tracker.evaluate().find((a) => a.detector === 'rst_storm');
    expect(storm).toMatchObject({ value: 15, labels: { sent: '15', received: '15', pairs: '15' } });
  });

  it('a TCP_USER_TIMEOUT death ends ESTABLISHED in CLOSE with ETIMEDOUT and is no reset', async () => {
    const PORT = 8702;
    const outRsts = snmpCounter(netns, 'Tcp', 'OutRsts');
    const py = spawn('ip', ['netns', 'exec', netns.name, 'python3', USER_TIMEOUT, String(PORT)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const { error } = JSON.parse(await new Promise<string>((resolve) => py.stdout.once('data', (d) => resolve(String(d))))) as { error: string };
    try {
      expect(error).toBe('ETIMEDOUT');
      const events = await col.waitFor((ev) => ev.some((e) => e.type === 'transition' && e.error === 'ETIMEDOUT'));
      const death = events.find((e) => e.type === 'transition' && e.error === 'ETIMEDOUT')!;
      expect(death).toMatchObject({ oldState: 'ESTABLISHED', newState: 'CLOSE', dport: PORT });
      expect(events.filter((e) => e.type === 'reset')).toEqual([]);
      expect(snmpCounter(netns, 'Tcp', 'OutRsts') - outRsts).toBe(0);
      const tracker = new Tracker({ clock: clockBoottimeNs, thresholds: { resets: 1 } });
      tracker.ingest(events);
      expect(tracker.evaluate().filter((a) => a.detector === 'rst_storm')).toEqual([]);
    } finally {
      py.stdin.end();
      await new Promise((resolve) => py.on('close', resolve));
    }
  });
});
