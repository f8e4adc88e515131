/**
 * What the collector takes from the stream: a subject and its bytes → one typed message, or a
 * reason to set it aside. Pure: no I/O. Nothing here throws on bad input.
 */
import protobuf from 'protobufjs/minimal.js';
import type { CgroupInfo } from '../kernel/cgroups.js';
import { endpoint, errnoName, type TcpEvent } from '../decode/index.js';
import { isConnectFailure, type DwellRecord } from '../track/index.js';
import { FLEET_ALERT_SUBJECT, parseAgentSubject } from '../publish/subjects.js';
import { addrText, big, decodeDwell, decodeSnapshot, decodeTransitions, pb, type Header } from '../publish/wire.js';
import type { tcpdwell } from '../publish/pb/tcpdwell.js';

/** Which agent run sent a message, and its number in that run. */
export interface MessageId {
  host: string;
  bootId: string;
  epoch: number;
  seq: number;
}

/** Loss counters of a header, by the proto field name (camelCase), as numbers. */
export function dropsOf(h: Header): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(h.drops ?? {})) out[k] = Number(big(v as number));
  return out;
}

/** A failed connect in a batch: the errno name and the destination "addr:port". */
export interface Failure {
  error: string;
  destination: string;
}

/**
 * A decoded message. Batches carry their row count and connect failures always (what the
 * views need), and their rows (`events`, `records`) only when decoded in full (for a store).
 */
export type CollectedMessage =
  | { kind: 'transitions' | 'snapshot'; id: MessageId; header: Header; rows: number; failures: Failure[]; events: TcpEvent[] | null }
  | { kind: 'dwell'; id: MessageId; header: Header; rows: number; records: DwellRecord[] | null; cgroups: Map<bigint, CgroupInfo> | null }
  | { kind: 'summary'; id: MessageId; header: Header; summary: tcpdwell.v1.Summary }
  | { kind: 'alerts'; id: MessageId; header: Header; alert: tcpdwell.v1.Alert };

/** Why a message was set aside (a bounded label set). */
export type RejectReason = 'bad_subject' | 'unknown_kind' | 'undecodable' | 'bad_header';
export const REJECT_REASONS: readonly RejectReason[] = ['bad_subject', 'unknown_kind', 'undecodable', 'bad_header'];

export type Classified =
  | { ok: true; message: CollectedMessage }
  | { ok: false; own: true }
  | { ok: false; own: false; reason: RejectReason; error: string };

/**
 * Decodes one message of the stream. `fromCollector` is true when it carries the collector's
 * origin header: the collector's own alerts come back through the stream and are skipped.
 */
export function classify(subject: string, data: Uint8Array, fromCollector = false, depth: 'full' | 'views' = 'full'): Classified {
  if (subject === FLEET_ALERT_SUBJECT || fromCollector) return { ok: false, own: true };
  const parsed = parseAgentSubject(subject);
  if (!parsed) return { ok: false, own: false, reason: 'bad_subject', error: `subject ${subject} is not tcpdwell.v1.<host>.<kind>` };
  const { host, kind } = parsed;
  let message: CollectedMessage;
  let header: Header;
  try {
    switch (kind) {
      case 'transitions':
      case 'snapshot': {
        if (depth === 'views') {
          const d = kind === 'snapshot' ? scanCount(data, 'Snapshot') : scanTransitions(data);
          header = d.header;
          message = { kind, id: idOf(host, header), header, rows: d.rows, failures: d.failures, events: null };
          break;
        }
        const d = kind === 'snapshot' ? decodeSnapshot(data) : decodeTransitions(data);
        header = d.header;
        const failures = d.events.filter((e) => e.type === 'transition' && isConnectFailure(e.oldState, e.error)).map((e) => ({ error: e.error!, destination: endpoint(e.daddr, e.dport) }));
        message = { kind, id: idOf(host, header), header, rows: d.events.length, failures, events: d.events };
        break;
      }
      case 'dwell': {
        if (depth === 'views') {
          const d = scanCount(data, 'DwellBatch');
          header = d.header;
          message = { kind, id: idOf(host, header), header, rows: d.rows, records: null, cgroups: null };
          break;
        }
        const d = decodeDwell(data);
        header = d.header;
        message = { kind, id: idOf(host, header), header, rows: d.records.length, records: d.records, cgroups: d.cgroups };
        break;
      }
      case 'summary': {
        const summary = pb.Summary.decode(data);
        header = summary.header ?? {};
        message = { kind, id: idOf(host, header), header, summary };
        break;
      }
      case 'alerts': {
        const alert = pb.Alert.decode(data);
        header = alert.header ?? {};
        message = { kind, id: idOf(host, header), header, alert };
        break;
      }
      default:
        return { ok: false, own: false, reason: 'unknown_kind', error: `unknown kind "${kind}" in ${subject}` };
    }
  } catch (err) {
    return { ok: false, own: false, reason: 'undecodable', error: `${subject}: ${(err as Error).message}` };
  }
  const h = message.header;
  const problem =
    h.hostId !== host
      ? `header host "${h.hostId ?? ''}" is not the subject's "${host}"`
      : !h.bootId
        ? 'header has no boot id'
        : !BOOT_ID.test(h.bootId)
          ? `header boot id "${h.bootId.slice(0, 80)}" is not a token (letters, digits, - _ . :)`
        : !(message.id.epoch >= 1)
          ? 'header has no epoch'
          : !(message.id.seq >= 1)
            ? 'header has no seq'
            : null;
  if (problem) return { ok: false, own: false, reason: 'bad_header', error: `${subject}: ${problem}` };
  return { ok: true, message };
}

/** What a boot id may hold: /proc/sys/kernel/random/boot_id is a UUID. */
const BOOT_ID = /^[A-Za-z0-9_.:-]{1,64}$/;

function idOf(host: string, h: Header): MessageId {
  return { host, bootId: h.bootId ?? '', epoch: Number(big(h.epoch as number)), seq: Number(big(h.seq as number)) };
}

/*
 * The views' decode: a batch's header, its row count and its failed connects, read straight from
 * the protobuf fields without building a TcpEvent per row (decoding whole dwell batches only to
 * count them was ~45 % of a busy-host collector's time). The columns it reads must hold `count`
 * values, as the full decoder checks; the others are skipped unread.
 */
const SYN_SENT = 2;
/** TransitionBatch field numbers (proto/tcpdwell/v1/tcpdwell.proto). */
const F = { header: 1, count: 2, kind: 6, oldState: 8, daddr: 19, dport: 20, error: 25 } as const;

function packedU32(r: protobuf.Reader, wire: number, out: number[]): void {
  if (wire !== 2) {
    out.push(r.uint32());
    return;
  }
  const end = r.uint32() + r.pos;
  while (r.pos < end) out.push(r.uint32());
}

/**
 * Header and count of a batch (DwellBatch, TransitionBatch), nothing else; of a Snapshot, its
 * header and the count of the batch it embeds (field 2 there is that batch, not a count).
 */
function scanCount(bytes: Uint8Array, name: string): { header: Header; rows: number; failures: Failure[] } {
  try {
    const r = protobuf.Reader.create(bytes);
    let header: Header = {};
    let rows = 0;
    while (r.pos < r.len) {
      const tag = r.uint32();
      if (tag >>> 3 === 1 && (tag & 7) === 2) header = pb.Header.decode(r, r.uint32());
      else if (tag >>> 3 === 2 && (tag & 7) === 0) rows = r.uint32();
      else if (tag >>> 3 === 2 && (tag & 7) === 2) rows = scanCount(r.bytes(), name).rows;
      else r.skipType(tag & 7);
    }
    return { header, rows, failures: [] };
  } catch (err) {
    throw new Error(`malformed ${name}: ${(err as Error).message}`, { cause: err });
  }
}

/** Header, count and failed connects of a TransitionBatch. */
export function scanTransitions(bytes: Uint8Array): { header: Header; rows: number; failures: Failure[] } {
  const kind: number[] = [];
  const oldState: number[] = [];
  const error: number[] = [];
  const dport: number[] = [];
  const daddr: Uint8Array[] = [];
  const packed = new Map<number, number[]>([
    [F.kind, kind],
    [F.oldState, oldState],
    [F.error, error],
    [F.dport, dport],
  ]);
  let header: Header = {};
  let rows = 0;
  try {
    const r = protobuf.Reader.create(bytes);
    while (r.pos < r.len) {
      const tag = r.uint32();
      const field = tag >>> 3;
      const col = packed.get(field);
      if (col) packedU32(r, tag & 7, col);
      else if (field === F.header) header = pb.Header.decode(r, r.uint32());
      else if (field === F.count) rows = r.uint32();
      else if (field === F.daddr) daddr.push(r.bytes());
      else r.skipType(tag & 7);
    }
  } catch (err) {
    throw new Error(`malformed TransitionBatch: ${(err as Error).message}`, { cause: err });
  }
  for (const [name, col] of [['kind', kind], ['old_state', oldState], ['error', error], ['dport', dport], ['daddr', daddr]] as const) {
    if (col.length !== rows) throw new Error(`malformed TransitionBatch: ${name} has ${col.length} values for ${rows} rows`);
  }
  const failures: Failure[] = [];
  for (let i = 0; i < rows; i++) {
    if (kind[i] !== 1 || oldState[i] !== SYN_SENT || error[i] === 0) continue;
    failures.push({ error: errnoName(error[i]!), destination: endpoint(addrText(daddr[i]), dport[i]!) });
  }
  return { header, rows, failures };
}
