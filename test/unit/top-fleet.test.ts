import { describe, expect, it } from 'vitest';
import { encodeAlert, encodeDwell, encodeSummary, type Header } from '../../src/publish/wire.js';
import { HistogramSet } from '../../src/track/histograms.js';
import { TcpState } from '../../src/kernel/abi.js';
import { FleetModel } from '../../src/top/fleet.js';
import { render } from '../../src/top/render.js';
import { initialView } from '../../src/top/view.js';
import type { Alert, DwellRecord } from '../../src/track/index.js';

const header = (host: string, seq: number): Header => ({
  hostId: host, bootId: 'b', agentVersion: '0.1.0', epoch: 1, seq, bootToUnixNs: 1_700_000_000_000_000_000 - 1_000_000_000_000,
  drops: { ringFull: 2, malformed: 0, spoolDropped: 1 }, sentAtBootNs: 1_000_000_000_000,
});

function summary(host: string, seq: number, counts: Record<string, number>) {
  const h = new HistogramSet();
  for (let i = 1; i <= 10; i++) h.record(TcpState.ESTABLISHED, false, BigInt(i) * 1_000_000_000n, 4026531840, 0n, null);
  return encodeSummary(header(host, seq), {
    table: { atNs: 1_000_000_000_000n, total: counts, byNetns: [{ netns: 4026531840, counts }], sockets: 0 },
    histograms: h.encode(),
    stuck: [{ cookie: 5n, netns: 4026531840, cgroupId: 0n, family: 'inet6', saddr: '::1', sport: 443, daddr: '::1', dport: 50000, ownerPid: 77, ownerComm: 'nginx', state: 'CLOSE_WAIT', timewait: false, ageNs: 125_000_000_000n, ageIsLowerBound: true }],
    eventsTotal: 1000,
    spoolBytes: 0,
    spoolMessages: 0,
  });
}

describe('top --nats: the fleet from its messages', () => {
  it('shows each host from its summaries, the dwell merged over hosts, and the alerts linked to explain', () => {
    const m = new FleetModel('nats://n:4222');
    m.ingest('tcpdwell.v1.web-1.summary', summary('web-1', 1, { ESTABLISHED: 3, CLOSE_WAIT: 1 }), 5000);
    m.ingest('tcpdwell.v1.web-2.summary', summary('web-2', 1, { ESTABLISHED: 2, TIME_WAIT: 7 }), 5000);
    const alert: Alert = { detector: 'close_wait_leak', key: 'close_wait_leak/4026531840/77', netns: 4026531840, summary: 'nginx (pid 77) holds 1 socket in CLOSE_WAIT', explanation: 'x', value: 1, threshold: 1, sinceNs: 999_000_000_000n, atNs: 1_000_000_000_000n, ownerPid: 77, ownerComm: 'nginx', labels: {} };
    m.ingest('tcpdwell.v1.web-1.alerts', encodeAlert(header('web-1', 2), alert, 'firing'), 5000);
    const failed: DwellRecord = { cookie: 1n, netns: 1, cgroupId: 0n, family: 'inet', saddr: '10.0.0.1', sport: 1, daddr: '10.0.0.2', dport: 5432, ownerPid: 3, ownerComm: 'app', state: 'SYN_SENT', timewait: false, dwellNs: 1n, enteredNs: 0n, leftNs: 1n, precision: 'exact', nextState: 'CLOSE', timewaitEnd: null, error: 'ETIMEDOUT', vitals: { srttUs: 0, totalRetrans: 6, bytesAcked: 0, bytesReceived: 0 }, resetBy: null };
    // a connection reset by its peer after 3 retransmits, on a 12 ms path
    const reset: DwellRecord = { ...failed, cookie: 2n, sport: 2, state: 'ESTABLISHED', error: 'ECONNRESET', vitals: { srttUs: 12_000, totalRetrans: 3, bytesAcked: 10_485_762, bytesReceived: 1_300 }, resetBy: 'received' };
    m.ingest('tcpdwell.v1.web-2.dwell', encodeDwell([failed, reset], header('web-2', 2)), 5000);
    m.ingest('tcpdwell.v1.web-2.summary', new Uint8Array([0xff, 0xff, 0xff]), 5000);

    const data = m.tick(6000);
    expect(data.hosts.map((h) => h.host)).toEqual(['web-1', 'web-2']);
    expect(data.dwell.all.ESTABLISHED!.count).toBe(20);
    expect(data.alerts[0]).toMatchObject({ host: 'web-1', firing: true, state: 'CLOSE_WAIT', sinceMs: 1_700_000_000_000 - 1000 });
    expect(data.failures[0]).toMatchObject({ host: 'web-2', reason: 'ETIMEDOUT', destination: '10.0.0.2:5432', count: 1, owner: 'app/3' });
    expect(data.status).toMatch(/1 of 5 messages could not be decoded/);

    const lines = render(data, initialView(), { cols: 200, rows: 60, nowMs: 6000, intervalS: 1, unicode: false, interactive: true }).map((l) => l.text);
    expect(lines.find((l) => l.startsWith('ESTABLISHED'))).toMatch(/^ESTABLISHED\s+ESTAB\s+5\s/);
    expect(lines.find((l) => l.includes('web-1') && l.includes('CLOSE_WAIT') && l.includes('nginx/77'))).toMatch(/≥2\.08min\s+\[::1\]:443\s+\[::1\]:50000/);
    expect(lines.find((l) => l.startsWith('FIRING'))).toMatch(/→ tcpdwell explain CLOSE_WAIT$/);
    expect(lines.find((l) => l.startsWith('DROPS'))).toMatch(/ring full 4 · .* spool dropped 2/);
    // the closes from the dwell batch, through the wire: totals, then the worst first
    expect(lines).toContain('CLOSES (since start): 2 · reset 1 received, 0 sent before close · 9 segments retransmitted by 2');
    const worst = lines.filter((l) => l.startsWith('web-2') && l.includes('->CLOSE'));
    expect(worst[0]).toMatch(/^web-2\s+rtx 6\s+rtt -\s+10\.0\.0\.1:1\s+10\.0\.0\.2:5432\s+app\/3\s+SYN_SENT->CLOSE\s+↑0B ↓0B$/);
    expect(worst[1]).toMatch(/^web-2\s+rtx 3\s+rtt 12\.0ms\s+10\.0\.0\.1:2\s+10\.0\.0\.2:5432\s+app\/3\s+ESTABLISHED->CLOSE\s+↑10\.0MB ↓1\.27KB RST received$/);
    // one host picked with tab
    const one = render(data, initialView({ host: 'web-2' }), { cols: 200, rows: 60, nowMs: 6000, intervalS: 1, unicode: false, interactive: true }).map((l) => l.text);
    expect(one.find((l) => l.startsWith('TIME_WAIT'))).toMatch(/^TIME_WAIT\s+TIME-WAIT\s+7\s/);
    expect(one.some((l) => l.startsWith('FIRING'))).toBe(false);
  });

  it('marks an alert resolved when the agent says so', () => {
    const m = new FleetModel('x');
    const a: Alert = { detector: 'rst_storm', key: 'rst_storm/1', netns: 1, summary: 's', explanation: '', value: 1, threshold: 1, sinceNs: 1n, atNs: 2n, ownerPid: null, ownerComm: null, labels: {} };
    m.ingest('tcpdwell.v1.h.alerts', encodeAlert(header('h', 1), a, 'firing'), 0);
    m.ingest('tcpdwell.v1.h.alerts', encodeAlert(header('h', 2), a, 'resolved'), 0);
    expect(m.tick(0).alerts).toMatchObject([{ firing: false, state: 'ESTABLISHED' }]);
  });
});
