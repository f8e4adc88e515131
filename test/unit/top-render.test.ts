import { describe, expect, it } from 'vitest';
import { HistogramSet } from '../../src/track/histograms.js';
import { TcpState } from '../../src/kernel/abi.js';
import { AlertBook, dwellTables, FailureBook, History, summarizeHistogram, type HistorySample, type HostView, type SocketRow, type TopData } from '../../src/top/model.js';
import { fit, render, spark, visibleCounts, type RenderOptions } from '../../src/top/render.js';
import { initialView, type ViewState } from '../../src/top/view.js';
import { frame, parseKeys } from '../../src/top/terminal.js';
import type { DwellRecord } from '../../src/track/types.js';

const NS = 4026532177;
const OTHER = 4026531840;

const sock = (state: string, ageS: number, over: Partial<SocketRow> = {}): SocketRow => ({
  host: 'web-1', cookie: 1n, state, timewait: state === 'TIME_WAIT', ageNs: BigInt(ageS * 1e9), ageIsLowerBound: false,
  netns: NS, cgroupId: 0n, family: 'inet', saddr: '127.0.0.1', sport: 8080, daddr: '127.0.0.1', dport: 40000,
  ownerPid: 42, ownerComm: 'node', ...over,
});

function host(over: Partial<HostView> = {}): HostView {
  const set = new HistogramSet();
  for (let i = 1; i <= 100; i++) set.record(TcpState.CLOSE_WAIT, false, BigInt(i) * 1_000_000n, NS, 0n, null); // 1..100 ms
  set.record(TcpState.TIME_WAIT, true, 60_000_000_000n, NS, 0n, null);
  return {
    host: 'web-1', atMs: 1_000_000, sockets: null, socketsTruncated: false, events: 123,
    byNetns: [
      { netns: NS, counts: { ESTABLISHED: 4, CLOSE_WAIT: 2, LISTEN: 1, TIME_WAIT: 3 } },
      { netns: OTHER, counts: { ESTABLISHED: 10 } },
    ],
    stuck: [sock('CLOSE_WAIT', 90), sock('ESTABLISHED', 5, { sport: 40001, dport: 8080 }), sock('LISTEN', 500), sock('ESTABLISHED', 7, { netns: OTHER, ownerComm: 'curl', ownerPid: 7 })],
    dwell: dwellTables(set),
    drops: [['ring full', 0], ['malformed', 0]],
    ...over,
  };
}

function data(over: Partial<TopData> = {}, h = host()): TopData {
  return { source: 'local web-1', fleet: false, hosts: [h], dwell: h.dwell, history: [], alerts: [], failures: [], status: null, ...over };
}

const opts: RenderOptions = { cols: 160, rows: 50, nowMs: 1_000_000, intervalS: 1, unicode: true, interactive: true };
const text = (d: TopData, v: ViewState = initialView(), o: Partial<RenderOptions> = {}) => render(d, v, { ...opts, ...o }).map((l) => l.text);
/** STATE → COUNT as the state table shows them. */
function table(lines: string[]): [string, number][] {
  const start = lines.findIndex((l) => l.startsWith('STATE ') && l.includes('COUNT'));
  const out: [string, number][] = [];
  for (const l of lines.slice(start + 1)) {
    const m = /^(\S+)\s+(\S+)\s+(\d+)\b/.exec(l);
    if (!m) break;
    out.push([m[1]!, Number(m[3])]);
  }
  return out;
}

describe('top: the frame', () => {
  it('shows counts per state summed over namespaces, largest first, with the total', () => {
    const lines = text(data());
    expect(table(lines)).toEqual([['ESTABLISHED', 14], ['TIME_WAIT', 3], ['CLOSE_WAIT', 2], ['LISTEN', 1]]);
    expect(lines.find((l) => l.startsWith('total'))).toMatch(/total\s+20$/);
    expect(lines[0]).toMatch(/^tcpdwell top · local web-1 · .* · 20 sockets · 123 events · every 1s$/);
  });

  it('shows ss names beside kernel names, so the screen compares with ss -tan', () => {
    const row = text(data()).find((l) => l.startsWith('ESTABLISHED'))!;
    expect(row).toMatch(/^ESTABLISHED\s+ESTAB\s+14/);
  });

  it('shows dwell percentiles from the HDR histograms; TIME_WAIT shows its timewait phase', () => {
    const lines = text(data());
    const cw = lines.find((l) => l.startsWith('CLOSE_WAIT'))!;
    // 1..100 ms: p50 ≈ 50 ms, p99 ≈ 99 ms, max ≈ 100 ms (2 significant digits)
    expect(cw).toMatch(/50\.\dms\s+90\.\dms\s+99\.\dms\s+100ms\s+100\s/);
    expect(lines.find((l) => l.startsWith('TIME_WAIT'))).toMatch(/1\.00min\s+1\.00min\s+1\.00min\s+1\.00min\s+1\s/);
  });

  it('sorts by state order, by p99 and by change', () => {
    expect(table(text(data(), initialView({ sort: 'state' }))).map(([s]) => s)).toEqual(['ESTABLISHED', 'TIME_WAIT', 'CLOSE_WAIT', 'LISTEN']);
    expect(table(text(data(), initialView({ sort: 'p99' }))).map(([s]) => s).slice(0, 2)).toEqual(['TIME_WAIT', 'CLOSE_WAIT']);
    const history: HistorySample[] = [
      { atMs: 990_000, hosts: { 'web-1': [{ netns: NS, counts: { ESTABLISHED: 4, CLOSE_WAIT: 2, LISTEN: 1, TIME_WAIT: 3 } }, { netns: OTHER, counts: { ESTABLISHED: 10 } }] } },
      { atMs: 1_000_000, hosts: { 'web-1': [{ netns: NS, counts: { ESTABLISHED: 4, CLOSE_WAIT: 2, LISTEN: 1, TIME_WAIT: 3 } }, { netns: OTHER, counts: { ESTABLISHED: 10 } }] } },
    ];
    history[0]!.hosts['web-1']![0]!.counts = { ESTABLISHED: 4, CLOSE_WAIT: 0, LISTEN: 1, TIME_WAIT: 3 };
    const lines = text(data({ history }), initialView({ sort: 'trend' }));
    expect(table(lines)[0]![0]).toBe('CLOSE_WAIT');
    expect(lines.find((l) => l.startsWith('CLOSE_WAIT'))).toMatch(/^CLOSE_WAIT\s+CLOSE-WAIT\s+2\s+\+2\s/);
  });

  it('filters by namespace: counts, dwell and sockets of that namespace only', () => {
    const v = initialView({ netns: OTHER });
    const lines = text(data(), v);
    expect(table(lines)).toEqual([['ESTABLISHED', 10]]);
    expect(lines.filter((l) => l.includes('curl/7'))).toHaveLength(1);
    expect(lines.some((l) => l.includes('node/42'))).toBe(false);
  });

  it('filters counts by port or process only from a full socket list, and says so otherwise', () => {
    const v = initialView({ process: 'curl' });
    expect(visibleCounts(data(), v).counts).toBeNull();
    expect(text(data(), v).join('\n')).toMatch(/summaries do not carry/);
    const h = host({ sockets: [sock('CLOSE_WAIT', 1), sock('ESTABLISHED', 1, { ownerComm: 'curl', ownerPid: 7 }), sock('ESTABLISHED', 2, { ownerComm: 'curl', ownerPid: 7, dport: 443 })] });
    expect(visibleCounts(data({}, h), v).counts).toEqual({ ESTABLISHED: 2 });
    expect(visibleCounts(data({}, h), initialView({ port: 443 })).counts).toEqual({ ESTABLISHED: 1 });
    expect(visibleCounts(data({}, h), initialView({ process: '7' })).counts).toEqual({ ESTABLISHED: 2 });
  });

  it('lists the oldest sockets first with owner and addresses, leaving listeners out', () => {
    const lines = text(data());
    const i = lines.findIndex((l) => l.startsWith('OLDEST SOCKETS'));
    expect(lines[i + 2]).toMatch(/^CLOSE_WAIT\s+1\.50min\s+127\.0\.0\.1:8080\s+127\.0\.0\.1:40000\s+node\/42\s+4026532177$/);
    expect(lines.slice(i).some((l) => l.startsWith('LISTEN'))).toBe(false);
  });

  it('counts connect failures by reason and links alerts to explain', () => {
    const failures = new FailureBook();
    const rec = (error: string, dport: number): DwellRecord => ({
      cookie: 1n, netns: NS, cgroupId: 0n, family: 'inet', saddr: '10.0.0.1', sport: 5000, daddr: '10.0.0.9', dport,
      ownerPid: 9, ownerComm: 'curl', state: 'SYN_SENT', timewait: false, dwellNs: 1000n, enteredNs: 0n, leftNs: 1000n,
      precision: 'exact', nextState: 'CLOSE', timewaitEnd: null, error, vitals: null, resetBy: null,
    });
    for (let i = 0; i < 3; i++) failures.add('web-1', rec('ECONNREFUSED', 81), 999_000);
    failures.add('web-1', rec('ETIMEDOUT', 82), 999_500);
    failures.add('web-1', { ...rec('ECONNREFUSED', 81), state: 'ESTABLISHED' }, 999_500); // not a connect
    const alerts = new AlertBook();
    alerts.sync('web-1', [{ detector: 'close_wait_leak', key: 'close_wait_leak/1/42', netns: NS, summary: 'node (pid 42) holds 2 sockets in CLOSE_WAIT', explanation: '', value: 2, threshold: 1, sinceNs: 0n, atNs: 0n, ownerPid: 42, ownerComm: 'node', labels: {} }], 1_000_000, () => 990_000);
    const lines = text(data({ failures: failures.list(), alerts: alerts.list() }));
    expect(lines).toContain('CONNECT FAILURES (since start): ECONNREFUSED 3 · ETIMEDOUT 1');
    expect(lines.find((l) => l.includes('10.0.0.9:81'))).toMatch(/^\s+3\s+ECONNREFUSED\s+10\.0\.0\.9:81\s+curl\/9\s+last 1\.00s ago$/);
    expect(lines.find((l) => l.startsWith('FIRING'))).toMatch(/close_wait_leak\s+node \(pid 42\) holds 2 sockets in CLOSE_WAIT → tcpdwell explain CLOSE_WAIT$/);
    // it resolves when the tracker no longer reports it
    alerts.sync('web-1', [], 1_005_000, () => 0);
    expect(alerts.list()[0]).toMatchObject({ firing: false, atMs: 1_005_000, state: 'CLOSE_WAIT' });
  });

  it('fits the terminal: no line wider than the columns, no more lines than the rows', () => {
    for (const [cols, rows] of [[80, 24], [160, 50], [40, 10]] as const) {
      const lines = render(data(), initialView(), { ...opts, cols, rows });
      expect(lines.length).toBeLessThanOrEqual(rows);
      for (const l of lines) expect([...l.text].length).toBeLessThanOrEqual(cols);
    }
    expect(fit('abcdef', 4)).toBe('abc…');
  });

  it('shows the help, an explanation, a prompt and the pause in the frame', () => {
    expect(text(data(), initialView({ help: true }))).toContain('keys');
    expect(text(data(), initialView({ explain: 'CLOSE_WAIT' }))[3]).toMatch(/^CLOSE_WAIT \(ss: CLOSE-WAIT\)/);
    expect(text(data(), initialView({ prompt: { field: 'port', text: '44' } })).at(-1)).toMatch(/filter by port .*: 44_$/);
    expect(text(data(), initialView({ paused: true }))[0]).toMatch(/PAUSED$/);
  });

  it('plain text: no key help, no escape codes', () => {
    const lines = render(data(), initialView(), { ...opts, rows: Infinity, interactive: false });
    expect(lines[1]!.text).not.toMatch(/keys:/);
    expect(frame(lines, 'plain')).not.toMatch(/\x1b\[[0-9;]*m/);
    expect(frame(lines, 'color')).toMatch(/\x1b\[7mtcpdwell top/);
  });

  it('draws bars and sparklines in blocks or ASCII', () => {
    expect(spark([0, 1, 2, 4, 8], true)).toBe(' ▁▂▄█');
    expect(spark([0, 1, 8], false)).toBe(' :@');
    const h = new HistogramSet();
    h.record(TcpState.ESTABLISHED, false, 5_000n, NS, 0n, null); // 5 µs
    h.record(TcpState.ESTABLISHED, false, 2_000_000_000n, NS, 0n, null); // 2 s
    const s = summarizeHistogram(h.totals().get('ESTABLISHED')!);
    expect(s.bars).toEqual([1, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
  });
});

describe('top: keys from the terminal', () => {
  it('turns raw input into keys', () => {
    expect(parseKeys('sq\r\x1b[A\x1b\x7f\t\x03 ')).toEqual(['s', 'q', 'enter', 'up', 'escape', 'backspace', 'tab', 'ctrl-c', ' ']);
  });

  it('keeps a short history for the trend', () => {
    const hist = new History(3);
    for (let i = 0; i < 5; i++) hist.push(i, [host()]);
    expect(hist.samples.map((s) => s.atMs)).toEqual([2, 3, 4]);
  });
});
