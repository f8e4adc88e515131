/**
 * Same-state transitions (FIN_WAIT1 -> FIN_WAIT1: close() after shutdown(SHUT_WR) before the FIN
 * is acked) leave the state's entry time alone: against python3 -m http.server, which closes
 * that way, and a lingering close held in FIN_WAIT1 by nftables, checked against the kernel's
 * own inet_sock_set_state events in tracefs.
 */
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { clockBoottimeNs } from 'bpf-ts-loader';
import { describe, expect, it } from 'vitest';
import { Tracker, type DwellRecord } from '../../src/track/index.js';
import { eachTestInNamespace, kernelAvailable, TraceInstance, type Collector, type TestNetns } from './helpers.js';

const LINGER = fileURLToPath(new URL('./lingering-close.py', import.meta.url));

/** The kernel's transitions of the sockets on `port` (local or remote), from tracefs: times in ns. */
function kernelTransitions(trace: TraceInstance, port: number) {
  const out: { tNs: number; sport: number; dport: number; from: string; to: string }[] = [];
  for (const l of trace.lines()) {
    const m = /\s(\d+)\.(\d+): inet_sock_set_state: .*protocol=IPPROTO_TCP sport=(\d+) dport=(\d+) .*oldstate=TCP_(\w+) newstate=TCP_(\w+)/.exec(l);
    if (!m || (Number(m[3]) !== port && Number(m[4]) !== port)) continue;
    out.push({ tNs: Number(m[1]) * 1e9 + Number(m[2]!.padEnd(9, '0')), sport: Number(m[3]), dport: Number(m[4]), from: m[5]!, to: m[6]! });
  }
  return out;
}

describe.skipIf(!kernelAvailable)('same-state transitions', () => {
  let netns: TestNetns;
  let col: Collector;
  eachTestInNamespace((n, c) => {
    netns = n;
    col = c;
  });

  it('python3 -m http.server: each connection in FIN_WAIT1 is one record of the whole phase (as tracefs times it), counted once, however often the kernel repeats the state', async () => {
    const PORT = 8901;
    const trace = TraceInstance.forThisTest(['sock/inet_sock_set_state']);
    const server = spawn('ip', ['netns', 'exec', netns.name, 'python3', '-m', 'http.server', String(PORT), '--bind', '127.0.0.1'], { stdio: 'ignore' });
    try {
      for (let i = 0; ; i++) {
        if (execFileSync('ip', ['netns', 'exec', netns.name, 'ss', '-Htln', `( sport = :${PORT} )`], { encoding: 'utf8' }).trim()) break;
        if (i > 200) throw new Error('http.server did not start');
        await sleep(25);
      }
      execFileSync('ip', ['netns', 'exec', netns.name, 'python3', '-c', `import http.client\nfor _ in range(5):\n    c = http.client.HTTPConnection("127.0.0.1", ${PORT}); c.request("GET", "/"); c.getresponse().read(); c.close()`]);
      const events = await col.waitFor((ev) => ev.filter((e) => e.type === 'transition' && e.sport === PORT && e.dport !== 0 && e.newState === 'CLOSE').length >= 5);
      const records: DwellRecord[] = [];
      const tracker = new Tracker({ clock: clockBoottimeNs, onDwell: (r) => records.push(r) });
      tracker.ingest(events);
      const k = kernelTransitions(trace, PORT).filter((t) => t.sport === PORT);
      // The server does it whenever its close() comes before the ACK of its FIN (nearly always
      // here; the client's own close races it): the kernel says how often.
      const same = k.filter((t) => t.from === 'FIN_WAIT1' && t.to === 'FIN_WAIT1');
      expect(same.length).toBeGreaterThan(0);
      expect(tracker.stats().sameStateTransitions).toBe(same.length);
      // One FIN_WAIT1 record per socket that was in FIN_WAIT1, of the whole phase, and none for the repeat.
      const throughFin1 = k.filter((t) => t.from === 'ESTABLISHED' && t.to === 'FIN_WAIT1');
      const fin1 = records.filter((r) => r.state === 'FIN_WAIT1' && r.sport === PORT);
      expect(fin1).toHaveLength(throughFin1.length);
      expect(records.some((r) => r.state === 'FIN_WAIT1' && r.nextState === 'FIN_WAIT1')).toBe(false);
      for (const r of fin1) {
        const mine = k.filter((t) => t.dport === r.dport);
        const entered = mine.find((t) => t.from === 'ESTABLISHED' && t.to === 'FIN_WAIT1')!.tNs;
        const left = mine.find((t) => t.from === 'FIN_WAIT1' && t.to !== 'FIN_WAIT1')!.tNs;
        expect(r.precision).toBe('exact');
        expect(Math.abs(Number(r.dwellNs) - (left - entered))).toBeLessThan(20_000);
      }
      // The histogram counts every socket's FIN_WAIT1 once (a client that closed first has one too).
      const allFin1 = kernelTransitions(trace, PORT).filter((t) => t.from === 'ESTABLISHED' && t.to === 'FIN_WAIT1');
      expect(tracker.takeHistograms().totals().get('FIN_WAIT1')!.totalCount).toBe(allFin1.length);
    } finally {
      server.kill('SIGTERM');
      await new Promise((resolve) => server.on('exit', resolve));
    }
  });

  it('a lingering close held in FIN_WAIT1 for 600 ms is one exact FIN_WAIT1 dwell of ~600 ms, not 300 + 300', async () => {
    const PORT = 8902;
    const trace = TraceInstance.forThisTest(['sock/inet_sock_set_state']);
    const out = execFileSync('ip', ['netns', 'exec', netns.name, 'python3', LINGER, String(PORT), '600'], { encoding: 'utf8' });
    const { clientPort } = JSON.parse(out) as { clientPort: number };
    const events = await col.waitFor((ev) => ev.some((e) => e.type === 'transition' && e.sport === PORT && e.oldState === 'FIN_WAIT1' && e.newState === 'FIN_WAIT2'));
    const k = kernelTransitions(trace, PORT).filter((t) => t.sport === PORT && t.dport === clientPort);
    expect(k.map((t) => `${t.from}->${t.to}`)).toEqual(['LISTEN->SYN_RECV', 'SYN_RECV->ESTABLISHED', 'ESTABLISHED->FIN_WAIT1', 'FIN_WAIT1->FIN_WAIT1', 'FIN_WAIT1->FIN_WAIT2', 'FIN_WAIT2->CLOSE']);
    const whole = k[4]!.tNs - k[2]!.tNs;
    expect(whole).toBeGreaterThan(550e6);
    const left = events.find((e) => e.type === 'transition' && e.sport === PORT && e.oldState === 'FIN_WAIT1' && e.newState === 'FIN_WAIT2')!;
    // The kernel's own dwell (entry time from socket storage) is the whole phase.
    expect(Math.abs(Number(left.dwellNs) - whole)).toBeLessThan(20_000);
    const records: DwellRecord[] = [];
    const tracker = new Tracker({ clock: clockBoottimeNs, onDwell: (r) => records.push(r) });
    tracker.ingest(events);
    const fin1 = records.filter((r) => r.state === 'FIN_WAIT1' && r.sport === PORT);
    expect(fin1).toHaveLength(1);
    expect(Math.abs(Number(fin1[0]!.dwellNs) - whole)).toBeLessThan(20_000);
  });
});
