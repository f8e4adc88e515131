/**
 * A decoded agent message as store rows, in the column order of schema.ts. Pure.
 */
import type { ResetBy, SocketIdentity, Vitals } from '../decode/index.js';
import type { CgroupInfo } from '../kernel/cgroups.js';
import { big, cgroupsById } from '../publish/wire.js';
import { dropsOf, type CollectedMessage } from './messages.js';
import type { Row, TableName } from './schema.js';
import { hostRecordFromSummary } from './views.js';

/** One message's rows: its `messages` row and the rows of its own table. */
export interface MessageRows {
  key: string;
  message: Row;
  table: TableName | null;
  rows: Row[];
  /** rows of the `cgroups` table: the message's cgroup dictionary (dwell batches, summaries) */
  cgroups: Row[];
}

/** Every table a message adds rows to, with its rows. */
/** The vitals columns of a row (schema.ts `vitals`): NULL unless it is a close's. */
const vitalsRow = (x: { vitals: Vitals | null; resetBy: ResetBy | null }): Row => {
  const v = x.vitals;
  return v ? [v.srttUs, v.totalRetrans, BigInt(v.bytesAcked), BigInt(v.bytesReceived), x.resetBy] : [null, null, null, null, null];
};

export function tablesOf(m: MessageRows): [TableName, Row[]][] {
  const out: [TableName, Row[]][] = [];
  if (m.table && m.rows.length) out.push([m.table, m.rows]);
  if (m.cgroups.length) out.push(['cgroups', m.cgroups]);
  return out;
}

const PRECISION = ['exact', 'lower_bound', 'estimated', 'upper_bound'] as const;

/** The socket columns (schema.ts `socket`, in that order). */
const socketRow = (x: SocketIdentity): Row => [x.cookie, x.netns, x.cgroupId, x.family, x.saddr, x.sport, x.daddr, x.dport, x.ownerPid, x.ownerComm];

/** The key of a message in the gate: host, boot id, epoch, seq joined by tabs. */
export const messageKey = (host: string, bootId: string, epoch: number, seq: number): string => `${host}\t${bootId}\t${epoch}\t${seq}`;

/** The rows a counted message adds to the store (decoded in full); `storedMs` is the collector's clock. */
export function rowsOf(m: CollectedMessage, storedMs: number): MessageRows {
  const { host, bootId, epoch, seq } = m.id;
  const h = m.header;
  const offset = big(h.bootToUnixNs as number);
  const id: Row = [host, bootId, epoch, BigInt(seq)];
  const unix = (bootNs: bigint) => bootNs + offset;
  /** A multi-row table's first columns: the message's identity, the row's place, its time. */
  const lead = (i: number, bootNs: bigint): Row => [...id, i, unix(bootNs)];
  let table: TableName | null = null;
  let rows: Row[] = [];
  let names: ReadonlyMap<bigint, CgroupInfo> | null = null;
  switch (m.kind) {
    case 'transitions':
    case 'snapshot':
      table = 'events';
      rows = (m.events ?? []).map((e, i) => [
        ...lead(i, e.tsNs),
        e.type,
        ...socketRow(e),
        e.oldState,
        e.newState,
        e.substate,
        e.dwellNs,
        e.expiresNs === null ? null : unix(e.expiresNs),
        e.reason,
        e.error,
        e.pid,
        e.comm,
        (e.actorIsOwner ? 1 : 0) | (e.child ? 2 : 0) | (e.gap ? 4 : 0) | (e.flip ? 8 : 0),
        ...vitalsRow(e),
      ]);
      break;
    case 'dwell':
      table = 'dwell';
      rows = (m.records ?? []).map((r, i) => [
        ...lead(i, r.leftNs),
        r.state,
        r.timewait,
        r.dwellNs,
        PRECISION.includes(r.precision as (typeof PRECISION)[number]) ? r.precision : 'exact',
        r.nextState,
        r.timewaitEnd,
        r.error,
        ...socketRow(r),
        ...vitalsRow(r),
      ]);
      names = m.cgroups;
      break;
    case 'summary': {
      table = 'summaries';
      const rec = hostRecordFromSummary(host, h, m.summary);
      rows = [[...id, unix(big(m.summary.atNs as number)), JSON.stringify(rec.states), JSON.stringify(rec.stuck), BigInt(rec.eventsTotal)]];
      names = cgroupsById(m.summary.cgroups);
      break;
    }
    case 'alerts': {
      table = 'alerts';
      const a = m.alert;
      rows = [[...id, unix(big(a.atNs as number)), a.kind || '', a.severity || '', a.key || '', a.message || '', JSON.stringify(a.labels ?? {}), a.value ?? 0, a.threshold ?? 0]];
      break;
    }
  }
  const message: Row = [
    ...id,
    m.kind,
    rows.length * (table === 'events' || table === 'dwell' ? 1 : 0),
    offset,
    unix(big(h.sentAtBootNs as number)),
    storedMs,
    h.agentVersion ?? '',
    JSON.stringify(dropsOf(h)),
  ];
  const sentNs = unix(big(h.sentAtBootNs as number));
  const cgroups: Row[] = [...(names?.values() ?? [])].map((c, i) => [...id, i, sentNs, c.id, c.path, c.runtime, c.containerId, c.podUid, c.unit]);
  return { key: messageKey(host, bootId, epoch, seq), message, table, rows, cgroups };
}
