/**
 * What the collector takes from the stream: a subject and its bytes → one typed message, or a
 * reason to set it aside. Pure: no I/O. Nothing here throws on bad input.
 */
import type { CgroupInfo } from '../kernel/cgroups.js';
import type { TcpEvent } from '../decode/index.js';
import type { DwellRecord } from '../track/index.js';
import { FLEET_ALERT_SUBJECT, parseAgentSubject } from '../publish/subjects.js';
import { big, decodeDwell, decodeSnapshot, decodeTransitions, pb, type Header } from '../publish/wire.js';
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

export type CollectedMessage =
  | { kind: 'transitions' | 'snapshot'; id: MessageId; header: Header; events: TcpEvent[] }
  | { kind: 'dwell'; id: MessageId; header: Header; records: DwellRecord[]; cgroups: Map<bigint, CgroupInfo> }
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
export function classify(subject: string, data: Uint8Array, fromCollector = false): Classified {
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
        const d = kind === 'snapshot' ? decodeSnapshot(data) : decodeTransitions(data);
        header = d.header;
        message = { kind, id: idOf(host, header), header, events: d.events };
        break;
      }
      case 'dwell': {
        const d = decodeDwell(data);
        header = d.header;
        message = { kind, id: idOf(host, header), header, records: d.records, cgroups: d.cgroups };
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
        : !(message.id.epoch >= 1)
          ? 'header has no epoch'
          : !(message.id.seq >= 1)
            ? 'header has no seq'
            : null;
  if (problem) return { ok: false, own: false, reason: 'bad_header', error: `${subject}: ${problem}` };
  return { ok: true, message };
}

function idOf(host: string, h: Header): MessageId {
  return { host, bootId: h.bootId ?? '', epoch: Number(big(h.epoch as number)), seq: Number(big(h.seq as number)) };
}
