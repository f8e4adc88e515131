/**
 * One frame of `tcpdwell top`: data + view + terminal size → lines. Pure, so it is tested
 * without a terminal; styles are names the terminal layer maps to escape codes (or drops,
 * for plain text).
 */
import { TcpState } from '../kernel/abi.js';
import { formatBytes, formatDuration } from '../decode/index.js';
import { explainState, type StateName } from '../track/explain.js';
import { ssStateName } from '../track/states.js';
import type { StateCounts } from '../track/types.js';
import { BAR_LABELS, type DwellSummary, type DwellTable, type HostView, type SocketRow, type TopData } from './model.js';
import { socketMatches, type ViewState } from './view.js';

export type LineStyle = 'header' | 'title' | 'columns' | 'alert' | 'dim' | 'prompt';
export interface Line {
  text: string;
  style?: LineStyle;
}

export interface RenderOptions {
  cols: number;
  /** lines available; Infinity for plain text */
  rows: number;
  nowMs: number;
  /** refresh interval, for the header */
  intervalS: number;
  /** block characters for bars and sparklines (else ASCII) */
  unicode: boolean;
  /** false when keys cannot be read (plain text): no key help */
  interactive: boolean;
}

const STATE_ORDER = new Map<string, number>(Object.entries(TcpState));
const SPARK_UNICODE = ' ▁▂▃▄▅▆▇█';
const SPARK_ASCII = ' .:-=+*#%@';
/** Seconds back the Δ column compares with. */
export const TREND_BACK_S = 10;

/** Text cut to `cols` columns (one column per code point: everything drawn here is narrow). */
export function fit(text: string, cols: number): string {
  const cps = [...text];
  return cps.length <= cols ? text : cps.slice(0, Math.max(0, cols - 1)).join('') + '…';
}

const us = (v: number) => formatDuration(BigInt(Math.round(v * 1000)));
const pad = (s: string, n: number) => s.padEnd(n);
const lpad = (s: string, n: number) => s.padStart(n);

/** A bar of values scaled to the largest, one character each. */
export function spark(values: readonly number[], unicode: boolean): string {
  const chars = unicode ? SPARK_UNICODE : SPARK_ASCII;
  const max = Math.max(0, ...values);
  return values.map((v) => (v <= 0 || max === 0 ? chars[0] : chars[Math.max(1, Math.ceil((v / max) * (chars.length - 1)))])).join('');
}

function addCounts(into: StateCounts, c: StateCounts): void {
  for (const [s, n] of Object.entries(c)) into[s] = (into[s] ?? 0) + n;
}

const hostsOf = (data: TopData, view: ViewState) => data.hosts.filter((h) => view.host === null || h.host === view.host);

/** Counts by netns and host filter (the only ones summaries carry per socket state). */
function countsFrom(byHost: Record<string, { netns: number; counts: StateCounts }[]>, view: ViewState): StateCounts {
  const out: StateCounts = {};
  for (const [host, list] of Object.entries(byHost)) {
    if (view.host !== null && host !== view.host) continue;
    for (const n of list) if (view.netns === null || n.netns === view.netns) addCounts(out, n.counts);
  }
  return out;
}

/** The counts on screen: exact under netns/host filters; under port/process filters only from a full socket list. */
export function visibleCounts(data: TopData, view: ViewState): { counts: StateCounts | null; note: string | null } {
  const hosts = hostsOf(data, view);
  if (view.port === null && view.process === null) {
    return { counts: countsFrom(Object.fromEntries(hosts.map((h) => [h.host, h.byNetns])), view), note: null };
  }
  if (hosts.some((h) => h.sockets === null)) {
    return { counts: null, note: 'counts by port or process need the socket list, which summaries do not carry: filters apply to the socket lists below' };
  }
  const counts: StateCounts = {};
  for (const h of hosts) for (const s of h.sockets!) if (socketMatches(s, view)) counts[s.state] = (counts[s.state] ?? 0) + 1;
  return { counts, note: hosts.some((h) => h.socketsTruncated) ? 'socket list capped: counts are lower bounds' : null };
}

function dwellFor(data: TopData, view: ViewState): DwellTable {
  const source = view.host !== null ? data.hosts.find((h) => h.host === view.host)?.dwell : data.dwell;
  if (!source) return {};
  return view.netns !== null ? (source.byNetns[view.netns] ?? {}) : source.all;
}

interface StateRow {
  label: string;
  state: string;
  count: number | null;
  delta: number | null;
  trend: number[];
  dwell: DwellSummary | undefined;
}

function stateRows(data: TopData, view: ViewState, counts: StateCounts | null, trendWidth: number): StateRow[] {
  const dwell = dwellFor(data, view);
  const filteredByCount = view.port !== null || view.process !== null;
  const samples = filteredByCount ? [] : data.history.map((s) => ({ atMs: s.atMs, counts: countsFrom(s.hosts, view) }));
  const last = samples.at(-1);
  const back = last ? (samples.find((s) => s.atMs >= last.atMs - TREND_BACK_S * 1000) ?? last) : undefined;
  const names = new Set<string>([...Object.keys(counts ?? {}), ...Object.keys(dwell).filter((k) => !k.includes('/')), ...(dwell['TIME_WAIT/timewait'] ? ['TIME_WAIT'] : [])]);
  const rows: StateRow[] = [...names].map((state) => ({
    label: state,
    state,
    count: counts ? (counts[state] ?? 0) : null,
    delta: back && counts ? (counts[state] ?? 0) - (back.counts[state] ?? 0) : null,
    trend: samples.slice(-trendWidth).map((s) => s.counts[state] ?? 0),
    // A full socket never dwells in TIME_WAIT: that row shows the timewait phase.
    dwell: state === 'TIME_WAIT' ? dwell['TIME_WAIT/timewait'] : dwell[state],
  }));
  // An orphaned FIN_WAIT2 (held by a timewait sock) is its own distribution: its own row, counted under FIN_WAIT2.
  const orphan = dwell['FIN_WAIT2/timewait'];
  if (orphan) rows.push({ label: 'FIN_WAIT2/orphan', state: 'FIN_WAIT2', count: null, delta: null, trend: [], dwell: orphan });
  const order = (r: StateRow) => (STATE_ORDER.get(r.state) ?? 99) + (r.count === null ? 0.5 : 0);
  const cmp: Record<ViewState['sort'], (a: StateRow, b: StateRow) => number> = {
    count: (a, b) => (b.count ?? -1) - (a.count ?? -1) || order(a) - order(b),
    state: (a, b) => order(a) - order(b),
    p99: (a, b) => (b.dwell?.p99Us ?? -1) - (a.dwell?.p99Us ?? -1) || order(a) - order(b),
    trend: (a, b) => Math.abs(b.delta ?? 0) - Math.abs(a.delta ?? 0) || order(a) - order(b),
  };
  return rows.sort(cmp[view.sort]);
}

const fmtDelta = (d: number | null) => (d === null ? '' : d > 0 ? `+${d}` : d < 0 ? `${d}` : '0');
const endpoint = (addr: string, port: number) => (addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`);
const clock = (ms: number) => new Date(ms).toTimeString().slice(0, 8);
const ago = (ms: number) => (ms < 1000 ? 'now' : `${formatDuration(BigInt(Math.round(ms)) * 1_000_000n)} ago`);

const TREND_W = 16;

function stateSection(data: TopData, view: ViewState, o: RenderOptions): Line[] {
  const { counts, note } = visibleCounts(data, view);
  const rows = stateRows(data, view, counts, TREND_W);
  const out: Line[] = [];
  const dist = `DWELL HISTOGRAM ${BAR_LABELS[0]}…${BAR_LABELS.at(-2)}+`;
  out.push({
    text: `${pad('STATE', 17)} ${pad('SS', 14)} ${lpad('COUNT', 7)} ${lpad(`Δ${TREND_BACK_S}s`, 6)}  ${pad('TREND', TREND_W)}  ${lpad('p50', 8)} ${lpad('p90', 8)} ${lpad('p99', 8)} ${lpad('max', 8)} ${lpad('DWELLS', 7)}  ${dist}`,
    style: 'columns',
  });
  let total = 0;
  for (const r of rows) {
    if (r.count !== null) total += r.count;
    const d = r.dwell;
    const cols = d
      ? `${lpad(us(d.p50Us), 8)} ${lpad(us(d.p90Us), 8)} ${lpad(us(d.p99Us), 8)} ${lpad(us(d.maxUs), 8)} ${lpad(String(d.count), 7)}  ${spark(d.bars, o.unicode)}`
      : `${lpad('-', 8)} ${lpad('-', 8)} ${lpad('-', 8)} ${lpad('-', 8)} ${lpad('0', 7)}`;
    const ss = r.label === r.state ? ssStateName(r.state) : '';
    out.push({
      text: `${pad(r.label, 17)} ${pad(ss, 14)} ${lpad(r.count === null ? '' : String(r.count), 7)} ${lpad(fmtDelta(r.delta), 6)}  ${pad(spark(r.trend, o.unicode), TREND_W)}  ${cols}`.trimEnd(),
    });
  }
  if (rows.length === 0) out.push({ text: counts === null ? '  (no counts under this filter)' : '  (no sockets)', style: 'dim' });
  if (counts !== null) out.push({ text: `${pad('total', 17)} ${pad('', 14)} ${lpad(String(total), 7)}`, style: 'dim' });
  if (note) out.push({ text: `  ${note}`, style: 'dim' });
  return out;
}

function visibleSockets(data: TopData, view: ViewState): SocketRow[] {
  const out: SocketRow[] = [];
  for (const h of hostsOf(data, view)) for (const s of h.sockets ?? h.stuck) if (socketMatches(s, view)) out.push(s);
  // Listeners live as long as their service: they are not "stuck".
  return out.filter((s) => s.state !== 'LISTEN').sort((a, b) => (b.ageNs > a.ageNs ? 1 : b.ageNs < a.ageNs ? -1 : 0));
}

function stuckSection(data: TopData, view: ViewState, max: number): Line[] {
  const list = visibleSockets(data, view);
  const fleet = data.fleet;
  const out: Line[] = [
    { text: 'OLDEST SOCKETS (time in their state so far; listeners left out)', style: 'title' },
    { text: `${fleet ? pad('HOST', 16) + ' ' : ''}${pad('STATE', 17)} ${lpad('AGE', 9)}  ${pad('LOCAL', 28)} ${pad('REMOTE', 28)} ${pad('OWNER', 22)} NETNS`, style: 'columns' },
  ];
  for (const s of list.slice(0, Math.max(0, max))) {
    const state = s.timewait && s.state !== 'TIME_WAIT' ? `${s.state}/orphan` : s.state;
    out.push({
      text:
        `${fleet ? pad(s.host, 16) + ' ' : ''}${pad(state, 17)} ${lpad(`${s.ageIsLowerBound ? '≥' : ''}${formatDuration(s.ageNs)}`, 9)}  ` +
        `${pad(endpoint(s.saddr, s.sport), 28)} ${pad(endpoint(s.daddr, s.dport), 28)} ${pad(s.ownerPid !== null ? `${s.ownerComm ?? '?'}/${s.ownerPid}` : '-', 22)} ${s.netns}`,
    });
  }
  if (list.length === 0) out.push({ text: '  (none)', style: 'dim' });
  return out;
}

function failureSection(data: TopData, view: ViewState, max: number, nowMs: number): Line[] {
  const list = data.failures
    .filter((f) => (view.host === null || f.host === view.host) && (view.netns === null || f.netns === view.netns))
    .filter((f) => view.port === null || f.destination.endsWith(`:${view.port}`))
    .filter((f) => view.process === null || (f.owner ?? '').toLowerCase().includes(view.process.toLowerCase()))
    .sort((a, b) => b.count - a.count || b.lastMs - a.lastMs);
  const byReason = new Map<string, number>();
  for (const f of list) byReason.set(f.reason, (byReason.get(f.reason) ?? 0) + f.count);
  const reasons = [...byReason].sort((a, b) => b[1] - a[1]).map(([r, n]) => `${r} ${n}`).join(' · ');
  const out: Line[] = [{ text: `CONNECT FAILURES (since start)${reasons ? `: ${reasons}` : ''}`, style: 'title' }];
  for (const f of list.slice(0, Math.max(0, max))) {
    out.push({ text: `${data.fleet ? pad(f.host, 16) + ' ' : ''}${lpad(String(f.count), 6)}  ${pad(f.reason, 13)} ${pad(f.destination, 30)} ${pad(f.owner ?? '-', 22)} last ${ago(nowMs - f.lastMs)}` });
  }
  if (list.length === 0) out.push({ text: '  (none)', style: 'dim' });
  return out;
}

/** CLOSES: every connection's close since start (resets both ways, retransmits), and the worst few. */
function closesSection(data: TopData, view: ViewState, max: number): Line[] {
  const c = data.closes;
  if (!c) return [];
  const out: Line[] = [
    {
      text: `CLOSES (since start): ${c.closes} · reset ${c.resetReceived} received, ${c.resetSent} sent before close · ${c.retransmitted} segments retransmitted by ${c.withRetrans}`,
      style: 'title',
    },
  ];
  const list = c.worst
    .filter((w) => (view.host === null || w.host === view.host) && (view.netns === null || w.netns === view.netns))
    .filter((w) => view.port === null || w.local.endsWith(`:${view.port}`) || w.remote.endsWith(`:${view.port}`))
    .filter((w) => view.process === null || (w.owner ?? '').toLowerCase().includes(view.process.toLowerCase()))
    .filter((w) => w.totalRetrans > 0 || w.srttUs > 0);
  for (const w of list.slice(0, Math.max(0, max))) {
    out.push({
      text:
        `${data.fleet ? pad(w.host, 16) + ' ' : ''}${lpad(`rtx ${w.totalRetrans}`, 9)} ${lpad(w.srttUs ? `rtt ${formatDuration(BigInt(w.srttUs) * 1000n)}` : 'rtt -', 12)}  ` +
        `${pad(w.local, 28)} ${pad(w.remote, 28)} ${pad(w.owner ?? '-', 22)} ${pad(`${w.state}->CLOSE`, 18)} ↑${formatBytes(w.bytesAcked)} ↓${formatBytes(w.bytesReceived)}${w.resetBy ? ` RST ${w.resetBy}` : ''}`,
    });
  }
  return out;
}

function alertSection(data: TopData, view: ViewState, max: number): Line[] {
  const list = data.alerts.filter((a) => (view.host === null || a.host === view.host) && (view.netns === null || a.netns === view.netns));
  const firing = list.filter((a) => a.firing).length;
  const out: Line[] = [{ text: `ALERTS (${firing} firing; e explains the newest)`, style: 'title' }];
  for (const a of list.slice(0, Math.max(0, max))) {
    const link = a.state ? ` → tcpdwell explain ${a.state}` : '';
    out.push({
      text: `${a.firing ? 'FIRING  ' : 'resolved'} ${clock(a.firing ? a.sinceMs : a.atMs)} ${data.fleet ? pad(a.host, 16) + ' ' : ''}${pad(a.detector, 18)} ${a.summary}${link}`,
      style: a.firing ? 'alert' : 'dim',
    });
  }
  if (list.length === 0) out.push({ text: '  (none)', style: 'dim' });
  return out;
}

function dropsLine(data: TopData, view: ViewState): Line {
  const sum = new Map<string, number>();
  for (const h of hostsOf(data, view)) for (const [k, v] of h.drops) sum.set(k, (sum.get(k) ?? 0) + v);
  const any = [...sum.values()].some((v) => v > 0);
  return { text: `DROPS  ${[...sum].map(([k, v]) => `${k} ${v}`).join(' · ') || '(none reported)'}`, style: any ? 'alert' : 'dim' };
}

function hostsSection(data: TopData, nowMs: number, view: ViewState): Line[] {
  const out: Line[] = [
    { text: `HOSTS (${data.hosts.length}; tab picks one)`, style: 'title' },
    { text: `  ${pad('HOST', 24)} ${lpad('SOCKETS', 8)} ${lpad('EVENTS', 10)}  ${pad('LAST SUMMARY', 14)} ${lpad('FIRING', 6)}  LOST`, style: 'columns' },
  ];
  for (const h of data.hosts) {
    const sockets = h.byNetns.reduce((n, x) => n + Object.values(x.counts).reduce((a, b) => a + b, 0), 0);
    const firing = data.alerts.filter((a) => a.host === h.host && a.firing).length;
    const lost = h.drops.reduce((n, [, v]) => n + v, 0);
    out.push({ text: `${h.host === view.host ? '>' : ' '} ${pad(h.host, 24)} ${lpad(String(sockets), 8)} ${lpad(String(h.events), 10)}  ${pad(ago(nowMs - h.atMs), 14)} ${lpad(String(firing), 6)}  ${lost}` });
  }
  if (data.hosts.length === 0) out.push({ text: '  (no summaries yet: agents publish one every --summary-interval, 10 s by default)', style: 'dim' });
  return out;
}

const HELP = [
  'keys',
  '  s        sort the state table: by count, by state, by p99 dwell, by change over the last 10 s',
  '  n        filter by network namespace (inode, or a name from ip netns); empty to clear',
  '  p        filter by port (either end)',
  '  c        filter by owner process (part of its command name, or its pid)',
  '  x        clear every filter',
  '  tab      fleet: next host (then all hosts again)',
  '  space    pause (data keeps being collected; the screen stops changing)',
  '  e        explain the state of the newest alert (or of the first row); e or escape closes it',
  '  ? or h   this help',
  '  q        quit (Ctrl-C too)',
  '',
  'columns',
  '  COUNT    sockets in the state now; TIME_WAIT and orphaned FIN_WAIT2 are timewait socks, as ss counts them',
  `  Δ${TREND_BACK_S}s     change of COUNT over the last ${TREND_BACK_S} s; TREND: the count over the last samples`,
  '  p50…max  dwell: how long sockets stayed in the state before leaving it (exact dwells since top started)',
  '  DWELL HISTOGRAM  how many dwells fell in each decade: <10µs, <100µs, <1ms, … <10min, longer',
  '  AGE      time in the state so far; ≥ when the socket is older than what the kernel program saw',
];

/** The whole frame. */
export function render(data: TopData, view: ViewState, o: RenderOptions): Line[] {
  const rows = Math.max(1, o.rows);
  const hosts = hostsOf(data, view);
  const sockets = hosts.reduce((n, h) => n + h.byNetns.reduce((m, x) => m + Object.values(x.counts).reduce((a, b) => a + b, 0), 0), 0);
  const events = hosts.reduce((n, h) => n + h.events, 0);
  const head: Line[] = [
    {
      text: `tcpdwell top · ${data.fleet ? `fleet ${data.source}` : data.source} · ${clock(o.nowMs)} · ${sockets} sockets · ${events} events · every ${o.intervalS}s${view.paused ? ' · PAUSED' : ''}`,
      style: 'header',
    },
    {
      text:
        `sort: ${view.sort} · filter: ${data.fleet ? `host=${view.host ?? 'all'} ` : ''}netns=${view.netns ?? 'all'} port=${view.port ?? 'all'} process=${view.process ?? 'all'}` +
        (o.interactive ? `   keys: s sort · n/p/c filter · x clear${data.fleet ? ' · tab host' : ''} · space pause · e explain · ? help · q quit` : ''),
      style: 'dim',
    },
  ];
  if (data.status) head.push({ text: data.status, style: 'dim' });
  const tail: Line[] = [];
  if (view.prompt) tail.push({ text: `filter by ${view.prompt.field} (enter to apply, empty to clear, escape to cancel): ${view.prompt.text}_`, style: 'prompt' });
  else if (view.message) tail.push({ text: view.message, style: 'alert' });

  let body: Line[];
  if (view.help) body = HELP.map((text, i) => ({ text, style: i === 0 || text === 'columns' ? 'title' : undefined }));
  else if (view.explain) body = [{ text: '' }, ...explainState(view.explain as StateName, Math.max(40, Math.min(o.cols, 120) - 2)).map((text, i): Line => ({ text, style: i === 0 ? 'title' : undefined }))];
  else {
    body = [{ text: '' }];
    if (data.fleet) body.push(...hostsSection(data, o.nowMs, view), { text: '' });
    body.push(...stateSection(data, view, o), { text: '' });
    // What is left is shared out: stuck sockets get the most, then alerts, then failures.
    const fixed = head.length + tail.length + body.length + 1 /* drops */ + 3 * 2 /* titles, blanks */ + 1 /* columns */;
    const free = Number.isFinite(rows) ? Math.max(3, rows - fixed) : 60;
    const alertsN = Math.min(Math.max(1, data.alerts.length), Math.max(1, Math.floor(free / 4)));
    const failN = Math.min(Math.max(1, data.failures.length), Math.max(1, Math.floor(free / 5)));
    // the closes: a title, a blank and up to 3 of the worst
    const closesN = data.closes ? Math.min(3, Math.max(0, Math.floor(free / 6))) : 0;
    const stuckN = Math.max(1, free - alertsN - failN - (data.closes ? closesN + 2 : 0));
    body.push(...stuckSection(data, view, stuckN), { text: '' });
    body.push(...failureSection(data, view, failN, o.nowMs), { text: '' });
    const closes = closesSection(data, view, closesN);
    if (closes.length) body.push(...closes, { text: '' });
    body.push(...alertSection(data, view, alertsN), { text: '' });
    body.push(dropsLine(data, view));
  }
  const lines = [...head, ...body];
  const room = rows - tail.length;
  const out = (Number.isFinite(room) ? lines.slice(0, Math.max(0, room)) : lines).concat(tail);
  return out.map((l) => ({ ...l, text: fit(l.text, o.cols) }));
}
