/** Human-readable forms: durations and the `trace` text table. Pure. */
import type { ResetBy, TcpEvent, Vitals } from './event.js';
import { endpoint } from './names.js';

/** 1234567n → "1.23ms"; null → "-". Three significant digits, unit chosen by size. */
export function formatDuration(ns: bigint | null): string {
  if (ns === null) return '-';
  const n = Number(ns);
  const units: [number, string][] = [
    [3600e9, 'h'],
    [60e9, 'min'],
    [1e9, 's'],
    [1e6, 'ms'],
    [1e3, 'µs'],
  ];
  for (const [size, unit] of units) {
    if (Math.abs(n) >= size) return `${(n / size).toPrecision(3)}${unit}`;
  }
  return `${n}ns`;
}

/** 10485762 → "10.0MB" (1024-based, three significant digits). */
export function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) (n /= 1024), i++;
  return i === 0 ? `${n}B` : `${n.toPrecision(3)}${units[i]}`;
}

/** A close's vital signs in a few words: "rtt 43µs rtx 3 ↑10.0MB ↓121KB RST received". */
export function formatVitals(v: Vitals, resetBy: ResetBy | null): string {
  const rtt = v.srttUs > 0 ? `rtt ${formatDuration(BigInt(v.srttUs) * 1000n)}` : 'rtt -';
  return `${rtt} rtx ${v.totalRetrans} ↑${formatBytes(v.bytesAcked)} ↓${formatBytes(v.bytesReceived)}${resetBy ? ` RST ${resetBy}` : ''}`;
}

export const TEXT_HEADER =
  'TIME             EVENT       NETNS       LOCAL                    REMOTE                   STATE                    DWELL       OWNER              ERROR';

/** One line of the text table. `clock` turns boot-time ns into the TIME column. */
export function formatText(e: TcpEvent, clock: (bootNs: bigint) => string): string {
  let state: string;
  let dwell = '';
  switch (e.type) {
    case 'transition':
      state = `${e.oldState}->${e.newState}`;
      dwell = formatDuration(e.dwellNs);
      break;
    case 'timewait_start':
      state = e.flip ? 'TIME_WAIT(FIN_WAIT2->TIME_WAIT)' : `TIME_WAIT(${e.substate})`;
      dwell = e.expiresNs !== null ? `due+${formatDuration(e.expiresNs - e.tsNs)}` : '';
      break;
    case 'timewait_end':
      state = `TIME_WAIT(${e.substate}) ${e.reason}`;
      dwell = formatDuration(e.dwellNs);
      break;
    case 'snapshot':
      state = e.substate ? `${e.newState}(${e.substate})` : e.newState;
      dwell = e.enteredNs !== null ? `${formatDuration(e.tsNs - e.enteredNs)}+` : '';
      break;
    case 'reset':
      state = `RST ${e.reason} in ${e.newState}`;
      break;
    case 'accept':
      state = `accepted in ${e.newState}`;
      break;
  }
  const owner = e.ownerPid !== null ? `${e.ownerComm}/${e.ownerPid}` : '-';
  const kind = { transition: 'transition', timewait_start: 'tw-start', timewait_end: 'tw-end', snapshot: 'snapshot', reset: 'reset', accept: 'accept' }[e.type];
  return [
    clock(e.tsNs).padEnd(16),
    kind.padEnd(11),
    String(e.netns).padEnd(11),
    endpoint(e.saddr, e.sport).padEnd(24),
    endpoint(e.daddr, e.dport).padEnd(24),
    state.padEnd(24),
    dwell.padEnd(11),
    owner.padEnd(18),
    e.vitals ? `${e.error ? `${e.error} ` : ''}${formatVitals(e.vitals, e.resetBy)}` : (e.error ?? ''),
  ]
    .join(' ')
    .trimEnd();
}
